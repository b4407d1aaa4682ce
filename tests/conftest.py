"""Shared fixtures. S3: a real moto endpoint over HTTP on loopback (tests/s3server.py)."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest

from tests.s3server import S3Server

_bucket_numbers = itertools.count()


def _dcmtk_before_the_virtualenv() -> None:
    """pynetdicom installs console scripts named storescp, storescu, findscu, ... into the
    virtual environment's bin directory; the tests' real DICOM peers are DCMTK's tools of
    the same names, so that directory goes to the end of PATH (hsmfs, hsmctl, archived and
    archivectl are still found there)."""
    venv_bin = os.path.dirname(sys.executable)
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    os.environ["PATH"] = os.pathsep.join([*parts, venv_bin])


_dcmtk_before_the_virtualenv()


# Which real parts a test needs, told by the fixtures it uses (markers fuse, s3, dicom;
# see pyproject.toml). `pytest -m "not fuse and not s3 and not dicom"` is the fast,
# in-process layer. A module that starts a mount without these fixtures says so itself
# (pytestmark = pytest.mark.fuse).
NEEDS = {
    "fuse": {"hsm", "make_mount", "make_bed", "site"},
    "s3": {"s3_server"},
    "dicom": {"start_archive", "dest", "site"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = set(map(str, callspec.params.values())) if callspec is not None else set()
        for marker, needs in NEEDS.items():
            if fixtures & needs or (marker == "s3" and "s3" in params):
                item.add_marker(marker)


@dataclass(frozen=True)
class S3Bucket:
    """An empty bucket on the test endpoint, and the backend URL that points at it."""

    server: S3Server
    name: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def url(self, prefix: str = "") -> str:
        return (
            f"s3://{self.name}/{prefix}?endpoint={self.endpoint}&region=us-east-1&addressing=path"
        )

    def client(self) -> object:
        """A raw boto3 client on the endpoint, for checking or damaging the store."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A fresh bucket; the endpoint is up, answering and its request log is empty."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_server.start()
    s3_server.resume()
    bucket = S3Bucket(s3_server, f"test-bucket-{next(_bucket_numbers)}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)  # type: ignore[attr-defined]
    client.close()  # type: ignore[attr-defined]
    s3_server.clear()
    yield bucket
    s3_server.resume()
