"""The MD5SUM member: every member is checked against it; any disagreement invalidates."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hsmfs.tarindex import index_tar, parse_md5sum
from tests.tarindex.tarindex_builders import (
    Entry,
    build_dicom_like_tar,
    build_tar,
    gnu_tar,
    md5_hex,
    md5sum_text,
)

FILES = {f"CF024730/{n:08X}": os.urandom(3000 + n) for n in range(0x4A0, 0x4A4)}


def test_good_md5sum_checks_every_member() -> None:
    index = index_tar(io.BytesIO(build_dicom_like_tar(FILES)))
    assert index.invalid is None and index.has_md5sum
    for name, data in FILES.items():
        member = index.lookup(name)
        assert member is not None and member.md5_checked and member.md5 == md5_hex(data)
    assert not index.lookup("MD5SUM").md5_checked  # type: ignore[union-attr]


def test_md5sum_made_by_md5sum_and_gnu_tar(tmp_path: Path) -> None:
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    listing = subprocess.run(
        ["md5sum", *FILES], cwd=tmp_path, check=True, capture_output=True
    ).stdout
    (tmp_path / "MD5SUM").write_bytes(listing)
    index = index_tar(io.BytesIO(gnu_tar(tmp_path, ["MD5SUM", *FILES])))
    assert index.invalid is None
    assert all(index.lookup(name).md5_checked for name in FILES)  # type: ignore[union-attr]


def test_one_damaged_member_makes_the_index_invalid_and_names_it() -> None:
    tar = bytearray(build_dicom_like_tar(FILES))
    victim = index_tar(io.BytesIO(bytes(tar))).lookup("CF024730/000004A2")
    assert victim is not None
    tar[victim.data_offset + 100] ^= 0x01
    index = index_tar(io.BytesIO(bytes(tar)))
    assert index.invalid == "MD5 mismatch for CF024730/000004A2"
    assert not index.lookup("CF024730/000004A2").md5_checked  # type: ignore[union-attr]
    assert index.lookup("CF024730/000004A1").md5_checked  # type: ignore[union-attr]


def _tar_with_md5sum(md5sum: bytes, files: dict[str, bytes] = FILES) -> bytes:
    return build_tar([Entry("MD5SUM", md5sum), *(Entry(n, d) for n, d in files.items())])


@pytest.mark.parametrize(
    ("md5sum", "reason"),
    [
        (md5sum_text(FILES) + b"not a line\n", "MD5SUM line 5 is malformed: 'not a line'"),
        (md5sum_text(FILES).upper(), "MD5SUM line 1 is malformed"),
        (md5sum_text(FILES).replace(b"  ", b" ", 1), "MD5SUM line 1 is malformed"),
        (md5sum_text(FILES) + b"\n", "MD5SUM line 5 is malformed: ''"),
        (
            md5sum_text(FILES) + md5sum_text({"CF024730/000004A0": b""}),
            "MD5SUM has more than one line for CF024730/000004A0",
        ),
        (
            md5sum_text(FILES | {"CF024730/missing": b""}),
            "MD5SUM names CF024730/missing, which is not in the tar",
        ),
        (
            md5sum_text(dict(list(FILES.items())[1:])),
            "member CF024730/000004A0 has no line in MD5SUM",
        ),
        (md5sum_text({"../escape": b""}), "MD5SUM line 1 names a member that has a '..'"),
        (
            md5sum_text(FILES | {"CF024730": b""}),
            "MD5SUM has a line for CF024730, which is not a file",
        ),
    ],
    ids=[
        "garbage-line",
        "upper-case-hex",
        "one-space",
        "blank-line",
        "duplicate-line",
        "line-for-missing-member",
        "member-without-line",
        "unsafe-name",
        "line-for-directory",
    ],
)
def test_md5sum_problems_make_the_index_invalid(md5sum: bytes, reason: str) -> None:
    index = index_tar(io.BytesIO(_tar_with_md5sum(md5sum)))
    assert index.invalid is not None and index.invalid.startswith(reason), index.invalid


def test_md5sum_accepts_binary_mode_dot_slash_and_escaped_names() -> None:
    files = {"a\\b": b"1", "line\nbreak": b"2", "plain": b"3"}
    text = (
        f"\\{md5_hex(b'1')}  a\\\\b\n\\{md5_hex(b'2')} *line\\nbreak\n{md5_hex(b'3')}  ./plain\n"
    ).encode()
    index = index_tar(io.BytesIO(_tar_with_md5sum(text, files)))
    assert index.invalid is None
    assert all(index.lookup(name).md5_checked for name in files)  # type: ignore[union-attr]


def test_md5sum_lines_for_links_are_checked_against_their_target() -> None:
    data = b"payload"
    md5sum = md5sum_text({"file": data, "hard": data, "soft": b"other"})
    tar = build_tar(
        [
            Entry("MD5SUM", md5sum),
            Entry("file", data),
            Entry("hard", kind=tarfile.LNKTYPE, target="file"),
            Entry("soft", kind=tarfile.SYMTYPE, target="file"),
        ]
    )
    assert index_tar(io.BytesIO(tar)).invalid == "MD5 mismatch for soft"


def test_without_md5sum_members_keep_their_computed_md5() -> None:
    tar = build_tar([Entry(name, data) for name, data in FILES.items()])
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None and not index.has_md5sum
    assert {m.path: m.md5 for m in index if not m.is_dir} == {
        name: md5_hex(data) for name, data in FILES.items()
    }


def test_md5sum_that_is_not_the_first_member_is_an_ordinary_file() -> None:
    wrong = md5sum_text({name: b"" for name in FILES})
    tar = build_tar([*(Entry(n, d) for n, d in FILES.items()), Entry("MD5SUM", wrong)])
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None and not index.has_md5sum


def test_verify_false_reads_headers_only() -> None:
    tar = bytearray(build_dicom_like_tar(FILES))
    member = index_tar(io.BytesIO(bytes(tar))).lookup("CF024730/000004A0")
    assert member is not None
    tar[member.data_offset] ^= 0xFF
    index = index_tar(io.BytesIO(bytes(tar)), verify=False)
    assert index.invalid is None and index.has_md5sum and not index.md5_computed
    assert index.lookup("CF024730/000004A0").md5 == ""  # type: ignore[union-attr]


def test_parse_md5sum_reports_line_numbers() -> None:
    sums = parse_md5sum(b"%s  a\nbad\n%s  b\n" % (b"0" * 32, b"f" * 32))
    assert sums.expected == {"a": "0" * 32, "b": "f" * 32}
    assert sums.problems == ["MD5SUM line 2 is malformed: 'bad'"]
