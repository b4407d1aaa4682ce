"""Migration policy: the number of concurrent uploads is bounded by max_uploads."""

from __future__ import annotations

import os

from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store, status, wait_state
from tests.mounts import wait_for

BOUNDED = """[hsm]
migrate_after = 0
scan_interval = 0.1
max_uploads = 2
connect_timeout = 1
read_timeout = 60
"""


def test_at_most_max_uploads_run_at_once(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, BOUNDED)
    server = s3.bucket.server  # type: ignore[union-attr]
    files = [hsm.mnt / f"f{i}.bin" for i in range(5)]
    server.stall()  # every upload hangs until resume(): the in-flight count can be read
    try:
        for path in files:
            path.write_bytes(os.urandom(10_000))
        wait_for(
            lambda: status(hsm)["migration"]["uploads_in_flight"] == 2,
            timeout=60,
            what="two uploads in flight",
        )
        for _ in range(2):  # several policy runs later, still two, the rest queued
            migration = status(hsm)["migration"]
            assert migration["uploads_in_flight"] == 2
            assert migration["queue_length"] == len(files)
    finally:
        server.resume()
    for path in files:
        wait_state(path, "archived")
