"""digest_file: the MD5 of a file and the ETag S3 must report after uploading it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hsmfs.backends.digest import digest_file, md5_file


def expected_etag(data: bytes, part_size: int) -> str:
    parts = [hashlib.md5(data[i : i + part_size]).digest() for i in range(0, len(data), part_size)]
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


@pytest.mark.parametrize(("size", "part_size"), [(10_000, 3000), (9000, 3000), (1, 4096)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_multipart_etag(tmp_path: Path, size: int, part_size: int, threads: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    digest = digest_file(tmp_path / "f", part_size, threads)
    assert (digest.size, digest.md5) == (size, hashlib.md5(data).hexdigest())
    assert digest.etag == expected_etag(data, part_size)


def test_single_part_etag_is_the_md5(tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "f").write_bytes(data)
    digest = digest_file(tmp_path / "f", None)
    assert digest.etag == digest.md5 == md5_file(tmp_path / "f") == hashlib.md5(data).hexdigest()
