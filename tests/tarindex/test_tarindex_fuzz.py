"""Fuzz: flip every byte of a real GNU tar; each result is harmless and nothing bad passes."""

from __future__ import annotations

import io
import os
import random
import subprocess
from pathlib import Path

import pytest

from hsmfs.tarindex import index_tar
from tests.tarindex.tarindex_builders import BLOCK, file_contents, gnu_tar
from tests.tarindex.tarindex_invariants import assert_harmless

FILES = {
    "CF024730/000004A0": os.urandom(1500),
    "CF024730/000004A1": os.urandom(512),
    f"CF024730/{'long' * 30}": os.urandom(100),
}


@pytest.fixture(scope="module", params=["gnu", "pax"])
def real_tar(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root: Path = tmp_path_factory.mktemp("fuzz")
    for name, data in FILES.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(data)
    md5sum = subprocess.run(["md5sum", *FILES], cwd=root, check=True, capture_output=True)
    (root / "MD5SUM").write_bytes(md5sum.stdout)
    tar = gnu_tar(root, ["MD5SUM", *FILES], f"--format={request.param}", "--blocking-factor=4")
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    return tar


def _check(original: bytes, damaged: bytes) -> bool:
    """Index `damaged`; True if it was judged invalid. A valid verdict must be harmless."""
    index = index_tar(io.BytesIO(damaged))
    assert_harmless(damaged, index)
    if index.invalid is None:
        contents = file_contents(damaged, index)
        contents.pop("MD5SUM")
        assert contents == FILES
    return index.invalid is not None


def test_every_single_byte_flip(real_tar: bytes) -> None:
    detected = 0
    for position in range(len(real_tar)):
        damaged = bytearray(real_tar)
        damaged[position] ^= 0xFF
        detected += _check(real_tar, bytes(damaged))
    # Only bytes nobody reads may change unnoticed: padding, unused header bytes after NULs.
    assert detected > len(real_tar) // 2


def test_every_truncation_point_is_detected(real_tar: bytes) -> None:
    last = max(index_tar(io.BytesIO(real_tar)), key=lambda m: m.header_offset)
    end_of_members = last.data_offset + -(-last.size // BLOCK) * BLOCK
    # Cutting the zero padding after the first end-of-archive block loses nothing.
    for length in range(0, end_of_members + BLOCK, 7):
        assert _check(real_tar, real_tar[:length]), length


def test_random_multi_byte_damage(real_tar: bytes) -> None:
    rng = random.Random(4)  # fixed seed: the same 2000 cases every run
    for _ in range(2000):
        damaged = bytearray(real_tar)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        _check(real_tar, bytes(damaged))
