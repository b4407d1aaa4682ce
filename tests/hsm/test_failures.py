"""A damaged or missing object makes the file lost (EIO, never wrong bytes); an endpoint
that is down delays uploads and fails stages with EIO, and both recover when it is back."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.hsm.conftest import MountFactory
from tests.hsm.support import (
    FAST,
    MiB,
    Store,
    hsm_attr,
    hsm_state,
    hsmctl,
    part_files,
    status,
    wait_state,
)
from tests.hsm.test_staging import archived_then_released
from tests.mounts import wait_for

STAGE_TIMEOUT = 3.0
OUTAGE = f"""[hsm]
migrate_after = 0
scan_interval = 0.2
stage_timeout = {STAGE_TIMEOUT}
connect_timeout = 1
read_timeout = 2
retry_min = 0.5
retry_max = 2
"""


def assert_eio(call: object) -> None:
    with pytest.raises(OSError) as info:
        call()  # type: ignore[operator]
    assert info.value.errno == errno.EIO


def assert_never_wrong_bytes(path: Path, data: bytes, offsets: list[int]) -> int:
    """Read 64 KiB at each offset: each read is either the original bytes or EIO.
    Returns how many reads failed."""
    failed = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in offsets:
            try:
                got = os.pread(fd, 65536, offset)
            except OSError as exc:
                assert exc.errno == errno.EIO
                failed += 1
                continue
            assert got == data[offset : offset + 65536], offset
    finally:
        os.close(fd)
    return failed


def test_damaged_object_makes_the_file_lost_and_reads_fail_with_eio(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    path, data = archived_then_released(hsm, "rot.bin", 3 * MiB)
    store.damage("rot.bin")  # one byte in the middle block, same size and metadata

    failed = assert_never_wrong_bytes(path, data, [0, 3 * MiB // 2, 3 * MiB - 65536])
    assert failed >= 1  # at least the damaged block
    wait_state(path, "lost")
    assert_eio(path.read_bytes)
    # The file is lost at once; its part file goes after, in a worker thread.
    wait_for(lambda: part_files(hsm) == [], what="the failed stage's part file to go")

    # The key and MD5 of a lost file are what the operator looks for: they stay shown.
    md5 = hashlib.md5(data).hexdigest()
    result = hsmctl("state", path)
    assert result.stdout.strip() == f"{path}: lost key=rot.bin md5={md5}"
    result = hsmctl("release", path)
    assert result.returncode == 1
    assert f"{path}: not released: it is lost" in result.stdout
    assert status(hsm)["staging"]["stages_failed"] == 1
    for action in ("stage", "archive"):  # neither can help a lost file: say so
        result = hsmctl(action, path)
        assert result.returncode == 1, action
        assert f"{path}: lost: it is lost" in result.stdout, action


def test_missing_object_makes_the_file_lost(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, FAST)
    path, _ = archived_then_released(hsm, "gone.bin", 100_000)
    store.delete("gone.bin")
    assert_eio(path.read_bytes)
    wait_state(path, "lost")
    assert_eio(path.read_bytes)


def test_endpoint_down_then_back(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, OUTAGE)
    server = s3.bucket.server  # type: ignore[union-attr]
    released, released_data = archived_then_released(hsm, "old.bin", 2 * MiB)
    archived_then_released_before_outage = archived_then_released(hsm, "replace.bin", MiB)

    server.stop()
    new_files = {f"new{i}.bin": os.urandom(100_000 * (i + 1)) for i in range(3)}
    for name, data in new_files.items():  # writes go on into the cache
        (hsm.mnt / name).write_bytes(data)
    for name, data in new_files.items():
        assert (hsm.mnt / name).read_bytes() == data
        assert hsm_state(hsm.mnt / name) == "dirty"

    overwritten, _ = archived_then_released_before_outage
    with open(overwritten, "wb") as f:  # replacing a released file needs no stage
        f.write(b"replaced")
    assert hsm_state(overwritten) == "dirty"

    started = time.monotonic()
    assert_eio(released.read_bytes)
    assert time.monotonic() - started < STAGE_TIMEOUT + 20
    assert hsm_state(released) == "released"  # unreachable is not lost

    wait_for(
        lambda: status(hsm)["migration"]["last_upload_error"],
        timeout=60,
        what="a failed upload to show in hsmctl status",
    )
    down = status(hsm)
    assert down["backend"]["reachable"] is False
    assert down["backend"]["error"]
    assert down["migration"]["dirty_files"] == len(new_files) + 1
    assert down["migration"]["dirty_bytes"] == sum(map(len, new_files.values())) + len(b"replaced")
    assert down["migration"]["upload_errors"] >= 1
    failing = [*new_files, "replace.bin"]
    assert any(name in down["migration"]["last_upload_error"] for name in failing)
    text = hsmctl("status", hsm.mnt)
    assert text.returncode == 0 and "UNREACHABLE" in text.stdout
    assert "testing-secret" not in text.stdout + str(down)

    server.start()
    for name in new_files:  # uploads resume on their own
        wait_state(hsm.mnt / name, "archived", timeout=120)
    for name, data in new_files.items():
        assert s3.get(name) == data
    wait_state(overwritten, "archived")
    assert s3.get("replace.bin") == b"replaced"
    assert released.read_bytes() == released_data
    assert hsm_state(released) == "archived"
    up = status(hsm)
    assert up["backend"]["reachable"] is True
    assert up["migration"]["dirty_files"] == 0


def test_write_during_upload_is_migrated_again(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, FAST + "retry_min = 0.2\nretry_max = 1\n")
    server = s3.bucket.server  # type: ignore[union-attr]
    path = hsm.mnt / "moving.bin"
    first, second = os.urandom(2 * MiB), os.urandom(2 * MiB)
    server.stall()  # the upload of the first version starts and hangs
    path.write_bytes(first)
    wait_for(
        lambda: server.count("PUT", path=f"/{s3.bucket_name}/archive/moving.bin"),
        what="the upload to start",
    )
    with open(path, "r+b") as f:
        f.write(second)
    server.resume()
    wait_for(
        lambda: hsm_state(path) == "archived" and s3.get("moving.bin") == second,
        what="the second version to be archived",
    )
    assert hsm_attr(path, "md5") == hashlib.md5(second).hexdigest()
    assert path.read_bytes() == second


def test_stage_action_on_a_lost_file_fails_with_eio(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, FAST)
    path, _ = archived_then_released(hsm, "lost.bin", 50_000)
    store.delete("lost.bin")
    assert_eio(path.read_bytes)
    wait_state(path, "lost")
    assert_eio(lambda: os.setxattr(path, "user.hsm.action", b"stage"))
