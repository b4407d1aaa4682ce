"""The policy engine: which files to migrate to the object store and release from the cache.

- Migration: a file closed and unmodified for ``migrate_after`` is uploaded (at most
  ``max_uploads`` at a time) under ``<prefix>/<its path>`` (with hard links: its first
  link's, or once that is removed, a remaining link's); only once the store has
  confirmed size and MD5 does it become ``archived``. The queue lives in the catalog and
  survives restarts; a failed upload is retried with exponential backoff.
- Release: when the cache file system passes its high watermark, archived files are
  released least recently opened first until it is below the low watermark; with
  ``release_after``, archived files not opened for that long are released too. A file
  that is dirty, open, ``norelease``, ``lost`` or being staged is never released. The
  state changes on the trio thread; the cache file is removed after, in a worker thread
  (``CacheRemovals``), which a stage or truncation of the file waits for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .backends import ObjectStore, TemporaryFailure
from .cache import CacheDir
from .catalog import Catalog, HsmFlag, HsmState, Inode, Txn, now_ns
from .config import Config, parse_size
from .removals import CacheRemovals
from .stager import WrittenChecksums, file_checksums

log = logging.getLogger(__name__)

SWEEP_PAUSE = 10.0  # seconds between release sweeps that found nothing more to release


@dataclass
class UploadResult:
    md5: str
    crcs: list[int]
    etag: str | None


class ReleaseRefused(Exception):
    """Why a file may not be released (the message names the reason)."""


class Migrator:
    def __init__(
        self,
        catalog: Catalog,
        cache: CacheDir,
        backend: ObjectStore,
        config: Config,
        limiter: trio.CapacityLimiter,
        is_open: Any,
        data_version: Any,
        removals: CacheRemovals,
        last_open: dict[int, int] | None = None,
        written_checksums: dict[int, WrittenChecksums] | None = None,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.removals = removals
        self.backend = backend
        self.config = config
        self.limiter = limiter
        self.is_open = is_open  # ino -> bool: open for writing (or at all, for release)
        self.data_version = data_version  # ino -> int: bumped by every change of data
        self.last_open = last_open if last_open is not None else {}
        self.written_checksums = written_checksums if written_checksums is not None else {}
        self.uploading: dict[int, str] = {}
        self.failures: dict[int, int] = {}  # consecutive failed uploads per inode
        self.counters = {"migrated": 0, "migrated_bytes": 0, "released": 0, "upload_errors": 0}
        self.last_error: str | None = None
        self.backend_ok: bool | None = None
        self._wakeup = trio.Event()
        self._next_sweep = 0.0  # monotonic time before which no release sweep runs

    # -- queue ----------------------------------------------------------------------------
    def schedule(self, ino: int, delay: float | None = None) -> None:
        """Queue ``ino`` for migration after ``delay``; by default after migrate_after,
        which a reloaded configuration may change while the file waits."""
        with self.catalog.write() as txn:
            self.schedule_in(txn, ino, delay)

    def schedule_in(self, txn: Txn, ino: int, delay: float | None = None) -> None:
        """``schedule`` inside ``txn``: the transaction that made the file dirty, so a crash
        keeps both or neither (a dirty file outside the queue would never migrate). On the
        trio thread the policy loop only runs after the commit."""
        now = now_ns()
        idle_since = now if delay is None else 0
        if delay is None:
            delay = self.config.hsm.migrate_after
        inode = txn.get_inode(ino)
        if inode is None or inode.hsm_flags & HsmFlag.NOARCHIVE:
            return
        txn.enqueue(ino, now + int(delay * 1e9), idle_since)
        if delay == 0:
            self._wakeup.set()

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration: files queued for migrate_after follow its new
        value, and the policy loop runs at once with the new settings."""
        self.config = config
        self._apply_migrate_after()
        self._wakeup.set()

    def _apply_migrate_after(self) -> None:
        # One transaction: a crash keeps every entry, with the old or the new due time.
        delay = self.config.hsm.migrate_after
        with self.catalog.write() as txn:
            moved = txn.reschedule_idle(int(delay * 1e9))
        if moved:
            log.info("%d queued file(s) now migrate %g s after their last close", moved, delay)

    async def run(self, nursery: trio.Nursery) -> None:
        """The policy loop: start due uploads, release by watermarks."""
        self._apply_migrate_after()  # the configuration may have changed while unmounted
        while True:
            with trio.move_on_after(self.config.hsm.scan_interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._start_due_uploads(nursery)
            await self.release_by_policy()

    def _start_due_uploads(self, nursery: trio.Nursery) -> None:
        with self.catalog.read() as txn:
            queue = txn.queue()
        now = now_ns()
        for ino, due in sorted(queue, key=lambda item: item[1]):
            if len(self.uploading) >= self.config.hsm.max_uploads:
                return
            if due <= now and ino not in self.uploading and not self.is_open(ino, writers=True):
                self.uploading[ino] = ""
                nursery.start_soon(self._upload, ino)

    async def _upload(self, ino: int) -> None:
        try:
            await self._upload_one(ino)
        finally:
            self.uploading.pop(ino, None)

    async def _upload_one(self, ino: int) -> None:
        with self.catalog.read() as txn:
            inode = txn.get_inode(ino)
            path = txn.path_of(ino)
            record = txn.hsm_record(ino)
        gone = inode is None or inode.nlink == 0  # deleted, or unlinked and still open
        if gone or not inode.is_reg or inode.hsm_state != HsmState.DIRTY:
            with self.catalog.write() as txn:
                txn.dequeue(ino)
            return
        # Every linked file has a path (a hard link takes over the name of a removed first
        # link); only a damaged catalog leaves one without, until fsck finds it a name.
        key = path if path is not None else f".by-inode/{ino}"
        self.uploading[ino] = key
        version = self.data_version(ino)
        metadata = {
            "hsmfs-ino": str(ino),
            "hsmfs-mode": oct(inode.mode),
            "hsmfs-uid": str(inode.uid),
            "hsmfs-gid": str(inode.gid),
            "hsmfs-mtime-ns": str(inode.mtime_ns),
        }
        source = self.cache.path(ino)
        known = self.written_checksums.get(ino)
        sums = known if known is not None and known[0] == version else None
        try:
            result = await trio.to_thread.run_sync(
                self._upload_file, key, source, metadata, sums, limiter=self.limiter
            )
        except Exception as exc:
            self._upload_failed(ino, key, exc)
            return
        self.backend_ok = True
        self.failures.pop(ino, None)
        if self.data_version(ino) != version:
            log.info("%s changed during its upload; it will be migrated again", key)
            return
        with self.catalog.write() as txn:
            current = txn.get_inode(ino)
            if current is None or current.hsm_state != HsmState.DIRTY:
                return
            current.hsm_state = HsmState.ARCHIVED
            txn.put_inode(current)
            txn.set_hsm_record(
                ino,
                {
                    "key": key,
                    "md5": result.md5,
                    "size": current.size,
                    "archived_at": time.time(),
                    "crcs": result.crcs,
                    "etag": result.etag,
                },
            )
            txn.dequeue(ino)
        self.written_checksums.pop(ino, None)
        self.counters["migrated"] += 1
        self.counters["migrated_bytes"] += inode.size
        log.info("archived %s (%d bytes, md5 %s)", key, inode.size, result.md5)
        old_key = record.get("key")
        if old_key and old_key != key:  # the superseded copy goes only now it is replaced
            await trio.to_thread.run_sync(self.backend.delete, old_key, limiter=self.limiter)

    def _upload_file(
        self, key: str, source: Path, metadata: dict[str, str], sums: WrittenChecksums | None
    ) -> UploadResult:
        # Checksums kept while the file was written spare reading it before the upload;
        # the store still checks what it received against them.
        if sums is not None:
            _, crcs, md5, parts = sums
        else:
            (crcs, md5), parts = file_checksums(source), None
        info = self.backend.upload(key, source, md5=md5, parts=parts, metadata=metadata)
        assert info.md5 is not None
        return UploadResult(info.md5, crcs, info.etag)

    def _upload_failed(self, ino: int, key: str, exc: Exception) -> None:
        attempt = self.failures.get(ino, 0) + 1
        self.failures[ino] = attempt
        hsm = self.config.hsm
        delay = min(hsm.retry_max, hsm.retry_min * 2 ** (attempt - 1))
        self.counters["upload_errors"] += 1
        self.last_error = f"{key}: {exc}"
        if isinstance(exc, TemporaryFailure):
            self.backend_ok = False
        log.error(
            "upload of %s failed (attempt %d): %s; retrying in %.0f s", key, attempt, exc, delay
        )
        with self.catalog.write() as txn:
            if txn.get_inode(ino) is not None:
                txn.enqueue(ino, now_ns() + int(delay * 1e9))

    # -- release --------------------------------------------------------------------------
    def release(self, ino: int) -> int:
        """Release one file now; returns the bytes freed, raises ReleaseRefused.

        Not async: the checks and the state change are one step (no open slips in). The
        cache file goes in a worker thread after; ``removals.removed(ino)`` waits for it."""
        if self.is_open(ino, writers=False):
            raise ReleaseRefused("it is open")
        with self.catalog.write() as txn:
            inode = txn.get_inode(ino)
            if inode is None or not inode.is_reg:
                raise ReleaseRefused("it is not a regular file")
            if inode.hsm_flags & HsmFlag.NORELEASE:
                raise ReleaseRefused("it is marked norelease")
            state = HsmState(inode.hsm_state)
            if state == HsmState.RELEASED:
                return 0
            if state != HsmState.ARCHIVED:
                raise ReleaseRefused(f"it is {state.name.lower()}")
            inode.hsm_state = HsmState.RELEASED
            txn.put_inode(inode)
        self.removals.start(ino)
        self.counters["released"] += 1
        return inode.size

    def watermarks(self) -> dict[str, int]:
        """Cache use against the marks: a statvfs, which may wait for the cache disk (call
        it in a worker thread)."""
        usage = self.cache.usage()
        hsm = self.config.hsm
        return {
            "used": usage.used_bytes,
            "total": usage.total_bytes,
            "high": parse_size(hsm.high_watermark, usage.total_bytes),
            "low": parse_size(hsm.low_watermark, usage.total_bytes),
        }

    async def release_by_policy(self) -> int:
        marks = await trio.to_thread.run_sync(self.watermarks, limiter=self.limiter)
        over = marks["used"] - marks["low"] if marks["used"] > marks["high"] else 0
        max_age = self.config.hsm.release_after
        if (over <= 0 and max_age is None) or time.monotonic() < self._next_sweep:
            return 0
        candidates = await trio.to_thread.run_sync(self._release_candidates, limiter=self.limiter)
        cutoff = now_ns() - int(max_age * 1e9) if max_age is not None else None
        freed = 0
        released = []
        for inode in candidates:  # least recently used first
            too_old = cutoff is not None and self._last_use(inode) < cutoff
            if freed >= over and not too_old:
                break
            try:
                freed += self.release(inode.ino)
            except ReleaseRefused:
                continue
            released.append(inode.ino)
        for ino in released:  # the next statvfs must see the space freed
            await self.removals.removed(ino)
        if freed < over or max_age is not None:
            # A sweep reads every inode: after one that could not do all it wanted (or an
            # age sweep), wait before the next instead of rescanning every scan_interval.
            pause = SWEEP_PAUSE if max_age is None else min(SWEEP_PAUSE, max_age)
            self._next_sweep = time.monotonic() + pause
        if freed:
            log.info("released %d bytes from the cache (used %d, high %d, low %d)",
                     freed, marks["used"], marks["high"], marks["low"])  # fmt: skip
        return freed

    def _release_candidates(self) -> list[Inode]:
        """Archived, releasable files, least recently opened first."""
        with self.catalog.read() as txn:
            found = [
                inode
                for inode in txn.inodes()
                if inode.hsm_state == HsmState.ARCHIVED and not inode.hsm_flags & HsmFlag.NORELEASE
            ]
        return sorted(found, key=self._last_use)

    def _last_use(self, inode: Inode) -> int:
        """Last open since mount, else the newer of atime and mtime (survives restarts)."""
        return self.last_open.get(inode.ino) or max(inode.atime_ns, inode.mtime_ns)

    def statistics(self) -> dict[str, Any]:
        with self.catalog.read() as txn:
            queue = txn.queue()
            dirty_bytes = 0
            for ino, _ in queue:
                inode = txn.get_inode(ino)
                dirty_bytes += inode.size if inode is not None else 0
        return {
            "queue_length": len(queue),
            "dirty_files": len(queue),
            "dirty_bytes": dirty_bytes,
            "uploads_in_flight": len(self.uploading),
            "uploading": sorted(k for k in self.uploading.values() if k),
            "last_upload_error": self.last_error,
            **self.counters,
        }
