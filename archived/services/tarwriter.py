"""Write one series tar: first member MD5SUM (md5sum(1) format), then the instance files.

The tar is created with O_EXCL at its final name, written in large blocks (each write
through a FUSE mount is a request), fsync'd, and its directory fsync'd; on any failure it
is removed. Every source is hashed while it is copied: a file that no longer matches the
MD5 in the index fails the tar (the MD5SUM, written first, would lie about it).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from archived.services.errors import TarWriteError

MD5SUM_NAME = "MD5SUM"
BLOCK = 1 << 20


@dataclass(frozen=True)
class TarMember:
    name: str  # '<series8>/<file pk as 8 upper-case hex>'
    source: Path
    md5: str  # 32 lower-case hex digits, from the index
    size: int


def md5sum_text(members: Sequence[TarMember]) -> bytes:
    """md5sum(1) output for the members: '<md5>  <name>' per line."""
    return "".join(f"{m.md5.lower()}  {m.name}\n" for m in members).encode()


class _HashingReader(io.RawIOBase):
    """Reads a source file for tarfile while computing its MD5 and counting bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.md5(usedforsecurity=False)
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data


def _makedirs(directory: Path) -> None:
    """Create ``directory`` and missing parents, fsyncing each new directory's parent."""
    missing = []
    probe = directory
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info


def write_tar(path: Path, members: Sequence[TarMember]) -> int:
    """Create the tar at ``path`` (must not exist); return its size in bytes."""
    _makedirs(path.parent)
    now = time.time()
    try:
        out = open(path, "xb", buffering=BLOCK)
    except OSError as exc:
        raise TarWriteError(f"{path}: cannot create the tar: {exc.strerror or exc}") from exc
    try:
        with (
            out,
            tarfile.TarFile(
                fileobj=out, mode="w", format=tarfile.USTAR_FORMAT, copybufsize=BLOCK
            ) as tar,
        ):
            listing = md5sum_text(members)
            tar.addfile(_info(MD5SUM_NAME, len(listing), now), io.BytesIO(listing))
            for member in members:
                _copy_member(tar, member, now)
            tar.close()  # writes the end-of-archive blocks before the fsync below
            out.flush()
            os.fsync(out.fileno())
        _fsync_dir(path.parent)
        return path.stat().st_size
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise TarWriteError(f"{path}: writing the tar failed: {exc.strerror or exc}") from exc
        raise


def _copy_member(tar: tarfile.TarFile, member: TarMember, mtime: float) -> None:
    try:
        source = open(member.source, "rb", buffering=BLOCK)
    except OSError as exc:
        raise TarWriteError(
            f"{member.source}: cannot read the source of {member.name}: {exc.strerror or exc}"
        ) from exc
    with source:
        reader = _HashingReader(source)
        try:
            tar.addfile(_info(member.name, member.size, mtime), reader)
        except tarfile.ReadError as exc:  # shorter than indexed: "unexpected end of data"
            raise TarWriteError(
                f"{member.source}: {exc}; the file no longer matches the index"
            ) from exc
        extra = source.read(1)
    if extra or reader.digest.hexdigest() != member.md5.lower():
        raise TarWriteError(
            f"{member.source}: MD5 or size differs from the index ({member.md5}, "
            f"{member.size} bytes); the ONLINE copy is damaged - check it before copying"
        )
