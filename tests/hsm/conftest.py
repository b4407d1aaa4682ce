"""Fixtures of the HSM tests: an object store (file:// or a real moto S3 endpoint) and
hsmfs mounts on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import S3Bucket
from tests.hsm.support import FAST, Store
from tests.mounts import HsmMount

PREFIX = "archive/"


def file_store(tmp_path: Path) -> Store:
    root = tmp_path / "objects"
    root.mkdir(exist_ok=True)
    return Store("file", root.as_uri(), root=root)


def s3_store(bucket: S3Bucket) -> Store:
    return Store("s3", bucket.url(PREFIX.rstrip("/")), bucket=bucket, prefix=PREFIX)


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each test that takes it runs on both backends."""
    if request.param == "file":
        return file_store(tmp_path)
    return s3_store(request.getfixturevalue("s3_bucket"))


@pytest.fixture
def s3(s3_bucket: S3Bucket) -> Store:
    """The S3 backend only (tests that count requests or stop the endpoint)."""
    return s3_store(s3_bucket)


MountFactory = Callable[..., HsmMount]


@pytest.fixture
def make_mount(tmp_path: Path) -> Iterator[MountFactory]:
    """make_mount(store, config=FAST, name="m") starts an hsmfs mount on `store`.

    Every mount is cleaned up at teardown, with the S3 endpoint up again first so that
    the final catalog snapshot of a clean unmount does not wait on an outage."""
    mounts: list[HsmMount] = []
    stores: list[Store] = []

    def make(store: Store, config: str = FAST, name: str = "m", start: bool = True) -> HsmMount:
        mount = HsmMount(tmp_path / name, config_text=config, extra_args=["--backend", store.url])
        mounts.append(mount)
        stores.append(store)
        return mount.start() if start else mount

    yield make
    for store in stores:
        if store.bucket is not None:
            store.bucket.server.start()
            store.bucket.server.resume()
    for mount in reversed(mounts):
        mount.cleanup()
