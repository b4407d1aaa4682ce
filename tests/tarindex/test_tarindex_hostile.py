"""Hostile and damaged tars: never an escape from the tar root, never a crash or a hang."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hsmfs.tarindex import MemberKind, MemberLookupError, TarIndex, index_tar
from tests.tarindex.tarindex_builders import (
    BLOCK,
    Entry,
    build_dicom_like_tar,
    build_tar,
    file_contents,
    gnu_tar,
    pax_record,
    raw_header,
    raw_member,
    raw_pax_member,
    raw_tar,
)


def index_of(tar: bytes) -> TarIndex:
    return index_tar(io.BytesIO(tar))


def test_absolute_and_dot_names_are_made_relative() -> None:
    tar = raw_tar(raw_member(b"/etc/passwd", b"abs"), raw_member(b"./a//./b", b"dot"))
    index = index_of(tar)
    assert index.invalid is None
    assert file_contents(tar, index) == {"etc/passwd": b"abs", "a/b": b"dot"}


@pytest.mark.parametrize("name", [b"../evil", b"a/../../evil", b"/../evil", b"a/.."])
def test_dot_dot_members_are_refused(name: bytes) -> None:
    index = index_of(raw_tar(raw_member(name, b"x"), raw_member(b"fine", b"y")))
    assert index.invalid is not None and "'..' component" in index.invalid
    assert [m.path for m in index] == ["fine"]


def test_nul_byte_in_a_pax_path_is_refused() -> None:
    pax = raw_pax_member(pax_record("path", b"safe\0/../../etc/passwd"))
    index = index_of(raw_tar(pax, raw_member(b"placeholder", b"x")))
    assert index.invalid is not None and "NUL byte" in index.invalid
    assert len(index) == 0


def test_over_long_component_is_refused() -> None:
    pax = raw_pax_member(pax_record("path", b"dir/" + b"n" * 256))
    index = index_of(raw_tar(pax, raw_member(b"placeholder", b"x")))
    assert index.invalid is not None and "longer than 255 bytes" in index.invalid


def test_empty_name_is_refused() -> None:
    index = index_of(raw_tar(raw_member(b"", b"x"), raw_member(b"./", typeflag=b"5")))
    assert index.invalid == "a file member has an empty name"


def test_duplicates_last_one_wins() -> None:
    tar = raw_tar(raw_member(b"a", b"first"), raw_member(b"b", b"b"), raw_member(b"a", b"second"))
    index = index_of(tar)
    assert index.invalid is None
    assert file_contents(tar, index) == {"a": b"second", "b": b"b"}
    assert index.children("") == ("a", "b")


def test_member_below_a_file_is_refused() -> None:
    index = index_of(raw_tar(raw_member(b"a", b"file"), raw_member(b"a/b", b"below")))
    assert index.invalid == "member a/b lies below a, which is not a directory"
    assert index.lookup("a").kind is MemberKind.FILE  # type: ignore[union-attr]


def test_file_replacing_a_populated_directory_is_refused() -> None:
    index = index_of(raw_tar(raw_member(b"a/b", b"x"), raw_member(b"a", b"file")))
    assert index.invalid == "member a would replace a directory that holds members"
    assert index.children("a") == ("b",)


def test_symlinks_never_leave_the_tar() -> None:
    tar = raw_tar(
        raw_member(b"etc/passwd", b"inside"),
        raw_member(b"abs", typeflag=b"2", linkname=b"/etc/passwd"),
        raw_member(b"d/up", typeflag=b"2", linkname=b"../../../../etc/passwd"),
        raw_member(b"d/root", typeflag=b"2", linkname=b"../../.."),
        raw_member(b"loop1", typeflag=b"2", linkname=b"loop2"),
        raw_member(b"loop2", typeflag=b"2", linkname=b"loop1"),
        raw_member(b"self", typeflag=b"2", linkname=b"self/x"),
        raw_member(b"gone", typeflag=b"2", linkname=b"/nonexistent"),
    )
    index = index_of(tar)
    assert index.invalid is None  # dangling and looping symlinks are legal in a tar
    passwd = index.lookup("etc/passwd")
    assert index.resolve("abs") == passwd
    assert index.resolve("d/up") == passwd
    assert index.resolve("d/root/etc/passwd") == passwd
    assert index.resolve("d/root") == index.root
    for path, code in [("loop1", errno.ELOOP), ("self", errno.ELOOP), ("gone", errno.ENOENT)]:
        with pytest.raises(MemberLookupError) as caught:
            index.resolve(path)
        assert caught.value.errno == code, path
    assert index.resolve("abs", follow_last=False).kind is MemberKind.SYMLINK


def test_contained_link_targets_stay_below_the_tar_root(tmp_path: Path) -> None:
    tar = raw_tar(
        raw_member(b"etc/passwd", b"inside"),
        raw_member(b"a/b/abs", typeflag=b"2", linkname=b"/etc/passwd"),
        raw_member(b"a/b/up", typeflag=b"2", linkname=b"../../../../../etc/passwd"),
        raw_member(b"top", typeflag=b"2", linkname=b"etc/passwd"),
    )
    index = index_of(tar)
    targets = {
        p: index.contained_link_target(index.lookup(p)) for p in ("a/b/abs", "a/b/up", "top")
    }
    assert targets == {
        "a/b/abs": "../../etc/passwd",
        "a/b/up": "../../etc/passwd",
        "top": "etc/passwd",
    }
    # The kernel agrees: materialise the tree under a root and follow the rewritten links.
    root = tmp_path / "tar-root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_bytes(b"inside")
    (root / "a/b").mkdir(parents=True)
    for path, target in targets.items():
        (root / path).symlink_to(target)
        assert (root / path).resolve().is_relative_to(root)
        assert (root / path).read_bytes() == b"inside"


def test_hard_links_resolve_inside_or_invalidate() -> None:
    tar = raw_tar(
        raw_member(b"file", b"data"),
        raw_member(b"good", typeflag=b"1", linkname=b"./file"),
        raw_member(b"missing", typeflag=b"1", linkname=b"nowhere"),
        raw_member(b"escape", typeflag=b"1", linkname=b"../../etc/passwd"),
    )
    index = index_of(tar)
    assert index.resolve("good") == index.lookup("file")
    assert index.lookup("escape") is None
    assert index.problems == [
        "hardlink escape has an unusable target '../../etc/passwd'",
        "hard link missing points to nowhere, which is not a file in the tar",
    ]


def test_devices_and_fifos_are_skipped_not_served() -> None:
    tar = raw_tar(
        raw_member(b"dev/sda", typeflag=b"4"),
        raw_member(b"dev/tty", typeflag=b"3"),
        raw_member(b"fifo", typeflag=b"6"),
        raw_member(b"file", b"x"),
    )
    index = index_of(tar)
    assert index.invalid is None
    assert [m.path for m in index] == ["file"]
    assert index.skipped == ["dev/sda (block device)", "dev/tty (character device)", "fifo (FIFO)"]


def test_unknown_type_invalidates() -> None:
    index = index_of(raw_tar(raw_member(b"odd", b"data", typeflag=b"Q")))
    assert index.invalid == "member odd has unsupported type b'Q'"


def test_setuid_bits_are_dropped() -> None:
    tar = build_tar(
        [Entry("suid", b"x", mode=0o4755), Entry("d", kind=tarfile.DIRTYPE, mode=0o1777)]
    )
    index = index_of(tar)
    assert (index.lookup("suid").mode, index.lookup("d").mode) == (0o755, 0o777)  # type: ignore[union-attr]


def test_sparse_members_are_refused(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as out:
        out.seek(1 << 20)
        out.write(b"end")
    for fmt in ("gnu", "pax"):
        index = index_of(gnu_tar(tmp_path, ["sparse"], "--sparse", f"--format={fmt}"))
        assert index.invalid == "member sparse is a sparse file, which hsmfs cannot serve", fmt


# --- damaged structure ------------------------------------------------------------------

GOOD = build_dicom_like_tar({f"s/{n}": os.urandom(700) for n in range(3)})


def test_truncated_inside_data() -> None:
    index = index_of(GOOD[: 3 * BLOCK + 100])
    assert index.invalid is not None and "is truncated" in index.invalid


def test_truncated_at_a_member_boundary() -> None:
    last = max(index_of(GOOD), key=lambda m: m.header_offset)
    index = index_of(GOOD[: last.data_offset + 2 * BLOCK])
    assert index.invalid is not None and "without an end-of-archive marker" in index.invalid


def test_truncated_inside_a_header() -> None:
    last = max(index_of(GOOD), key=lambda m: m.header_offset)
    index = index_of(GOOD[: last.header_offset + 300])
    assert index.invalid is not None and "corrupt or truncated" in index.invalid


def test_garbage_header_in_the_middle() -> None:
    victim = index_of(GOOD).lookup("s/1")
    assert victim is not None
    tar = bytearray(GOOD)
    tar[victim.header_offset : victim.header_offset + BLOCK] = os.urandom(BLOCK)
    index = index_of(bytes(tar))
    assert index.problems[0] == (
        f"unreadable data at offset {victim.header_offset} where a member header or the end of "
        "the archive should be (corrupt or truncated tar)"
    )


def test_zeroed_header_in_the_middle_does_not_hide_the_rest() -> None:
    victim = index_of(GOOD).lookup("s/1")
    assert victim is not None
    tar = bytearray(GOOD)
    tar[victim.header_offset : victim.header_offset + BLOCK] = bytes(BLOCK)
    index = index_of(bytes(tar))
    assert index.invalid is not None and "corrupt or truncated tar" in index.invalid


def test_data_after_the_end_marker_invalidates() -> None:
    assert index_of(GOOD + b"trailing").invalid is not None


@pytest.mark.parametrize("content", [b"", b"plain text, not a tar\n" * 50, os.urandom(4096)])
def test_not_a_tar(content: bytes) -> None:
    index = index_of(content)
    assert index.invalid is not None and len(index) == 0


def test_bad_header_checksum_is_not_a_tar() -> None:
    index = index_of(raw_tar(raw_header(b"a", checksum_delta=1)))
    assert index.invalid is not None and index.invalid.startswith("not a tar archive")


def test_size_far_beyond_the_file() -> None:
    index = index_of(raw_tar(raw_header(b"big", size_field=b"77777777777\0")))
    assert index.invalid is not None and "is truncated" in index.invalid


def test_negative_base256_size() -> None:
    negative = b"\xff" * 12  # base-256 for -1
    index = index_of(raw_tar(raw_header(b"neg", size_field=negative), raw_member(b"b", b"x")))
    assert index.invalid == "member neg has a negative size"


def test_negative_pax_size_cannot_loop() -> None:
    member = raw_member(b"a", b"x" * 100)
    pax = raw_pax_member(pax_record("size", b"-2048"))
    index = index_of(raw_tar(member, pax, raw_header(b"b", size=0)))
    assert index.invalid is not None and "impossible size field" in index.invalid


def test_oversized_long_name_header_is_refused() -> None:
    longname = raw_member(b"././@LongLink", b"n" * 100_000, typeflag=b"L")
    index = index_of(raw_tar(longname, raw_member(b"x", b"x")))
    assert (
        index.invalid is not None and "metadata header at offset 0 claims 100000" in index.invalid
    )


def test_pathological_pax_header_is_refused_quickly() -> None:
    """tarfile before 3.11.10 needs minutes for this 64 KiB header (CVE-2024-6232)."""
    records = b"2 " * 32_000 + b"=\n"
    index = index_of(raw_tar(raw_pax_member(records), raw_member(b"x", b"x")))
    assert index.invalid is not None and "malformed record" in index.invalid


def test_pax_header_with_long_digit_runs_is_refused_quickly() -> None:
    records = pax_record("comment", b"1" * 60_000)
    index = index_of(raw_tar(raw_pax_member(records), raw_member(b"x", b"x")))
    assert index.invalid is not None and "absurdly long number" in index.invalid


def test_global_pax_header_applies_and_is_not_a_member() -> None:
    tar = raw_tar(
        raw_pax_member(pax_record("comment", b"made by git"), typeflag=b"g"),
        raw_member(b"file", b"x"),
    )
    index = index_of(tar)
    assert index.invalid is None and [m.path for m in index] == ["file"]


def test_gnu_tar_rejects_what_we_reject(tmp_path: Path) -> None:
    """Our verdict on a damaged tar agrees with GNU tar's own integrity check."""
    tar = bytearray(GOOD)
    tar[len(tar) // 3] ^= 0xFF
    (tmp_path / "t.tar").write_bytes(tar)
    gnu = subprocess.run(["tar", "-t", "-f", str(tmp_path / "t.tar")], capture_output=True)
    ours = index_of(bytes(tar))
    assert (gnu.returncode != 0 or b"warning" in gnu.stderr.lower()) <= (ours.invalid is not None)


@pytest.mark.parametrize(
    "records",
    [
        pax_record("path", b"x") + b"garbage=without length\n",
        pax_record("path", b"x") + b"0 =\n",
        b"5 =x\n",
        b"99999 path=short\n",
        b"12 path=x\n\0\0x",
    ],
    ids=["no-length", "zero-length", "empty-keyword", "length-past-end", "garbage-in-padding"],
)
def test_malformed_pax_records_are_refused(records: bytes) -> None:
    index = index_of(raw_tar(raw_pax_member(records), raw_member(b"x", b"x")))
    assert index.invalid is not None and "malformed record" in index.invalid


@pytest.mark.parametrize("typeflag", [b"x", b"L"], ids=["pax", "gnu-longname"])
def test_endless_chain_of_metadata_headers(typeflag: bytes) -> None:
    """tarfile recurses once per chained metadata header; the recursion limit must hold."""
    chain = raw_member(b"meta", pax_record("comment", b"x"), typeflag=typeflag) * 5000
    index = index_of(raw_tar(chain, raw_member(b"file", b"x")))
    assert index.invalid is not None and "recursion" in index.invalid
    assert len(index) == 0
