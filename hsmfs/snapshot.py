"""Catalog snapshots in the object store: taken soon after every change, and at unmount.

A snapshot is a compacted copy of the LMDB catalog, uploaded (verified like any object)
as ``SNAPSHOT_KEY``, hsmfs's own name in the store: the mount root refuses the name
``.hsmfs``, so no file's object can take or overwrite it. ``hsmfs recover`` (recover.py)
rebuilds a mount from it and from the objects.

While mounted (``Snapshots``), a snapshot follows ``snapshot_interval`` seconds after the
first catalog change (of anything: data, names, modes, deletions) that the last snapshot
lacks, but never sooner after the last one than ten times what that one took, so a large
catalog is not copied back to back. An idle mount takes none. After each snapshot, the
objects that no longer belong to any file (deferred deletions, see catalog.py) are
deleted: a snapshot never names an object that is gone.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from .backends import ObjectInfo, ObjectStore
from .catalog import Catalog
from .config import HsmSettings

log = logging.getLogger(__name__)

SNAPSHOT_KEY = ".hsmfs/catalog.mdb"
POLL = 0.5  # seconds between looks at the catalog's transaction counter
SPACING = 10  # the next snapshot waits at least this many times the last one's duration


def take_snapshot(catalog: Catalog, backend: ObjectStore, workdir: Path) -> ObjectInfo:
    """Upload a consistent, compacted copy of the catalog (blocking: run it in a thread)."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="snapshot-") as tmp:
        catalog.env.copy(tmp, compact=True)
        info = backend.upload(SNAPSHOT_KEY, Path(tmp) / "data.mdb")
    log.info("catalog snapshot stored as %s (%d bytes)", SNAPSHOT_KEY, info.size)
    return info


def last_txnid(catalog: Catalog) -> int:
    """The id of the catalog's last committed write transaction: a change counter."""
    return int(catalog.env.info()["last_txnid"])


class Snapshots:
    """Snapshots of a mounted catalog and the deletions they allow."""

    def __init__(
        self,
        catalog: Catalog,
        backend: ObjectStore,
        workdir: Path,
        settings: Callable[[], HsmSettings],
        limiter: trio.CapacityLimiter,
        delete_deferred: Callable[[list[str]], Awaitable[list[str]]],
        *,
        current: bool,
    ) -> None:
        self.catalog = catalog
        self.backend = backend
        self.workdir = workdir
        self.settings = settings
        self.limiter = limiter
        self.delete_deferred = delete_deferred  # the migrator's; returns the keys deleted
        # The catalog as the last snapshot saw it (None: no snapshot of this state known).
        self.snapshot_txnid: int | None = last_txnid(catalog) if current else None
        self.change_seen: float | None = None  # trio time the first unsaved change was seen
        self.last_at: float | None = None  # epoch seconds of the last snapshot stored
        self.last_duration = 0.0
        self.last_size = 0
        self.errors = 0
        self.last_error: str | None = None
        self.count = 0
        self._last_taken = float("-inf")  # trio time the last snapshot started

    def changed(self) -> bool:
        return last_txnid(self.catalog) != self.snapshot_txnid

    def due(self) -> float | None:
        """When the next snapshot is due (trio time), or None while nothing changed."""
        if not self.changed():
            self.change_seen = None
            return None
        now = trio.current_time()
        if self.change_seen is None:
            self.change_seen = now
        return max(
            self.change_seen + self.settings().snapshot_interval,
            self._last_taken + SPACING * self.last_duration,
        )

    async def run(self) -> None:
        while True:
            await trio.sleep(POLL)
            due = self.due()
            if due is not None and trio.current_time() >= due:
                await self.take()

    async def take(self) -> bool:
        """Store a snapshot now, then delete what it no longer names; False if it failed."""
        with self.catalog.read() as txn:
            deferred = txn.deferred_deletes()
        txnid = last_txnid(self.catalog)
        self._last_taken = started = trio.current_time()
        try:
            info = await trio.to_thread.run_sync(
                take_snapshot, self.catalog, self.backend, self.workdir, limiter=self.limiter
            )
        except Exception as exc:
            self.errors += 1
            self.last_error = str(exc)
            self.change_seen = trio.current_time()  # try again one interval from now
            log.error("catalog snapshot to %s failed: %s; tried again in %.0f s",
                      self.backend.describe(), exc, self.settings().snapshot_interval)  # fmt: skip
            return False
        self.last_duration = trio.current_time() - started
        self.last_at, self.last_size = time.time(), info.size
        self.snapshot_txnid, self.change_seen = txnid, None
        self.count += 1
        if deferred:
            before = last_txnid(self.catalog)
            deleted = await self.delete_deferred(deferred)
            # Forgetting the deleted keys is one commit; if nothing else committed since
            # the snapshot, the snapshot is as good as current (no snapshot for that).
            if deleted and before == txnid and last_txnid(self.catalog) == txnid + 1:
                self.snapshot_txnid = txnid + 1
            log.info("deleted %d object(s) that no stored snapshot names any more", len(deleted))
        return True

    def statistics(self) -> dict[str, Any]:
        return {
            "snapshots_taken": self.count,
            "last_snapshot_at": self.last_at,
            "last_snapshot_bytes": self.last_size,
            "last_snapshot_seconds": round(self.last_duration, 3),
            "snapshot_pending": self.changed(),
            "snapshot_errors": self.errors,
            "last_snapshot_error": self.last_error,
        }
