"""Helpers of the tar member tests: tars to write into a mount, member paths, S3 requests."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path

from tests.hsm.support import Store, hsm_attr, hsmctl, wait_state
from tests.mounts import HsmMount, wait_for

# Migrate at once (so a tar can be released), run the policy loop often.
PREFETCH_WHOLE = '[hsm]\nmigrate_after = 0\nscan_interval = 0.2\nmember_prefetch = "whole"\n'
# The same without the background stage of the whole tar: member reads are alone.
PREFETCH_NONE = '[hsm]\nmigrate_after = 0\nscan_interval = 0.2\nmember_prefetch = "none"\n'


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5sum_text(files: Mapping[str, bytes]) -> bytes:
    """md5sum(1) output for `files`, as FileCopy writes it as the first member."""
    return "".join(f"{md5(data)}  {name}\n" for name, data in files.items()).encode()


def make_tar(
    files: Mapping[str, bytes], *, fmt: int = tarfile.PAX_FORMAT, with_md5sum: bool = True
) -> bytes:
    """A tar made by Python's tarfile: an MD5SUM member first (optional), then `files`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        entries = ({"MD5SUM": md5sum_text(files)} if with_md5sum else {}) | dict(files)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.mtime = 1_300_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def series(count: int, size: int, prefix: str = "CF024730") -> dict[str, bytes]:
    """`count` random members named like FileCopy's: <series8>/<file pk as 8 hex>."""
    return {f"{prefix}/{n:08X}": os.urandom(size) for n in range(1, count + 1)}


def member(tar: Path, name: str = "") -> Path:
    """The path of member `name` of `tar` (`name` empty: the tar's root directory)."""
    return Path(f"{tar}!{name}")


def tar_status(tar: Path) -> str | None:
    """user.hsm.tar: "valid: N members", "invalid: ..." or None before indexing."""
    return hsm_attr(tar, "tar")


def wait_indexed(tar: Path, timeout: float = 60.0) -> str:
    return str(wait_for(lambda: tar_status(tar), timeout, 0.02, f"{tar} to be indexed"))


def put_tar(mount: HsmMount, relative: str, data: bytes) -> Path:
    """Write a tar into the mount and wait until hsmfs has indexed it."""
    path = mount.mnt / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    wait_indexed(path)
    return path


def release(path: Path) -> None:
    """Wait until `path` is archived, then release it from the cache (hsmctl release)."""
    wait_state(path, "archived")
    result = hsmctl("release", path)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_state(path, "released")


def object_path(store: Store, tar: Path, mount: HsmMount) -> str:
    """The S3 request path of a tar's object (path-style addressing)."""
    return f"/{store.bucket_name}/{store.full_key(str(tar.relative_to(mount.mnt)))}"


def read_member(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()
