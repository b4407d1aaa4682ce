"""kill -9 of the daemon mid-upload and mid-stage, then a new daemon on the same state:
nothing fsync'd is lost, uploads resume, no file is archived without its object, no
stale part file is left.

The catalog is synced only when asked (a one-hour timer), so what the new daemon finds
it owes to fsync and to crash recovery, not to a lucky timer.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tests.hsm.conftest import MountFactory, file_store
from tests.hsm.support import MiB, Store, hsm_state, part_files, status, wait_state
from tests.hsm.test_staging import archived_then_released
from tests.mounts import HsmMount, wait_for

CRASHABLE = "[fs]\nsync_interval = 3600\n[hsm]\nmigrate_after = 0\nscan_interval = 0.2\n"


def write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def assert_archived_only_with_object(hsm: HsmMount, store: Store, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = hsm.mnt / name
        assert path.read_bytes() == data, name
        if hsm_state(path) == "archived":
            assert store.get(name) == data, name


def test_kill_mid_upload_then_the_upload_resumes(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, CRASHABLE)
    server = s3.bucket.server  # type: ignore[union-attr]
    data = os.urandom(16 * MiB)
    server.stall()  # the upload starts and hangs
    server.clear()
    write_synced(hsm.mnt / "big.bin", data)
    wait_for(
        lambda: server.count("PUT", path=f"/{s3.bucket_name}/archive/big.bin"),
        what="the upload to start",
    )
    assert hsm_state(hsm.mnt / "big.bin") == "dirty"
    hsm.kill()
    server.resume()

    hsm.start()
    path = hsm.mnt / "big.bin"
    assert path.read_bytes() == data
    assert_archived_only_with_object(hsm, s3, {"big.bin": data})
    wait_state(path, "archived")
    assert s3.get("big.bin") == data
    assert status(hsm)["migration"]["queue_length"] == 0
    assert part_files(hsm) == []


def test_kill_right_after_close_loses_nothing(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, CRASHABLE)
    files = {f"d/f{i:02}": os.urandom(50_000 * i + 1) for i in range(20)}
    (hsm.mnt / "d").mkdir()
    for name, data in files.items():
        write_synced(hsm.mnt / name, data)
    hsm.kill()  # some uploads done, some in flight, some queued

    hsm.start()
    assert_archived_only_with_object(hsm, s3, files)
    for name in files:
        wait_state(hsm.mnt / name, "archived")
    assert s3.keys() == set(files)
    for name, data in files.items():
        assert s3.get(name) == data
    assert status(hsm)["migration"]["queue_length"] == 0


def test_kill_mid_stage_discards_the_part_file(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, CRASHABLE)
    server = s3.bucket.server  # type: ignore[union-attr]
    path, data = archived_then_released(hsm, "staged.bin", 8 * MiB)

    server.clear()
    server.stall()  # the stage starts and hangs
    errors: list[OSError] = []

    def reader() -> None:
        try:
            path.read_bytes()
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    wait_for(lambda: part_files(hsm) and server.requests(), what="the stage to start")
    hsm.kill()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors  # the reader saw the daemon die
    server.resume()

    hsm.start()
    assert part_files(hsm) == []
    assert hsm_state(path) == "released"
    assert path.read_bytes() == data
    assert hsm_state(path) == "archived"
    assert part_files(hsm) == []


def test_migration_queue_survives_a_restart(tmp_path: Path, make_mount: MountFactory) -> None:
    store = file_store(tmp_path)  # the queue lives in the catalog, whatever the store
    # due in 8 s: ample time to stop before, and a short wait after the restart
    hsm = make_mount(store, "[hsm]\nmigrate_after = 8\nscan_interval = 0.2\n")
    data = os.urandom(100_000)
    (hsm.mnt / "queued.bin").write_bytes(data)
    assert status(hsm)["migration"]["queue_length"] == 1
    assert hsm.stop() == 0  # before it was due
    assert store.keys() == set()

    hsm.start()
    assert hsm_state(hsm.mnt / "queued.bin") == "dirty"
    wait_state(hsm.mnt / "queued.bin", "archived")  # due now, nobody asked again
    assert store.get("queued.bin") == data
