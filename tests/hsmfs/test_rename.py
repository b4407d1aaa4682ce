"""rename(2) and renameat2(2) on a real mount: replacement rules, link counts, errnos."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from tests.hsmfs.test_posix import errno_of

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]  # fmt: skip


def renameat2(old: Path, new: Path, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, bytes(old), AT_FDCWD, bytes(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(old))


def nlink(path: Path) -> int:
    return os.stat(path).st_nlink


def test_rename_within_a_directory(mnt: Path) -> None:
    (mnt / "a").write_bytes(b"A")
    ino = os.stat(mnt / "a").st_ino
    os.rename(mnt / "a", mnt / "b")
    assert errno_of(os.stat, mnt / "a") == errno.ENOENT
    assert (mnt / "b").read_bytes() == b"A"
    assert os.stat(mnt / "b").st_ino == ino
    assert sorted(os.listdir(mnt)) == ["b"]


def test_rename_over_existing_file_replaces_it(mnt: Path) -> None:
    (mnt / "a").write_bytes(b"A")
    (mnt / "b").write_bytes(b"B")
    os.rename(mnt / "a", mnt / "b")
    assert (mnt / "b").read_bytes() == b"A"
    assert os.listdir(mnt) == ["b"]


def test_rename_over_file_keeps_open_victim_readable(mnt: Path) -> None:
    (mnt / "a").write_bytes(b"new")
    (mnt / "b").write_bytes(b"old")
    fd = os.open(mnt / "b", os.O_RDONLY)
    try:
        os.rename(mnt / "a", mnt / "b")
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 10, 0) == b"old"
    finally:
        os.close(fd)
    assert (mnt / "b").read_bytes() == b"new"


def test_rename_over_hard_link_of_itself_does_nothing(mnt: Path) -> None:
    (mnt / "a").write_bytes(b"A")
    os.link(mnt / "a", mnt / "b")
    os.rename(mnt / "a", mnt / "b")
    assert sorted(os.listdir(mnt)) == ["a", "b"]
    assert nlink(mnt / "a") == 2


def test_rename_over_empty_directory(mnt: Path) -> None:
    (mnt / "src" / "child").mkdir(parents=True)
    (mnt / "dst").mkdir()
    root_links = nlink(mnt)
    os.rename(mnt / "src", mnt / "dst")
    assert os.listdir(mnt / "dst") == ["child"]
    assert errno_of(os.stat, mnt / "src") == errno.ENOENT
    assert nlink(mnt) == root_links - 1
    assert nlink(mnt / "dst") == 3


def test_rename_over_non_empty_directory_is_enotempty(mnt: Path) -> None:
    (mnt / "src").mkdir()
    (mnt / "dst").mkdir()
    (mnt / "dst" / "f").write_bytes(b"")
    assert errno_of(os.rename, mnt / "src", mnt / "dst") == errno.ENOTEMPTY
    assert (mnt / "dst" / "f").exists() and (mnt / "src").is_dir()


def test_rename_directory_over_file_is_enotdir(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "f").write_bytes(b"")
    assert errno_of(os.rename, mnt / "d", mnt / "f") == errno.ENOTDIR


def test_rename_file_over_directory_is_eisdir(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "f").write_bytes(b"")
    assert errno_of(os.rename, mnt / "f", mnt / "d") == errno.EISDIR


def test_rename_of_missing_source_is_enoent(mnt: Path) -> None:
    (mnt / "d").mkdir()
    assert errno_of(os.rename, mnt / "missing", mnt / "x") == errno.ENOENT
    (mnt / "f").write_bytes(b"")
    assert errno_of(os.rename, mnt / "f", mnt / "missing" / "x") == errno.ENOENT


def test_rename_file_across_directories(mnt: Path) -> None:
    (mnt / "a").mkdir()
    (mnt / "b").mkdir()
    (mnt / "a" / "f").write_bytes(b"moved")
    links = nlink(mnt / "a"), nlink(mnt / "b")
    os.rename(mnt / "a" / "f", mnt / "b" / "g")
    assert os.listdir(mnt / "a") == []
    assert (mnt / "b" / "g").read_bytes() == b"moved"
    assert (nlink(mnt / "a"), nlink(mnt / "b")) == links


def test_rename_directory_across_directories_moves_parent_links(mnt: Path) -> None:
    (mnt / "a" / "d" / "sub").mkdir(parents=True)
    (mnt / "b").mkdir()
    (mnt / "a" / "d" / "sub" / "f").write_bytes(b"deep")
    assert (nlink(mnt / "a"), nlink(mnt / "b")) == (3, 2)
    os.rename(mnt / "a" / "d", mnt / "b" / "d2")
    assert (nlink(mnt / "a"), nlink(mnt / "b")) == (2, 3)
    assert (mnt / "b" / "d2" / "sub" / "f").read_bytes() == b"deep"
    # ".." of the moved directory is its new parent.
    assert os.stat(mnt / "b" / "d2" / "..").st_ino == os.stat(mnt / "b").st_ino
    os.rmdir(mnt / "a")  # empty now, so removable


def test_rename_directory_across_over_empty_directory(mnt: Path) -> None:
    (mnt / "a" / "d").mkdir(parents=True)
    (mnt / "b" / "victim").mkdir(parents=True)
    os.rename(mnt / "a" / "d", mnt / "b" / "victim")
    assert (nlink(mnt / "a"), nlink(mnt / "b")) == (2, 3)
    assert os.listdir(mnt / "b") == ["victim"]


def test_rename_into_own_subtree_is_einval(mnt: Path) -> None:
    (mnt / "d" / "e" / "f").mkdir(parents=True)
    assert errno_of(os.rename, mnt / "d", mnt / "d" / "e" / "f" / "x") == errno.EINVAL
    assert errno_of(os.rename, mnt / "d", mnt / "d" / "x") == errno.EINVAL
    assert (mnt / "d" / "e" / "f").is_dir()


def test_rename_noreplace(mnt: Path) -> None:
    (mnt / "a").write_bytes(b"A")
    (mnt / "b").write_bytes(b"B")
    assert errno_of(renameat2, mnt / "a", mnt / "b", RENAME_NOREPLACE) == errno.EEXIST
    assert (mnt / "b").read_bytes() == b"B"
    renameat2(mnt / "a", mnt / "c", RENAME_NOREPLACE)
    assert sorted(os.listdir(mnt)) == ["b", "c"]


def test_rename_exchange_two_files(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "a").write_bytes(b"A")
    (mnt / "d" / "b").write_bytes(b"B")
    ino_a = os.stat(mnt / "a").st_ino
    renameat2(mnt / "a", mnt / "d" / "b", RENAME_EXCHANGE)
    assert (mnt / "a").read_bytes() == b"B"
    assert (mnt / "d" / "b").read_bytes() == b"A"
    assert os.stat(mnt / "d" / "b").st_ino == ino_a


def test_rename_exchange_file_and_directory_across_parents(mnt: Path) -> None:
    (mnt / "p" / "dir" / "inner").mkdir(parents=True)
    (mnt / "q").mkdir()
    (mnt / "q" / "file").write_bytes(b"F")
    assert (nlink(mnt / "p"), nlink(mnt / "q")) == (3, 2)
    renameat2(mnt / "p" / "dir", mnt / "q" / "file", RENAME_EXCHANGE)
    assert (mnt / "p" / "dir").read_bytes() == b"F"
    assert (mnt / "q" / "file" / "inner").is_dir()
    assert (nlink(mnt / "p"), nlink(mnt / "q")) == (2, 3)
    assert os.stat(mnt / "q" / "file" / "..").st_ino == os.stat(mnt / "q").st_ino


def test_rename_exchange_with_missing_target_is_enoent(mnt: Path) -> None:
    (mnt / "a").write_bytes(b"A")
    assert errno_of(renameat2, mnt / "a", mnt / "b", RENAME_EXCHANGE) == errno.ENOENT


def test_rename_exchange_into_own_subtree_is_einval(mnt: Path) -> None:
    (mnt / "d" / "e").mkdir(parents=True)
    assert errno_of(renameat2, mnt / "d", mnt / "d" / "e", RENAME_EXCHANGE) == errno.EINVAL


@pytest.mark.parametrize("flags", [RENAME_NOREPLACE | RENAME_EXCHANGE, 1 << 7])
def test_rename_with_invalid_flags_is_einval(mnt: Path, flags: int) -> None:
    (mnt / "a").write_bytes(b"A")
    (mnt / "b").write_bytes(b"B")
    assert errno_of(renameat2, mnt / "a", mnt / "b", flags) == errno.EINVAL
