"""MD5 of files and the ETag S3 computes for them (multipart: MD5 of the part MD5s)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HASH_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    """Size and MD5 of some bytes, and the ETag S3 reports for them once uploaded."""

    size: int
    md5: str
    etag: str  # the MD5 for one PUT; MD5 of the part MD5s and "-N" for N parts


def md5_file(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as source:
        while block := source.read(HASH_BLOCK):
            md5.update(block)
    return md5.hexdigest()


def _md5_of_region(fd: int, offset: int, stop: int) -> hashlib._Hash:
    md5 = hashlib.md5()
    while offset < stop:
        block = os.pread(fd, min(HASH_BLOCK, stop - offset), offset)
        if not block:
            break
        md5.update(block)
        offset += len(block)
    return md5


def digest_file(path: Path, part_size: int | None, threads: int = 2) -> FileDigest:
    """MD5 and expected ETag of the file; with parts, the whole-file MD5 and the part
    MD5s are computed on `threads` threads at once (hashlib releases the GIL)."""
    with open(path, "rb") as source:
        fd = source.fileno()
        size = os.fstat(fd).st_size
        if not part_size:
            md5 = _md5_of_region(fd, 0, size).hexdigest()
            return FileDigest(size, md5, md5)
        bounds = [(o, min(o + part_size, size)) for o in range(0, size, part_size)]
        with ThreadPoolExecutor(threads) as pool:
            whole = pool.submit(_md5_of_region, fd, 0, size)  # the long one goes first
            parts = [pool.submit(_md5_of_region, fd, o, e) for o, e in bounds]
            md5 = whole.result().hexdigest()
            part_md5s = b"".join(part.result().digest() for part in parts)
    return FileDigest(size, md5, f"{hashlib.md5(part_md5s).hexdigest()}-{len(bounds)}")


def digest_from_parts(
    size: int, md5: str, part_size: int | None, part_md5s: list[bytes]
) -> FileDigest:
    """The FileDigest of a file whose part MD5s were computed elsewhere (while written)."""
    if not part_size:
        return FileDigest(size, md5, md5)
    return FileDigest(size, md5, f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}")
