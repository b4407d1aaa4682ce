"""Hostile and damaged tars on a real mount: nothing outside the tar is ever exposed, and
the daemon keeps answering whatever it was given."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hsmfs.tarindex import index_tar
from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store
from tests.members.support import (
    PREFETCH_NONE,
    make_tar,
    member,
    put_tar,
    read_member,
    series,
    tar_status,
)
from tests.mounts import HsmMount
from tests.tarindex.tarindex_builders import (
    BLOCK,
    pax_record,
    raw_member,
    raw_pax_member,
    raw_tar,
)

OUTSIDE = b"outside the tar: must never be served through it"


def plant_outside(hsm: HsmMount) -> None:
    """Real files next to the tar that escaping names and links would reach."""
    for path in ("etc/passwd", "evil", "secret"):
        (hsm.mnt / path).parent.mkdir(parents=True, exist_ok=True)
        (hsm.mnt / path).write_bytes(OUTSIDE)


def walk(root: Path) -> dict[str, bytes | str]:
    """Everything reachable below `root` without following symlinks out of it:
    relative path -> file bytes, or "dir", or "-> target" for a symlink."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                seen[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                seen[key] = "dir"
            else:
                seen[key] = path.read_bytes()
    return seen


def assert_alive(hsm: HsmMount) -> None:
    """The daemon still answers: listing, writing and indexing a new tar all work."""
    assert hsm.proc is not None and hsm.proc.poll() is None
    files = series(2, 100, prefix="ALIVE")
    probe = put_tar(hsm, f"alive-{len(os.listdir(hsm.mnt))}.tar", make_tar(files))
    assert read_member(member(probe, "ALIVE/00000002")) == files["ALIVE/00000002"]


def test_dot_dot_and_absolute_names_stay_inside(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    plant_outside(hsm)
    data = raw_tar(
        raw_member(b"../evil", b"dotdot"),
        raw_member(b"a/../../secret", b"dotdot2"),
        raw_member(b"/etc/passwd", b"absolute, made relative"),
        raw_member(b"fine", b"fine"),
    )
    tar = put_tar(hsm, "hostile.tar", data)
    status = tar_status(tar)
    assert status is not None and status.startswith("invalid: ") and "'..'" in status
    assert walk(member(tar)) == {
        "etc": "dir",
        "etc/passwd": b"absolute, made relative",
        "fine": b"fine",
    }
    for escape in ("../evil", "a/../../secret", "..", "../secret"):
        path = member(tar, escape)
        assert not os.path.exists(path) or path.resolve() in (hsm.mnt, hsm.mnt / "secret")
    # '..' above the tar root is the tar's real directory, as for any directory.
    assert (member(tar) / "..").resolve() == hsm.mnt
    assert read_member(hsm.mnt / "evil") == OUTSIDE  # untouched
    assert_alive(hsm)


def test_symlinks_resolve_only_inside_the_tar(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    plant_outside(hsm)
    data = raw_tar(
        raw_member(b"etc/passwd", b"inside"),
        raw_member(b"abs", typeflag=b"2", linkname=b"/etc/passwd"),
        raw_member(b"d/up", typeflag=b"2", linkname=b"../../../../etc/passwd"),
        raw_member(b"d/root", typeflag=b"2", linkname=b"../../.."),
        raw_member(b"top", typeflag=b"2", linkname=b"/"),
        raw_member(b"esc", typeflag=b"2", linkname=b"../evil"),
        raw_member(b"d/esc", typeflag=b"2", linkname=b"../../evil"),
        raw_member(b"loop1", typeflag=b"2", linkname=b"loop2"),
        raw_member(b"loop2", typeflag=b"2", linkname=b"loop1"),
    )
    tar = put_tar(hsm, "links.tar", data)
    # Relative targets, one "../" per directory of the link: right wherever the mount is.
    assert os.readlink(member(tar, "abs")) == "links.tar!etc/passwd"
    assert os.readlink(member(tar, "d/up")) == "../links.tar!etc/passwd"
    assert os.readlink(member(tar, "top")) == "links.tar!"
    assert os.readlink(member(tar, "d/esc")) == "../links.tar!evil"
    for link in ("abs", "d/up", "d/root/etc/passwd", "top/etc/passwd"):
        for path in (member(tar, link), member(tar) / link):  # NAME.tar!LINK and via the root
            assert read_member(path) == b"inside", path
    for link in ("top", "d/root"):
        for path in (member(tar, link), member(tar) / link):
            assert sorted(os.listdir(path)) == ["abs", "d", "esc", "etc", "loop1", "loop2", "top"]
    for path in (member(tar, "esc"), member(tar) / "esc", member(tar, "d/esc")):
        with pytest.raises(OSError) as caught:  # the tar has no "evil" file: a dangling link
            read_member(path)
        assert caught.value.errno == errno.ENOENT
    with pytest.raises(OSError) as caught:
        read_member(member(tar, "loop1"))
    assert caught.value.errno == errno.ELOOP
    assert_alive(hsm)


def test_member_symlinks_still_resolve_when_the_mount_moves(
    s3: Store, make_mount: MountFactory, tmp_path: Path
) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    data = raw_tar(
        raw_member(b"etc/passwd", b"inside"),
        raw_member(b"abs", typeflag=b"2", linkname=b"/etc/passwd"),
        raw_member(b"d/up", typeflag=b"2", linkname=b"../etc/passwd"),
    )
    put_tar(hsm, "2011/links.tar", data)
    moved = tmp_path / "moved"  # the same file system seen at another path
    moved.mkdir()
    subprocess.run(["mount", "--bind", str(hsm.mnt), str(moved)], check=True)
    try:
        tar = moved / "2011/links.tar"
        for link in ("abs", "d/up"):
            path = member(tar, link)
            assert read_member(path) == b"inside", path
            assert path.resolve().is_relative_to(moved)  # never through the old mount path
    finally:
        subprocess.run(["umount", str(moved)], check=True)


def test_hard_links_resolve_inside_or_are_left_out(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    plant_outside(hsm)
    data = raw_tar(
        raw_member(b"file", b"data"),
        raw_member(b"good", typeflag=b"1", linkname=b"./file"),
        raw_member(b"missing", typeflag=b"1", linkname=b"nowhere"),
        raw_member(b"escape", typeflag=b"1", linkname=b"../../etc/passwd"),
        raw_member(b"abs", typeflag=b"1", linkname=b"/etc/passwd"),
    )
    tar = put_tar(hsm, "hard.tar", data)
    assert read_member(member(tar, "good")) == b"data"
    assert os.stat(member(tar, "good")).st_ino == os.stat(member(tar, "file")).st_ino
    for name in ("missing", "escape", "abs"):
        assert not os.path.exists(member(tar, name)), name
    assert set(walk(member(tar)).values()) == {b"data"}


def test_duplicate_names_last_one_wins(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    data = raw_tar(raw_member(b"a", b"first"), raw_member(b"b", b"b"), raw_member(b"a", b"second!"))
    tar = put_tar(hsm, "dup.tar", data)
    assert walk(member(tar)) == {"a": b"second!", "b": b"b"}
    assert os.stat(member(tar, "a")).st_size == len(b"second!")


def _cut_after_last_member(tar: bytes) -> bytes:
    """The tar without its end-of-archive marker: cut right after the last member's data."""
    last = max(index_tar(io.BytesIO(tar)), key=lambda m: m.data_offset)
    return tar[: last.data_offset + -(-last.size // BLOCK) * BLOCK]


TRUNCATED_AT_BOUNDARY = _cut_after_last_member(make_tar(series(3, 3000)))

DAMAGED = {
    "truncated-in-data": make_tar(series(3, 3000))[: 3 * BLOCK + 700],
    "truncated-at-boundary": TRUNCATED_AT_BOUNDARY,
    "garbage": os.urandom(64 * 1024),
    "zeros-only": b"\0" * 10240,
    "bad-checksum": raw_tar(raw_member(b"a", b"data", checksum_delta=1)),
    "size-past-end": raw_tar(raw_member(b"a", b"x", size_field=b"77777777777\0")),
    "nul-in-pax-path": raw_tar(
        raw_pax_member(pax_record("path", b"ok\0/../../evil")), raw_member(b"p", b"x")
    ),
    "over-long-name": raw_tar(
        raw_pax_member(pax_record("path", b"dir/" + b"n" * 256)), raw_member(b"p", b"x")
    ),
    "huge-pax-record": raw_tar(raw_pax_member(b"99999999999 path=x\n"), raw_member(b"p", b"x")),
    "empty": b"",
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_damaged_tars_never_crash_or_expose(s3: Store, make_mount: MountFactory, kind: str) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    plant_outside(hsm)
    tar = put_tar(hsm, f"{kind}.tar", DAMAGED[kind])
    status = tar_status(tar)
    assert status is not None
    if kind not in ("empty", "zeros-only"):
        assert status.startswith("invalid: "), status
    root = member(tar)
    if os.path.exists(root):
        for content in walk(root).values():
            assert content != OUTSIDE
    assert not os.path.exists(member(tar, "evil"))
    assert read_member(tar) == DAMAGED[kind]  # the tar itself stays an ordinary file
    assert_alive(hsm)


def test_many_hostile_tars_in_a_row_leave_the_daemon_answering(
    s3: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    good = make_tar(series(4, 1500), fmt=tarfile.GNU_FORMAT)
    rng = __import__("random").Random(20240501)
    for n in range(30):  # random single-byte damage anywhere in the headers or the data
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        tar = put_tar(hsm, f"fuzz/{n}.tar", bytes(damaged))
        root = member(tar)
        if str(tar_status(tar)).startswith("valid") and os.path.isdir(root):
            walk(root)  # every listed member is readable (or fails cleanly below)
    assert_alive(hsm)
