"""Tars from Python's tarfile and from GNU tar index to the right offsets, sizes and MD5s."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hsmfs.tarindex import MemberKind, index_tar
from tests.tarindex.tarindex_builders import Entry, build_tar, file_contents, gnu_tar, md5_hex

LONG_DIR = "d" * 120 + "/" + "e" * 200
LONG_NAME = f"{LONG_DIR}/{'f' * 255}"  # 577 bytes: needs pax or GNU long names
ENTRIES = [
    Entry("CF024730", kind=tarfile.DIRTYPE, mode=0o755),
    Entry("CF024730/000004A0", os.urandom(70_000)),
    Entry("CF024730/000004A1", b""),
    Entry("CF024730/000004A2", b"x" * 512),
    Entry("CF024730/link-to-A0", kind=tarfile.SYMTYPE, target="000004A0"),
    Entry("CF024730/hard-A0", kind=tarfile.LNKTYPE, target="CF024730/000004A0"),
    Entry("Ünïcödé/名前.dcm", b"unicode"),
]


def expected_files() -> dict[str, bytes]:
    files = {e.name: e.data for e in ENTRIES if e.kind == tarfile.REGTYPE}
    files["CF024730/hard-A0"] = files["CF024730/000004A0"]
    return files


@pytest.mark.parametrize(
    "fmt",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
def test_tarfile_formats_index_offsets_sizes_and_md5(fmt: int) -> None:
    tar = build_tar(ENTRIES, fmt)
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    assert len(index) == len(ENTRIES) + 1  # the implicit directory Ünïcödé
    assert index.lookup("Ünïcödé").implicit  # type: ignore[union-attr]
    assert file_contents(tar, index) == expected_files()
    with tarfile.open(fileobj=io.BytesIO(tar)) as reference:
        for info in reference.getmembers():
            member = index.lookup(info.name)
            assert member is not None, info.name
            assert (member.header_offset, member.data_offset) == (info.offset, info.offset_data)
            assert member.mode == info.mode
            assert member.mtime_ns == info.mtime * 1_000_000_000
    a0 = index.lookup("CF024730/000004A0")
    assert a0 is not None and a0.md5 == md5_hex(expected_files()[a0.path])
    assert a0.kind is MemberKind.FILE and a0.size == 70_000
    assert index.lookup("CF024730/000004A1").md5 == md5_hex(b"")  # type: ignore[union-attr]
    assert index.resolve("CF024730/hard-A0") == a0
    assert index.resolve("CF024730/link-to-A0") == a0


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_long_names_and_long_link_targets(fmt: int) -> None:
    data = os.urandom(1000)
    tar = build_tar(
        [
            Entry(LONG_NAME, data),
            Entry("short-link", kind=tarfile.SYMTYPE, target=LONG_NAME),
            Entry("short-hard", kind=tarfile.LNKTYPE, target=LONG_NAME),
        ],
        fmt,
    )
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    member = index.lookup(LONG_NAME)
    assert member is not None and tar[member.data_offset : member.data_offset + 1000] == data
    assert index.lookup("short-link").linkname == LONG_NAME  # type: ignore[union-attr]
    assert index.resolve("short-hard") == member
    assert index.children("") == ("d" * 120, "short-hard", "short-link")
    assert index.lookup("d" * 120).implicit  # type: ignore[union-attr]


def test_ustar_prefix_field_long_name() -> None:
    name = "p" * 150 + "/" + "n" * 90  # fits ustar's prefix + name fields
    tar = build_tar([Entry(name, b"data")], tarfile.USTAR_FORMAT)
    assert b"PaxHeader" not in tar and b"././@LongLink" not in tar
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None and file_contents(tar, index) == {name: b"data"}


def test_non_utf8_names_keep_their_bytes() -> None:
    raw = b"caf\xe9/\xff\xfe.dcm"
    name = raw.decode("utf-8", "surrogateescape")
    tar = build_tar([Entry(name, b"latin-1")], tarfile.GNU_FORMAT)
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    assert [m.path.encode("utf-8", "surrogateescape") for m in index] == [b"caf\xe9", raw]


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "study/series/000004A0": os.urandom(5000),
        "study/series/000004A1": os.urandom(512),
        "study/empty": b"",
        f"study/{'x' * 90}/{'y' * 150}": b"long",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "study/series/link").symlink_to("000004A0")
    os.link(root / "study/series/000004A0", root / "study/hard")
    files["study/hard"] = files["study/series/000004A0"]
    return files


@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "pax", "posix", "ustar"])
def test_gnu_tar_formats(tmp_path: Path, fmt: int) -> None:
    files = _make_tree(tmp_path)
    if fmt == "ustar":  # ustar cannot store a 150-byte final component
        long_name = next(n for n in files if "yyy" in n)
        (tmp_path / long_name).unlink()
        del files[long_name]
    tar = gnu_tar(tmp_path, ["study"], f"--format={fmt}")
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    assert file_contents(tar, index) == files
    listing = subprocess.run(
        ["tar", "-t", "-f", "-"], input=tar, capture_output=True, check=True
    ).stdout.decode()
    assert {line.rstrip("/") for line in listing.splitlines()} == {m.path for m in index}
    assert index.lookup("study/series/link").kind is MemberKind.SYMLINK  # type: ignore[union-attr]
    assert index.resolve("study/series/link").path == "study/series/000004A0"


def test_gnu_tar_with_dot_prefix_and_root_entry(tmp_path: Path) -> None:
    files = _make_tree(tmp_path)
    tar = gnu_tar(tmp_path, ["."])
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    assert not index.root.implicit  # the "./" entry describes the root
    assert file_contents(tar, index) == files
    assert index.children("") == ("study",)


def test_gnu_tar_absolute_names_are_made_relative(tmp_path: Path) -> None:
    files = _make_tree(tmp_path)
    tar = gnu_tar(tmp_path, [str(tmp_path / "study/series")], "--absolute-names")
    index = index_tar(io.BytesIO(tar))
    prefix = str(tmp_path / "study/series").lstrip("/")
    assert index.invalid is None
    assert file_contents(tar, index) == {
        f"{prefix}/{name.rpartition('/')[2]}": data
        for name, data in files.items()
        if name.startswith("study/series/")
    }


def test_empty_archive_is_valid() -> None:
    index = index_tar(io.BytesIO(build_tar([])))
    assert index.invalid is None and len(index) == 0 and index.children("") == ()
