"""HSM states, the user.hsm.* attributes, hsmctl state|archive|release|stage|set and the
user.hsm.action attribute, on the file:// backend and a real S3 endpoint."""

from __future__ import annotations

import calendar
import errno
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tests.hsm.conftest import MountFactory
from tests.hsm.support import (
    FAST,
    Store,
    cache_file,
    hsm_attr,
    hsm_state,
    hsmctl,
    status,
    wait_state,
)

# Nothing migrates by itself: every transition below is one the test asked for.
MANUAL = "[hsm]\nmigrate_after = 3600\nscan_interval = 0.2\n"


def write(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_new_file_is_dirty_until_migrated_then_archived_with_attributes(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    path = hsm.mnt / "2011" / "8" / "study.tar"
    path.parent.mkdir(parents=True)
    data = os.urandom(300_000)
    before = time.time()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        assert hsm_state(path) == "dirty"  # open for writing: never migrated
        assert hsm_attr(path, "key") is None and hsm_attr(path, "md5") is None
    wait_state(path, "archived")
    after = time.time()

    assert hsm_attr(path, "key") == "2011/8/study.tar"
    assert hsm_attr(path, "md5") == hashlib.md5(data).hexdigest()
    archived_at = hsm_attr(path, "archived_at")
    assert archived_at is not None
    stamp = calendar.timegm(time.strptime(archived_at, "%Y-%m-%dT%H:%M:%SZ"))
    assert int(before) - 1 <= stamp <= after + 1
    assert hsm_attr(path, "flags") == ""
    assert cache_file(hsm, path).exists()  # archived means resident too
    assert path.read_bytes() == data


def test_object_is_byte_identical_at_prefix_plus_path(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    files = {
        "a.bin": os.urandom(1),
        "empty": b"",
        "dir/sub/b.bin": os.urandom(3 * 1024 * 1024 + 17),
        "dir/c d.bin": os.urandom(4096),  # a space in the key
    }
    for name, data in files.items():
        write_path = hsm.mnt / name
        write_path.parent.mkdir(parents=True, exist_ok=True)
        write_path.write_bytes(data)
    for name in files:
        wait_state(hsm.mnt / name, "archived")
    assert store.keys() == set(files)
    for name, data in files.items():
        assert store.get(name) == data, name
    if store.bucket is not None:  # the raw listing shows the prefix
        client = store.bucket.client()
        listed = client.list_objects_v2(Bucket=store.bucket.name)  # type: ignore[attr-defined]
        client.close()  # type: ignore[attr-defined]
        raw = {item["Key"] for item in listed["Contents"]}
        assert {store.prefix + name for name in files} <= raw


def test_hsmctl_state_one_line_per_file(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, MANUAL)
    archived = hsm.mnt / "top" / "archived.bin"
    dirty = hsm.mnt / "top" / "sub" / "dirty.bin"
    data = write(archived, 1000)
    write(dirty, 10)
    assert hsmctl("archive", archived).returncode == 0
    assert hsmctl("set", "--set", "norelease", dirty).returncode == 0

    result = hsmctl("state", "-r", hsm.mnt / "top")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"{archived}: archived key=top/archived.bin md5={hashlib.md5(data).hexdigest()}",
        f"{dirty}: dirty [norelease]",
    ]

    result = hsmctl("state", "--json", archived, dirty)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["path"], r["state"], r["flags"]) for r in records] == [
        (str(archived), "archived", ""),
        (str(dirty), "dirty", "norelease"),
    ]
    assert records[0]["key"] == "top/archived.bin"
    assert records[1]["key"] is None


def test_hsmctl_archive_release_stage_recursive(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, MANUAL)
    tree = {
        "d/a.bin": write(hsm.mnt / "d" / "a.bin", 2 * 1024 * 1024),
        "d/sub/b.bin": write(hsm.mnt / "d" / "sub" / "b.bin", 5000),
    }
    outside = hsm.mnt / "outside.bin"
    write(outside, 100)
    paths = [hsm.mnt / name for name in tree]
    assert all(hsm_state(p) == "dirty" for p in paths)

    result = hsmctl("archive", "-r", hsm.mnt / "d")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [hsm_state(p) for p in paths] == ["archived", "archived"]
    assert hsm_state(outside) == "dirty"  # not named, not touched
    assert store.keys() == set(tree)

    result = hsmctl("release", "-r", hsm.mnt / "d")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "released 2 file(s)" in result.stdout
    for path, data in zip(paths, tree.values(), strict=True):
        assert hsm_state(path) == "released"
        assert not cache_file(hsm, path).exists()
        assert os.stat(path).st_size == len(data)  # attributes stay without the data
        assert hsm_attr(path, "key") is not None

    result = hsmctl("stage", "-r", hsm.mnt / "d")
    assert result.returncode == 0, result.stdout + result.stderr
    for path, data in zip(paths, tree.values(), strict=True):
        assert hsm_state(path) == "archived"
        resident = cache_file(hsm, path)
        assert resident.read_bytes() == data  # resident before anyone read it
        assert path.read_bytes() == data


def test_user_hsm_action_attribute(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, MANUAL)
    path = hsm.mnt / "f.bin"
    data = write(path, 100_000)

    os.setxattr(path, "user.hsm.action", b"archive")
    wait_state(path, "archived")
    assert store.get("f.bin") == data

    os.setxattr(path, "user.hsm.action", b"release")
    assert hsm_state(path) == "released"
    assert not cache_file(hsm, path).exists()

    os.setxattr(path, "user.hsm.action", b"stage")
    wait_state(path, "archived")
    assert cache_file(hsm, path).read_bytes() == data

    with pytest.raises(OSError) as info:
        os.setxattr(path, "user.hsm.action", b"explode")
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        os.setxattr(path, "user.hsm.state", b"archived")  # states are the HSM's own
    assert info.value.errno == errno.EPERM


def test_release_refuses_dirty_open_and_norelease_files(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, MANUAL)
    dirty, held, pinned = (hsm.mnt / n for n in ("dirty.bin", "held.bin", "pinned.bin"))
    for path in (dirty, held, pinned):
        write(path, 4096)
    assert hsmctl("archive", held, pinned).returncode == 0

    assert hsmctl("set", "--set", "norelease", pinned).returncode == 0
    assert hsm_attr(pinned, "flags") == "norelease"
    with open(held, "rb"):
        for path in (dirty, held, pinned):
            with pytest.raises(OSError) as info:
                os.setxattr(path, "user.hsm.action", b"release")
            assert info.value.errno == errno.EBUSY, path
        result = hsmctl("release", dirty, held, pinned)
        assert result.returncode == 1
        out = result.stdout
        assert f"{dirty}: not released: it is dirty" in out
        assert f"{held}: not released: it is open" in out
        assert f"{pinned}: not released: it is marked norelease" in out
        assert [hsm_state(p) for p in (dirty, held, pinned)] == ["dirty", "archived", "archived"]
        assert all(cache_file(hsm, p).exists() for p in (dirty, held, pinned))

    # closed and unpinned, both go
    assert hsmctl("set", "--clear", "norelease", pinned).returncode == 0
    assert hsm_attr(pinned, "flags") == ""
    result = hsmctl("release", held, pinned)
    assert result.returncode == 0, result.stdout
    assert [hsm_state(p) for p in (held, pinned)] == ["released", "released"]


def test_noarchive_file_is_never_migrated(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, FAST)
    kept = hsm.mnt / "kept.bin"
    marker = hsm.mnt / "marker.bin"
    with open(kept, "wb") as f:
        assert hsmctl("set", "--set", "noarchive", kept).returncode == 0
        f.write(b"local only")
    write(marker, 10)
    wait_state(marker, "archived")  # the policy loop ran after kept was closed
    assert hsm_state(kept) == "dirty"
    assert hsm_attr(kept, "flags") == "noarchive"
    assert status(hsm)["migration"]["queue_length"] == 0
    assert store.keys() == {"marker.bin"}

    started = time.monotonic()
    result = hsmctl("archive", kept, "--timeout", "60")
    assert time.monotonic() - started < 30  # refused, not waited for
    assert result.returncode == 1
    assert f"{kept}: dirty:" in result.stdout and "noarchive" in result.stdout
    assert store.keys() == {"marker.bin"}
