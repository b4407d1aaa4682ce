"""Helpers for the HSM tests: the object store seen from outside, hsmctl, states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsmfs.backends.local import XATTR as LOCAL_METADATA_XATTR
from tests.conftest import S3Bucket
from tests.mounts import HsmMount, wait_for

MiB = 1024 * 1024

# Fast policy for tests: migrate at once, run the policy loop often, snapshot the catalog
# (and so delete the objects of deleted files) soon after a change.
FAST = "[hsm]\nmigrate_after = 0\nscan_interval = 0.2\nsnapshot_interval = 1\n"


@dataclass
class Store:
    """The object store behind a mount, inspected (and damaged) without hsmfs."""

    kind: str  # "file" or "s3"
    url: str
    root: Path | None = None  # file://: the directory
    bucket: S3Bucket | None = None  # s3://: the bucket, objects under PREFIX
    prefix: str = ""

    def full_key(self, path: str) -> str:
        return self.prefix + path

    @property
    def bucket_name(self) -> str:
        assert self.bucket is not None
        return self.bucket.name

    def _client(self) -> Any:
        assert self.bucket is not None
        return self.bucket.client()

    def get(self, path: str) -> bytes | None:
        """The object's bytes, None if there is no object for `path`."""
        if self.root is not None:
            try:
                return (self.root / path).read_bytes()
            except FileNotFoundError:
                return None
        client = self._client()
        try:
            response = client.get_object(Bucket=self.bucket_name, Key=self.full_key(path))
            return bytes(response["Body"].read())
        except client.exceptions.NoSuchKey:
            return None
        finally:
            client.close()

    def keys(self) -> set[str]:
        """Every object's path (below the prefix), without hsmfs's own .hsmfs/ objects."""
        if self.root is not None:
            found = {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}
        else:
            client = self._client()
            try:
                pages = client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket_name, Prefix=self.prefix
                )
                found = {
                    item["Key"][len(self.prefix) :]
                    for page in pages
                    for item in page.get("Contents", [])
                }
            finally:
                client.close()
        return {k for k in found if not k.startswith((".hsmfs/", ".hsm-tmp/"))}

    def delete(self, path: str) -> None:
        if self.root is not None:
            (self.root / path).unlink()
            return
        client = self._client()
        try:
            client.delete_object(Bucket=self.bucket_name, Key=self.full_key(path))
        finally:
            client.close()

    def damage(self, path: str) -> None:
        """Bit rot: change bytes, keep the size and the recorded metadata (MD5 included)."""
        original = self.get(path)
        assert original is not None and len(original) > 0
        damaged = bytearray(original)
        middle = len(damaged) // 2
        damaged[middle] ^= 0xFF
        if self.root is not None:
            target = self.root / path
            metadata = os.getxattr(target, LOCAL_METADATA_XATTR)
            with open(target, "r+b") as f:
                f.seek(middle)
                f.write(bytes(damaged[middle : middle + 1]))
            assert os.getxattr(target, LOCAL_METADATA_XATTR) == metadata
            return
        client = self._client()
        try:
            key = self.full_key(path)
            head = client.head_object(Bucket=self.bucket_name, Key=key)
            client.put_object(
                Bucket=self.bucket_name,
                Key=key,
                Body=bytes(damaged),
                Metadata=head["Metadata"],
            )
        finally:
            client.close()
        assert self.get(path) == bytes(damaged)


def hsm_state(path: Path) -> str:
    return os.getxattr(path, "user.hsm.state").decode()


def hsm_attr(path: Path, name: str) -> str | None:
    try:
        return os.getxattr(path, f"user.hsm.{name}").decode()
    except OSError:
        return None


def wait_state(path: Path, state: str, timeout: float = 60.0) -> None:
    wait_for(lambda: hsm_state(path) == state, timeout, 0.05, f"{path} to become {state}")


def hsmctl(*args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmfs.ctl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def hsmfs_cli(*args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmfs.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(mount: HsmMount) -> dict[str, Any]:
    result = hsmctl("status", "--json", mount.mnt)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def cache_file(mount: HsmMount, path: Path) -> Path:
    """The cache file that holds the resident data of `path` (it may not exist)."""
    from hsmfs.cache import CacheDir

    return CacheDir(mount.cache).path(os.stat(path).st_ino)


def part_files(mount: HsmMount) -> list[Path]:
    return sorted((mount.cache / "data").rglob("*.part"))
