"""Resident file data: one cache file per inode under the cache directory.

Layout: ``CACHE/data/XX/INO`` where XX is the low byte of the inode number in hex, so no
directory grows past a few thousand entries, and INO is the inode number in hex. The
catalog says which inodes should have data here; ``fsck`` compares the two.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CacheUsage:
    used_bytes: int  # bytes in use on the cache's file system
    total_bytes: int  # size of the cache's file system
    free_bytes: int


class CacheDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)

    def path(self, ino: int) -> Path:
        return self.data / f"{ino & 0xFF:02x}" / f"{ino:x}"

    def exists(self, ino: int) -> bool:
        return self.path(ino).exists()

    def open(self, ino: int, *, create: bool = False) -> int:
        """Open the cache file of ``ino`` for reading and writing; returns the fd."""
        path = self.path(ino)
        flags = os.O_RDWR | os.O_CLOEXEC
        if create:
            path.parent.mkdir(exist_ok=True)
            flags |= os.O_CREAT
        fd = os.open(path, flags, 0o600)
        # Reads through the mount are mostly sequential (DICOM files, tars): read ahead more.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return fd

    def create_empty(self, ino: int) -> None:
        """Make sure ``ino`` has a cache file (an existing one is left as it is)."""
        os.close(self.open(ino, create=True))

    def size(self, ino: int) -> int | None:
        try:
            return self.path(ino).stat().st_size
        except FileNotFoundError:
            return None

    def truncate(self, ino: int, size: int, *, create: bool = False) -> None:
        """Set the cache file's size; ``create`` for an empty file that has none yet."""
        if create:
            self.create_empty(ino)
        os.truncate(self.path(ino), size)

    def remove(self, ino: int) -> None:
        try:
            self.path(ino).unlink()
        except FileNotFoundError:
            pass

    def inodes(self) -> Iterator[tuple[int, Path]]:
        """Every inode that has a cache file, with the file's path."""
        for bucket in sorted(self.data.iterdir()):
            if not bucket.is_dir():
                continue
            for entry in os.scandir(bucket):
                try:
                    yield int(entry.name, 16), Path(entry.path)
                except ValueError:
                    yield -1, Path(entry.path)  # a stray file: fsck reports it

    def usage(self) -> CacheUsage:
        st = os.statvfs(self.root)
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return CacheUsage(used_bytes=total - free, total_bytes=total, free_bytes=free)


_WOULD_BLOCK = (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL)


def pread_nowait(fd: int, buf: bytearray, offset: int) -> int | None:
    """Read into ``buf`` from the page cache without ever waiting for the disk.

    Returns the byte count if the page cache had all of them (or the file ended there),
    None if the read would block; the caller then reads in a worker thread. This keeps
    cached reads off the thread pool (a thread hop costs more than the copy) and slow
    disks off the trio thread.
    """
    try:
        n = os.preadv(fd, [buf], offset, os.RWF_NOWAIT)
    except OSError as exc:
        if exc.errno in _WOULD_BLOCK:
            return None
        raise
    if n == len(buf) or n == 0 or offset + n >= os.fstat(fd).st_size:
        return n
    return None  # partly cached


def pread_into(fd: int, buf: bytearray, offset: int) -> int:
    return os.preadv(fd, [buf], offset)
