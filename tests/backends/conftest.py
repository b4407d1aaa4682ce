"""Backends under test: every contract test runs against file:// and a real S3 endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmfs.backends import ObjectStore, open_backend
from tests.conftest import S3Bucket

MiB = 1024 * 1024

# Small parts so that a 12 MiB file is a real three-part upload (S3's minimum part is 5 MiB).
SMALL_PARTS = {
    "multipart_threshold": 5 * MiB,
    "multipart_chunksize": 5 * MiB,
    "download_chunksize": 5 * MiB,
}


@pytest.fixture(params=["file", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    if store_kind == "file":
        root = tmp_path / "objects"
        root.mkdir()
        backend = open_backend(root.as_uri(), **SMALL_PARTS)
    else:
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        backend = open_backend(bucket.url("archive"), **SMALL_PARTS)
    try:
        yield backend
    finally:
        backend.close()


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data
