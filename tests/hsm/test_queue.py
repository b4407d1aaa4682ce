"""The migration queue follows migrate_after: a SIGHUP or a restart with a new value moves
the due times of queued files (retries and explicit requests keep theirs), and no queue
entry is lost on the way."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from hsmfs.catalog import Catalog, u64
from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store, hsm_state, status, wait_state
from tests.mounts import wait_for

AN_HOUR = "[hsm]\nmigrate_after = 3600\nscan_interval = 0.2\n"
AT_ONCE = "[hsm]\nmigrate_after = 0\nscan_interval = 0.2\n"
SECOND = 1_000_000_000


def write_queued(mount_root: Path, names: list[str]) -> list[Path]:
    paths = [mount_root / name for name in names]
    for path in paths:
        path.write_bytes(os.urandom(10_000))
    return paths


def test_sighup_lowering_migrate_after_migrates_queued_files_now(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, AN_HOUR)
    files = write_queued(hsm.mnt, ["a.bin", "b.bin", "c.bin"])
    wait_for(lambda: status(hsm)["migration"]["queue_length"] == len(files),
             what="the closed files to be queued")  # fmt: skip
    assert all(hsm_state(path) == "dirty" for path in files)
    assert hsm.proc is not None

    hsm.config.write_text(AT_ONCE)
    hsm.proc.send_signal(signal.SIGHUP)
    for path in files:
        wait_state(path, "archived", timeout=120)
    assert status(hsm)["migration"]["queue_length"] == 0
    assert store.keys() == {"a.bin", "b.bin", "c.bin"}


def test_restart_with_a_lower_migrate_after_migrates_queued_files_now(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, AN_HOUR)
    [path] = write_queued(hsm.mnt, ["queued.bin"])
    wait_for(lambda: status(hsm)["migration"]["queue_length"] == 1, what="the file queued")
    hsm.kill()  # the queue entry is in the catalog, however the daemon ends

    hsm.config_text = AT_ONCE
    hsm.start()
    wait_state(path, "archived", timeout=120)
    assert store.keys() == {"queued.bin"}


def test_new_migrate_after_moves_idle_files_only(tmp_path: Path) -> None:
    """In the catalog: a file waiting for migrate_after moves with it; a retry, an
    explicit archive and a format-2 entry (no idle-since time) keep their due times."""
    catalog = Catalog(tmp_path / "catalog")
    try:
        idle, retry, explicit, old_format = 10, 11, 12, 13
        with catalog.write() as txn:
            txn.enqueue(idle, 1000 * SECOND + 3600 * SECOND, idle_since_ns=1000 * SECOND)
            txn.enqueue(retry, 2000 * SECOND)
            txn.enqueue(explicit, 3000 * SECOND)
            txn.raw.put(u64(old_format), u64(4000 * SECOND), db=txn.db(b"queue"))
        with catalog.write() as txn:
            assert txn.reschedule_idle(5 * SECOND) == 1
            assert txn.reschedule_idle(5 * SECOND) == 0  # nothing left to move
        with catalog.read() as txn:
            assert dict(txn.queue()) == {
                idle: 1005 * SECOND,
                retry: 2000 * SECOND,
                explicit: 3000 * SECOND,
                old_format: 4000 * SECOND,
            }
    finally:
        catalog.close()
