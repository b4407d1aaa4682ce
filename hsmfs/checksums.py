"""Checksums of file data: block CRC32s and the MD5, computed in one pass over the bytes.

Migration records a CRC32 of every ``BLOCK_SIZE`` block and the MD5 of the whole file;
staging checks each block as it arrives (``BlockVerifier``) before a reader may see it.
Both sides hash the bytes as they pass by, never by reading a file back once more:
``RunningChecksums`` while a file is written front to back, ``BlockVerifier`` fed by the
object store's download with the same bytes it feeds its MD5.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from pathlib import Path

from .backends import ChecksumMismatch

BLOCK_SIZE = 1 << 20  # CRC32 granularity: one verified block is the unit served early

# (data version, block CRCs, MD5, (part size, part MD5 digests) or None)
WrittenChecksums = tuple[int, list[int], str, tuple[int, list[bytes]] | None]


def file_checksums(path: Path) -> tuple[list[int], str]:
    """CRC32 of every BLOCK_SIZE block of a file and its MD5, in one pass (at migration)."""
    crcs = []
    md5 = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(BLOCK_SIZE):
            crcs.append(zlib.crc32(block))
            md5.update(block)
    return crcs, md5.hexdigest()


class BlockCrcs:
    """CRC32 of every BLOCK_SIZE block of a byte stream fed in pieces of any size."""

    def __init__(self) -> None:
        self.crcs: list[int] = []
        self.crc = 0
        self.in_block = 0

    def update(self, data: bytes | memoryview) -> list[int]:
        """Feed the next bytes; returns the CRCs of the blocks they completed."""
        view = memoryview(data)
        completed = []
        while view:
            take = min(BLOCK_SIZE - self.in_block, len(view))
            self.crc = zlib.crc32(view[:take], self.crc)
            self.in_block += take
            view = view[take:]
            if self.in_block == BLOCK_SIZE:
                completed.append(self.crc)
                self.crc, self.in_block = 0, 0
        self.crcs.extend(completed)
        return completed

    def result(self) -> list[int]:
        """Every block's CRC, the last (short) block's included."""
        return self.crcs + ([self.crc] if self.in_block else [])


class RunningChecksums:
    """The block CRCs and MD5 of a file written front to back, kept while it is written,
    so that migration need not read the file once more before uploading it.

    ``write`` runs in worker threads; a write that does not continue exactly where the
    last one ended (random access, or two writes finishing out of order) makes the sums
    ``invalid`` and migration falls back to ``file_checksums``.
    """

    def __init__(self, part_size: int = 0) -> None:
        self.md5 = hashlib.md5()
        self.part_size = part_size  # the object store's multipart part size (0: none)
        self.part = hashlib.md5()
        self.parts: list[bytes] = []  # MD5 digests of the complete parts
        self.blocks = BlockCrcs()
        self.length = 0
        self.next_offset = 0  # where the next write must start, as dispatched
        self.invalid = False
        self._lock = threading.Lock()

    def write(self, fd: int, data: bytes, offset: int) -> int:
        written = os.pwrite(fd, data, offset)
        with self._lock:
            if self.invalid or offset != self.length or written != len(data):
                self.invalid = True
                return written
            self.md5.update(data)
            self._hash_parts(memoryview(data))
            self.blocks.update(data)
            self.length += written
        return written

    def _hash_parts(self, view: memoryview) -> None:
        if not self.part_size:
            return
        position = self.length
        while view:
            take = min(self.part_size - position % self.part_size, len(view))
            self.part.update(view[:take])
            position += take
            view = view[take:]
            if position % self.part_size == 0:
                self.parts.append(self.part.digest())
                self.part = hashlib.md5()

    def result(self) -> tuple[list[int], str]:
        return self.blocks.result(), self.md5.hexdigest()

    def part_digests(self) -> tuple[int, list[bytes]] | None:
        """(part size, MD5 digest of every part) for the object store's ETag check."""
        if not self.part_size:
            return None
        tail = [self.part.digest()] if self.length % self.part_size else []
        return self.part_size, self.parts + tail


class BlockVerifier:
    """Checks a download block by block against the CRCs recorded at migration.

    Fed (``update``) with the object's bytes in order, as the download hashes them;
    ``verified`` is how many leading bytes passed. Without recorded CRCs (a file rebuilt
    from the bucket alone) nothing counts as verified until the download's MD5 check has
    passed (``whole_file_verified``).
    """

    def __init__(self, key: str, size: int, crcs: list[int]) -> None:
        self.key = key
        self.size = size
        self.expected = crcs
        self.blocks = BlockCrcs()
        self.received = 0
        self.verified = 0

    def update(self, data: bytes | memoryview) -> None:
        first = len(self.blocks.crcs)
        completed = self.blocks.update(data)
        self.received += len(data)
        if not self.expected:
            return
        if self.received >= self.size and self.blocks.in_block:
            completed.append(self.blocks.crc)  # the short last block is complete too
        for index, crc in enumerate(completed, first):
            if index >= len(self.expected) or crc != self.expected[index]:
                raise ChecksumMismatch(
                    f"{self.key}: block {index} (bytes {index * BLOCK_SIZE}-"
                    f"{min(self.size, (index + 1) * BLOCK_SIZE)}) does not match the checksum "
                    "recorded at migration"
                )
            self.verified = min(self.size, (index + 1) * BLOCK_SIZE)

    def whole_file_verified(self) -> None:
        """The download's MD5 matched: every byte is good."""
        self.verified = self.size
