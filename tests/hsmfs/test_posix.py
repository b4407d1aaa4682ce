"""POSIX operations on a real mount: attributes, files, directories, links, names, statfs.

Every test uses plain ``os`` calls against the mount and checks the errno of each failure.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tests.mounts import HsmMount, wait_for


def errno_of(func: object, *args: object, **kwargs: object) -> int:
    """Call func and return the errno of the OSError it must raise."""
    with pytest.raises(OSError) as info:
        func(*args, **kwargs)  # type: ignore[operator]
    return info.value.errno


def cache_files(hsm: HsmMount) -> set[str]:
    return {p.name for p in (hsm.cache / "data").rglob("*") if p.is_file()}


# -- lookup and getattr -----------------------------------------------------------------
def test_lookup_and_getattr_of_new_file(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"12345")
    st = os.stat(f)
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 5
    assert st.st_nlink == 1
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert st.st_ino != os.stat(mnt).st_ino
    assert st.st_blocks * 512 >= 5


def test_lookup_of_missing_names(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"x")
    assert errno_of(os.stat, mnt / "missing") == errno.ENOENT
    assert errno_of(os.stat, mnt / "missing" / "deeper") == errno.ENOENT
    assert errno_of(os.stat, mnt / "f" / "child") == errno.ENOTDIR


def test_root_is_a_directory_with_dot_and_dotdot(mnt: Path) -> None:
    (mnt / "d").mkdir()
    st = os.stat(mnt)
    assert stat.S_ISDIR(st.st_mode)
    assert os.stat(mnt / "d" / "..").st_ino == st.st_ino
    assert os.stat(mnt / "d" / ".").st_ino == os.stat(mnt / "d").st_ino


# -- setattr ----------------------------------------------------------------------------
def test_chmod_changes_permission_bits_only(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    os.chmod(f, 0o4751)
    st = os.stat(f)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o4751
    (mnt / "d").mkdir()
    os.chmod(mnt / "d", 0o700)
    assert stat.S_IMODE(os.stat(mnt / "d").st_mode) == 0o700
    assert stat.S_ISDIR(os.stat(mnt / "d").st_mode)


def test_chown_sets_owner_and_group(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    os.chown(f, 1234, 5678)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(f, -1, 42)  # -1 leaves the owner alone
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (1234, 42)


def test_chown_of_symlink_itself(mnt: Path) -> None:
    (mnt / "target").write_bytes(b"x")
    os.symlink("target", mnt / "link")
    os.lchown(mnt / "link", 77, 88)
    assert (os.lstat(mnt / "link").st_uid, os.lstat(mnt / "link").st_gid) == (77, 88)
    assert os.stat(mnt / "target").st_uid == os.getuid()


def test_utimens_keeps_nanoseconds(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    atime = 1_300_000_000_123_456_789
    mtime = 1_400_000_000_987_654_321
    os.utime(f, ns=(atime, mtime))
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)
    # The change is visible through a fresh lookup too, not only the kernel's copy.
    os.rename(f, mnt / "g")
    st = os.stat(mnt / "g")
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)


def test_utime_now_and_ctime_moves_forward(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    os.utime(f, ns=(1, 2))
    before = os.stat(f)
    os.utime(f)  # "now"
    after = os.stat(f)
    assert after.st_mtime_ns > 2 and after.st_atime_ns > 1
    assert after.st_ctime_ns >= before.st_ctime_ns


def test_write_updates_mtime(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    os.utime(f, ns=(10**9, 10**9))
    with open(f, "r+b") as fh:
        fh.write(b"y")
    assert os.stat(f).st_mtime_ns > 10**9


def test_truncate_shrinks_and_grows_with_zeros(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"abcdefghij")
    os.truncate(f, 4)
    assert os.stat(f).st_size == 4
    assert f.read_bytes() == b"abcd"
    os.truncate(f, 10)
    assert os.stat(f).st_size == 10
    assert f.read_bytes() == b"abcd" + b"\0" * 6
    os.truncate(f, 0)
    assert f.read_bytes() == b""


def test_ftruncate_on_open_file_shrinks_and_grows(mnt: Path) -> None:
    f = mnt / "f"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"0123456789" * 1000)
        os.ftruncate(fd, 5)
        assert os.fstat(fd).st_size == 5
        assert os.pread(fd, 100, 0) == b"01234"
        os.ftruncate(fd, 3 * 1024 * 1024)
        assert os.fstat(fd).st_size == 3 * 1024 * 1024
        tail = os.pread(fd, 100, 2 * 1024 * 1024)
        assert tail == b"\0" * 100
        os.pwrite(fd, b"end", 3 * 1024 * 1024 - 3)
    finally:
        os.close(fd)
    data = f.read_bytes()
    assert len(data) == 3 * 1024 * 1024
    assert data[:5] == b"01234" and data[-3:] == b"end"
    assert data[5:-3].count(0) == len(data) - 8


def test_truncate_of_directory_is_eisdir(mnt: Path) -> None:
    (mnt / "d").mkdir()
    assert errno_of(os.truncate, mnt / "d", 0) == errno.EISDIR


# -- directories ------------------------------------------------------------------------
def test_mkdir_and_nlink_of_parent(mnt: Path) -> None:
    root_links = os.stat(mnt).st_nlink
    os.mkdir(mnt / "d", 0o750)
    st = os.stat(mnt / "d")
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750 & ~_umask()
    assert st.st_nlink == 2
    assert os.stat(mnt).st_nlink == root_links + 1
    os.mkdir(mnt / "d" / "e")
    assert os.stat(mnt / "d").st_nlink == 3
    (mnt / "d" / "file").write_bytes(b"")
    assert os.stat(mnt / "d").st_nlink == 3  # files do not count


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mkdir_errors(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "f").write_bytes(b"")
    assert errno_of(os.mkdir, mnt / "d") == errno.EEXIST
    assert errno_of(os.mkdir, mnt / "f") == errno.EEXIST
    assert errno_of(os.mkdir, mnt / "missing" / "d") == errno.ENOENT
    assert errno_of(os.mkdir, mnt / "f" / "d") == errno.ENOTDIR


def test_rmdir_empty_and_errors(mnt: Path) -> None:
    root_links = os.stat(mnt).st_nlink
    (mnt / "d").mkdir()
    (mnt / "d" / "f").write_bytes(b"")
    (mnt / "file").write_bytes(b"")
    assert errno_of(os.rmdir, mnt / "d") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, mnt / "file") == errno.ENOTDIR
    assert errno_of(os.rmdir, mnt / "missing") == errno.ENOENT
    os.unlink(mnt / "d" / "f")
    os.rmdir(mnt / "d")
    assert errno_of(os.stat, mnt / "d") == errno.ENOENT
    assert os.stat(mnt).st_nlink == root_links


def test_rmdir_of_directory_with_only_a_subdirectory(mnt: Path) -> None:
    (mnt / "d" / "e").mkdir(parents=True)
    assert errno_of(os.rmdir, mnt / "d") == errno.ENOTEMPTY
    os.rmdir(mnt / "d" / "e")
    os.rmdir(mnt / "d")


def test_create_in_removed_directory_fails(mnt: Path) -> None:
    (mnt / "d").mkdir()
    fd = os.open(mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(mnt / "d")
        assert errno_of(os.open, "f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd) == errno.ENOENT
        assert errno_of(os.mkdir, "sub", dir_fd=fd) == errno.ENOENT
    finally:
        os.close(fd)


# -- create and open --------------------------------------------------------------------
def test_create_exclusive(mnt: Path) -> None:
    f = mnt / "f"
    fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.close(fd)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640 & ~_umask()
    assert errno_of(os.open, f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640) == errno.EEXIST
    (mnt / "d").mkdir()
    assert errno_of(os.open, mnt / "d", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST


def test_open_missing_without_create_is_enoent(mnt: Path) -> None:
    assert errno_of(os.open, mnt / "nope", os.O_RDONLY) == errno.ENOENT


def test_open_directory_for_writing_is_eisdir(mnt: Path) -> None:
    (mnt / "d").mkdir()
    assert errno_of(os.open, mnt / "d", os.O_WRONLY) == errno.EISDIR


def test_open_truncate_empties_the_file(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"old contents")
    fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert f.read_bytes() == b"new"
    assert os.stat(f).st_size == 3


def test_open_truncate_while_another_handle_is_open(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x" * 10000)
    reader = os.open(f, os.O_RDONLY)
    try:
        assert os.pread(reader, 10, 0) == b"x" * 10
        os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
        assert os.fstat(reader).st_size == 0
        assert os.pread(reader, 10, 0) == b""
    finally:
        os.close(reader)


def test_append_writes_at_the_end(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"start-")
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"one-")
        other = os.open(f, os.O_WRONLY)
        os.pwrite(other, b"!", 20)  # the file grows behind the appender's back
        os.close(other)
        os.write(fd, b"two")
    finally:
        os.close(fd)
    assert f.read_bytes() == b"start-one-" + b"\0" * 10 + b"!" + b"two"


# -- read and write ---------------------------------------------------------------------
def test_write_at_random_offsets(mnt: Path) -> None:
    import random

    rng = random.Random(2)
    size = 2 * 1024 * 1024
    model = bytearray(size)
    f = mnt / "f"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        for _ in range(300):
            off = rng.randrange(size - 70000)
            chunk = rng.randbytes(rng.randrange(1, 70000))
            assert os.pwrite(fd, chunk, off) == len(chunk)
            model[off : off + len(chunk)] = chunk
        for _ in range(50):
            off = rng.randrange(size)
            n = rng.randrange(1, 200000)
            assert os.pread(fd, n, off) == bytes(model[off : off + n])
    finally:
        os.close(fd)
    assert f.read_bytes() == bytes(model)


def test_sparse_file_holes_read_as_zeros(mnt: Path) -> None:
    f = mnt / "f"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"head", 0)
        os.pwrite(fd, b"middle", 5 * 1024 * 1024)
        os.pwrite(fd, b"tail", 64 * 1024 * 1024)
    finally:
        os.close(fd)
    st = os.stat(f)
    assert st.st_size == 64 * 1024 * 1024 + 4
    with open(f, "rb") as fh:
        assert fh.read(4) == b"head"
        assert fh.read(1024 * 1024) == b"\0" * (1024 * 1024)
        fh.seek(5 * 1024 * 1024 - 3)
        assert fh.read(12) == b"\0\0\0middle\0\0\0"
        fh.seek(64 * 1024 * 1024 - 2)
        assert fh.read(100) == b"\0\0tail"


def test_read_past_end_returns_nothing(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"abc")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert os.pread(fd, 10, 3) == b""
        assert os.pread(fd, 10, 1000) == b""
        assert os.pread(fd, 10, 1) == b"bc"
    finally:
        os.close(fd)


def test_write_on_read_only_descriptor_is_ebadf(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"abc")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert errno_of(os.write, fd, b"x") == errno.EBADF
    finally:
        os.close(fd)


def test_flush_and_fsync_and_fdatasync(mnt: Path) -> None:
    f = mnt / "f"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"a" * 100000)
        os.fsync(fd)
        os.write(fd, b"b")
        os.fdatasync(fd)
        dup = os.dup(fd)
        os.close(dup)  # a flush with the file still open
        assert os.fstat(fd).st_size == 100001
    finally:
        os.close(fd)
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # fsyncdir
    finally:
        os.close(dfd)
    assert f.read_bytes() == b"a" * 100000 + b"b"


# -- unlink -----------------------------------------------------------------------------
def test_unlink_and_errors(hsm: HsmMount) -> None:
    mnt = hsm.mnt
    (mnt / "d").mkdir()
    f = mnt / "f"
    f.write_bytes(b"x")
    before = cache_files(hsm)
    os.unlink(f)
    assert errno_of(os.stat, f) == errno.ENOENT
    assert errno_of(os.unlink, f) == errno.ENOENT
    assert errno_of(os.unlink, mnt / "d") == errno.EISDIR
    wait_for(lambda: len(cache_files(hsm)) == len(before) - 1, what="the cache file removed")


def test_open_unlinked_file_stays_readable_until_closed(hsm: HsmMount) -> None:
    mnt = hsm.mnt
    f = mnt / "f"
    f.write_bytes(b"still here" * 1000)
    baseline = cache_files(hsm)
    fd = os.open(f, os.O_RDWR)
    try:
        os.unlink(f)
        assert errno_of(os.stat, f) == errno.ENOENT
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 10, 0) == b"still here"
        os.pwrite(fd, b"more", 10000)
        assert os.pread(fd, 20, 9996) == b"heremore"
        assert cache_files(hsm) == baseline  # the data is kept while open
        f.write_bytes(b"a new file of the same name")
        assert os.pread(fd, 10, 0) == b"still here"
    finally:
        os.close(fd)
    assert f.read_bytes() == b"a new file of the same name"
    wait_for(lambda: len(cache_files(hsm)) == len(baseline), what="the unlinked data freed")


# -- hard links and symlinks ------------------------------------------------------------
def test_hard_links_share_inode_and_count(mnt: Path) -> None:
    (mnt / "a").mkdir()
    (mnt / "b").mkdir()
    f = mnt / "a" / "f"
    f.write_bytes(b"shared")
    os.link(f, mnt / "b" / "g")
    os.link(f, mnt / "a" / "h")
    st = os.stat(f)
    assert st.st_nlink == 3
    assert os.stat(mnt / "b" / "g").st_ino == st.st_ino
    with open(mnt / "b" / "g", "ab") as fh:
        fh.write(b"!")
    assert f.read_bytes() == b"shared!"
    os.unlink(f)
    assert os.stat(mnt / "a" / "h").st_nlink == 2
    os.unlink(mnt / "a" / "h")
    assert os.stat(mnt / "b" / "g").st_nlink == 1
    assert (mnt / "b" / "g").read_bytes() == b"shared!"


def test_hard_link_errors(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "f").write_bytes(b"")
    (mnt / "g").write_bytes(b"")
    assert errno_of(os.link, mnt / "d", mnt / "d2") == errno.EPERM
    assert errno_of(os.link, mnt / "f", mnt / "g") == errno.EEXIST
    assert errno_of(os.link, mnt / "missing", mnt / "x") == errno.ENOENT
    assert errno_of(os.link, mnt / "f", mnt / "missing" / "x") == errno.ENOENT


def test_symlink_and_readlink(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "d" / "target").write_bytes(b"through the link")
    os.symlink("d/target", mnt / "rel")
    os.symlink("/nonexistent/\u00e9\u00e8/x" * 20, mnt / "dangling")
    st = os.lstat(mnt / "rel")
    assert stat.S_ISLNK(st.st_mode)
    assert st.st_size == len(b"d/target")
    assert os.readlink(mnt / "rel") == "d/target"
    assert (mnt / "rel").read_bytes() == b"through the link"
    assert os.readlink(mnt / "dangling") == "/nonexistent/\u00e9\u00e8/x" * 20
    assert errno_of(os.stat, mnt / "dangling") == errno.ENOENT
    assert errno_of(os.symlink, "x", mnt / "rel") == errno.EEXIST
    assert errno_of(os.readlink, mnt / "d" / "target") == errno.EINVAL
    os.unlink(mnt / "rel")
    assert (mnt / "d" / "target").exists()


def test_symlink_to_directory_is_followed(mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "d" / "f").write_bytes(b"x")
    os.symlink("d", mnt / "link")
    assert os.listdir(mnt / "link") == ["f"]
    assert (mnt / "link" / "f").read_bytes() == b"x"


def test_mknod_fifo(mnt: Path) -> None:
    os.mkfifo(mnt / "fifo", 0o600)
    st = os.stat(mnt / "fifo")
    assert stat.S_ISFIFO(st.st_mode)
    assert "fifo" in os.listdir(mnt)


# -- names ------------------------------------------------------------------------------
def test_names_of_255_bytes_work_and_256_are_too_long(mnt: Path) -> None:
    ok = "n" * 251 + "\u00e9\u00e9"  # 255 bytes in UTF-8
    assert len(ok.encode()) == 255
    long = "n" * 256
    (mnt / ok).write_bytes(b"x")
    assert (mnt / ok).read_bytes() == b"x"
    assert ok in os.listdir(mnt)
    os.mkdir(mnt / ("d" * 255))
    os.rename(mnt / ok, mnt / ("d" * 255) / ("r" * 255))
    assert (mnt / ("d" * 255) / ("r" * 255)).read_bytes() == b"x"
    assert errno_of(os.stat, mnt / long) == errno.ENAMETOOLONG
    assert errno_of(os.open, mnt / long, os.O_CREAT | os.O_WRONLY, 0o644) == errno.ENAMETOOLONG
    assert errno_of(os.mkdir, mnt / long) == errno.ENAMETOOLONG
    assert errno_of(os.symlink, "x", mnt / long) == errno.ENAMETOOLONG
    src = mnt / ("d" * 255) / ("r" * 255)
    assert errno_of(os.link, src, mnt / long) == errno.ENAMETOOLONG
    assert errno_of(os.rename, src, mnt / long) == errno.ENAMETOOLONG
    assert long not in os.listdir(mnt)


def test_names_are_bytes_not_text(mnt: Path) -> None:
    raw = b"caf\xe9-latin1"  # not valid UTF-8
    os.mkdir(bytes(mnt) + b"/" + raw)
    assert raw in os.listdir(bytes(mnt))
    assert os.path.isdir(bytes(mnt) + b"/" + raw)


# -- statfs -----------------------------------------------------------------------------
def test_statfs_reports_space_and_name_limit(hsm: HsmMount) -> None:
    mnt = hsm.mnt
    for i in range(10):
        (mnt / f"f{i}").write_bytes(b"x")
    st = os.statvfs(mnt)
    assert st.f_namemax == 255
    assert st.f_bsize > 0 and st.f_frsize > 0
    assert 0 < st.f_bavail <= st.f_bfree <= st.f_blocks
    assert st.f_files >= 11 + st.f_ffree
    cache = os.statvfs(hsm.cache)
    assert st.f_blocks * st.f_frsize == cache.f_blocks * cache.f_frsize
