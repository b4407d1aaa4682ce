"""readdir on a real mount: complete listings, stable offsets, mutation during a listing.

A raw getdents64(2) loop with a small buffer makes the kernel ask the daemon for the
directory in many small pieces, so the test can change the directory between pieces.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from tests.hsmfs.test_posix import errno_of

_libc = ctypes.CDLL(None, use_errno=True)
_libc.getdents64.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_libc.getdents64.restype = ctypes.c_ssize_t
_DIRENT_HEAD = struct.Struct("=QqHB")  # d_ino, d_off, d_reclen, d_type
DT_DIR, DT_REG, DT_LNK = 4, 8, 10


def getdents(fd: int, bufsize: int = 1024) -> list[tuple[bytes, int, int, int]]:
    """One getdents64 call: [(name, ino, d_off, d_type)]; [] at the end of the directory."""
    buf = ctypes.create_string_buffer(bufsize)
    n = _libc.getdents64(fd, buf, bufsize)
    if n < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    raw = buf.raw[:n]
    entries = []
    pos = 0
    while pos < n:
        ino, off, reclen, dtype = _DIRENT_HEAD.unpack_from(raw, pos)
        name = raw[pos + _DIRENT_HEAD.size : pos + reclen].split(b"\0", 1)[0]
        entries.append((name, ino, off, dtype))
        pos += reclen
    return entries


def batches(fd: int, bufsize: int = 1024, limit: int = 10_000) -> Iterator[list[bytes]]:
    """The names of each getdents64 batch until the end; fails if it never ends."""
    for _ in range(limit):
        batch = getdents(fd, bufsize)
        if not batch:
            return
        yield [name for name, *_ in batch]
    raise AssertionError("the listing did not end")


def make_files(directory: Path, names: list[str]) -> None:
    for name in names:
        os.close(os.open(directory / name, os.O_CREAT | os.O_WRONLY, 0o644))


def test_listing_has_dot_dotdot_and_every_entry_with_type_and_inode(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "f").write_bytes(b"")
    os.symlink("f", mnt / "l")
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = {name: (ino, dtype) for b in iter(lambda: getdents(fd), []) for
                   name, ino, _, dtype in b}  # fmt: skip
    finally:
        os.close(fd)
    assert set(entries) == {b".", b"..", b"d", b"f", b"l"}
    assert entries[b"d"] == (os.stat(mnt / "d").st_ino, DT_DIR)
    assert entries[b"f"] == (os.stat(mnt / "f").st_ino, DT_REG)
    assert entries[b"l"] == (os.lstat(mnt / "l").st_ino, DT_LNK)
    assert entries[b"."][0] == os.stat(mnt).st_ino


def test_empty_directory_lists_only_dot_entries(mnt: Path) -> None:
    (mnt / "d").mkdir()
    assert os.listdir(mnt / "d") == []
    fd = os.open(mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(name for b in batches(fd) for name in b) == [b".", b".."]
    finally:
        os.close(fd)


def test_big_directory_lists_every_entry_once(mnt: Path) -> None:
    names = [f"file-{i:05d}" for i in range(1000)]
    make_files(mnt, names)
    assert sorted(os.listdir(mnt)) == names
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen = [name for b in batches(fd, 600) for name in b]
    finally:
        os.close(fd)
    assert len(seen) == len(set(seen)) == 1002


def test_mutation_between_getdents_calls(mnt: Path) -> None:
    names = [f"entry-{i:05d}" for i in range(1000)]
    make_files(mnt, names)
    removed: set[bytes] = set()
    added: set[bytes] = set()
    seen: list[bytes] = []
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for round_, batch in enumerate(batches(fd, 1024)):
            seen += batch
            if round_ >= 20:
                continue  # a directory that keeps growing ahead of the reader never ends
            # Remove one entry already listed and one still ahead; add two new ones.
            behind = batch[-1]
            if behind not in (b".", b"..") and round_ % 2 == 0:
                os.unlink(mnt / behind.decode())
                removed.add(behind)
            ahead = f"entry-{999 - round_ * 7:05d}".encode()
            if ahead not in removed and ahead not in seen:
                os.unlink(mnt / ahead.decode())
                removed.add(ahead)
            for k in range(2):
                new = f"new-{round_}-{k}".encode()
                make_files(mnt, [new.decode()])
                added.add(new)
    finally:
        os.close(fd)
    assert len(seen) == len(set(seen)), "an entry was listed twice"
    stayed = {n.encode() for n in names} - removed
    assert stayed <= set(seen), "entries present throughout the listing were missed"
    assert set(seen) <= {b".", b".."} | {n.encode() for n in names} | added
    assert len(removed) >= 25 and len(added) == 40  # the listing really was mutated
    final = set(os.listdir(bytes(mnt)))
    assert final == ({n.encode() for n in names} - removed) | added


def test_scandir_while_mutating(mnt: Path) -> None:
    # Long names: glibc's 32 KiB readdir buffer holds ~140, so the listing takes 5 calls.
    names = [f"s-{i:05d}-" + "x" * 200 for i in range(700)]
    make_files(mnt, names)
    seen: list[str] = []
    created = 0
    with os.scandir(mnt) as it:
        for i, entry in enumerate(it):
            seen.append(entry.name)
            assert entry.is_file()
            if i % 20 == 0:
                victim = names[-1 - i // 20]
                if victim not in seen:
                    os.unlink(mnt / victim)
                make_files(mnt, [f"t-{i:05d}"])
                created += 1
    assert len(seen) == len(set(seen))
    unlinked = {names[-1 - k] for k in range(created)}
    assert set(names) - unlinked <= set(seen)


def test_seek_back_to_a_saved_offset(mnt: Path) -> None:
    names = [f"x-{i:04d}" for i in range(300)]
    make_files(mnt, names)
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = getdents(fd, 2048)
        saved = first[-1][2]  # d_off: where the next read starts
        rest_before = [name for b in iter(lambda: getdents(fd, 2048), []) for name, *_ in b]
        # An entry after the saved offset goes away; reading from it again must match.
        gone = rest_before[10]
        os.unlink(mnt / gone.decode())
        os.lseek(fd, saved, os.SEEK_SET)
        rest_after = [name for b in iter(lambda: getdents(fd, 2048), []) for name, *_ in b]
        os.lseek(fd, 0, os.SEEK_SET)
        again = getdents(fd, 2048)
    finally:
        os.close(fd)
    assert rest_after == [n for n in rest_before if n != gone]
    assert [e[0] for e in again] == [e[0] for e in first]


def test_readdir_of_file_is_enotdir(mnt: Path) -> None:
    import errno

    (mnt / "f").write_bytes(b"")
    assert errno_of(os.listdir, mnt / "f") == errno.ENOTDIR
    assert errno_of(os.open, mnt / "f", os.O_RDONLY | os.O_DIRECTORY) == errno.ENOTDIR


def test_stat_of_listed_entries_matches(mnt: Path) -> None:
    make_files(mnt, [f"m-{i}" for i in range(200)])
    with os.scandir(mnt) as it:
        for entry in it:
            st = entry.stat(follow_symlinks=False)
            assert st.st_ino == entry.inode()
            assert stat.S_ISREG(st.st_mode)
