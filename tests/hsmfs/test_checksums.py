"""Checksums kept while a file is written equal those computed from the file afterwards."""

from __future__ import annotations

import os
import random
from pathlib import Path

from hsmfs.checksums import BLOCK_SIZE, RunningChecksums, file_checksums


def write_in_pieces(path: Path, data: bytes, sizes: list[int]) -> RunningChecksums:
    sums = RunningChecksums()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        offset = 0
        for size in sizes:
            piece = data[offset : offset + size]
            if not piece:
                break
            assert sums.write(fd, piece, offset) == len(piece)
            offset += len(piece)
    finally:
        os.close(fd)
    return sums


def test_sequential_writes_across_block_boundaries_match_a_full_pass(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = rng.randbytes(3 * BLOCK_SIZE + 12345)
    sizes = [rng.randint(1, BLOCK_SIZE + 7) for _ in range(200)]
    sums = write_in_pieces(tmp_path / "f", data, sizes)
    assert not sums.invalid and sums.length == len(data)
    assert sums.result() == file_checksums(tmp_path / "f")


def test_exact_block_multiple_has_no_empty_last_block(tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK_SIZE)
    sums = write_in_pieces(tmp_path / "f", data, [BLOCK_SIZE, BLOCK_SIZE])
    crcs, _ = sums.result()
    assert len(crcs) == 2 and sums.result() == file_checksums(tmp_path / "f")


def test_a_write_out_of_order_invalidates_the_sums(tmp_path: Path) -> None:
    sums = RunningChecksums()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        sums.write(fd, b"b" * 10, 10)  # arrives before the write at 0
        sums.write(fd, b"a" * 10, 0)
    finally:
        os.close(fd)
    assert sums.invalid


def test_part_digests_give_the_etag_s3_computes(tmp_path: Path) -> None:
    from hsmfs.backends.digest import digest_file, digest_from_parts

    part_size = 5 * 1024 * 1024
    data = os.urandom(2 * part_size + 4321)
    sums = RunningChecksums(part_size)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for offset in range(0, len(data), 700_000):
            sums.write(fd, data[offset : offset + 700_000], offset)
    finally:
        os.close(fd)
    parts = sums.part_digests()
    assert parts is not None and parts[0] == part_size and len(parts[1]) == 3
    _, md5 = sums.result()
    expected = digest_file(tmp_path / "f", part_size)
    assert digest_from_parts(len(data), md5, part_size, parts[1]) == expected
