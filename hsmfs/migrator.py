"""The policy engine: which files to migrate to the object store and release from the cache.

- Migration: a file closed and unmodified for ``migrate_after`` is uploaded (at most
  ``max_uploads`` at a time) under ``<prefix>/<its path>`` (with hard links: its first
  link's, or once that is removed, a remaining link's); only once the store has
  confirmed size and MD5 does it become ``archived``. The queue lives in the catalog and
  survives restarts; a failed upload is retried with exponential backoff. An upload
  never takes the key of another file's copy (a file renamed after migration keeps its
  object under its old name): it then goes under ``<path>~<inode>``.
- Release: when the cache file system passes its high watermark, archived files are
  released least recently used first until it is below the low watermark; with
  ``release_after``, archived files not used for that long are released too. Before
  any cache data is freed, the object store must confirm the copy (a HEAD: size and
  ETag or MD5; the policy confirms a batch at once). A file whose copy is missing or
  different stays in the cache, becomes dirty and is migrated again. A file that is
  dirty, open, ``norelease``, ``lost`` or being staged is never released.
- Deletion: objects no file holds any more (deleted files, superseded keys) are deleted
  once a snapshot that no longer names them is stored (``delete_deferred``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .backends import ObjectInfo, ObjectStore, TemporaryFailure
from .cache import CacheDir
from .catalog import Catalog, HsmFlag, HsmState, Inode, Txn, now_ns
from .checksums import WrittenChecksums, file_checksums
from .config import Config, parse_size
from .copies import copy_problem, mark_lost
from .resident import ReleaseRefused, ResidentData

log = logging.getLogger(__name__)

SWEEP_PAUSE = 10.0  # seconds between release sweeps that found nothing more to release
CONFIRM_BATCH = 64  # copies confirmed at once by a release sweep
RESERVED_PREFIX = ".hsmfs/"  # hsmfs's own objects (catalog snapshots): no file's key


@dataclass
class UploadResult:
    md5: str
    crcs: list[int]
    etag: str | None


class Migrator:
    """Migrates dirty files, releases archived ones, and deletes objects nobody holds.

    Collaborators come in built: the catalog, the cache, the object store (called in
    worker threads under ``limiter``), the resident-data layer (which owns the cache
    data, its users and the eviction itself) and ``open_for_writing`` (no upload of a
    file that is being written)."""

    def __init__(
        self,
        catalog: Catalog,
        cache: CacheDir,
        backend: ObjectStore,
        config: Config,
        limiter: trio.CapacityLimiter,
        resident: ResidentData,
        open_for_writing: Callable[[int], bool],
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.resident = resident
        self.backend = backend
        self.config = config
        self.limiter = limiter
        self.open_for_writing = open_for_writing
        self.uploading: dict[int, str] = {}  # ino -> key ("" until chosen)
        self.deleting: dict[str, trio.Event] = {}  # deferred deletions running now
        self.failures: dict[int, int] = {}  # consecutive failed uploads per inode
        self.counters = {
            "migrated": 0, "migrated_bytes": 0, "released": 0, "upload_errors": 0,
            "copies_missing": 0, "objects_deleted": 0,
        }  # fmt: skip
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

    def wake_release(self) -> None:
        """Something may be releasable now (a file was archived, a write found the cache
        full): end the pause between release sweeps and run the policy at once."""
        self._next_sweep = 0.0
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
            if due <= now and ino not in self.uploading and not self.open_for_writing(ino):
                self.uploading[ino] = ""
                nursery.start_soon(self._upload, ino)

    async def _upload(self, ino: int) -> None:
        try:
            await self._upload_one(ino)
        finally:
            self.uploading.pop(ino, None)

    def _choose_key(self, txn: Txn, ino: int, path: str | None) -> str:
        """The file's path, unless another file's copy (or upload) has that key."""
        base = path if path is not None else f"{RESERVED_PREFIX}unnamed/{ino}"
        others = {key for other, key in self.uploading.items() if other != ino}
        key, attempt = base, 0
        while (owner := txn.key_owner(key)) not in (None, ino) or key in others:
            attempt += 1
            key = f"{base}~{ino}" if attempt == 1 else f"{base}~{ino}.{attempt}"
            log.info("object %s holds the copy of inode %s (renamed after its migration); "
                     "inode %d goes under %s", base, owner, ino, key)  # fmt: skip
        return key

    async def _upload_one(self, ino: int) -> None:
        while True:
            with self.catalog.read() as txn:
                inode = txn.get_inode(ino)
                path = txn.path_of(ino)
                key = self._choose_key(txn, ino, path)
            deleting = self.deleting.get(key)
            if deleting is None:
                break
            await deleting.wait()  # the deferred deletion of that key must not follow us
        gone = inode is None or inode.nlink == 0  # deleted, or unlinked and still open
        if gone or inode is None or not inode.is_reg or inode.hsm_state != HsmState.DIRTY:
            with self.catalog.write() as txn:
                txn.dequeue(ino)
            return
        if path is not None and path.startswith(RESERVED_PREFIX):
            self._upload_failed(ino, path, ValueError(
                f"/{RESERVED_PREFIX} is hsmfs's own name in the object store (catalog "
                f"snapshots); rename /{RESERVED_PREFIX.rstrip('/')} to migrate this file"
            ), retry_delay=self.config.hsm.retry_max)  # fmt: skip
            return
        self.uploading[ino] = key
        version = self.resident.version(ino)
        metadata = {
            "hsmfs-ino": str(ino),
            "hsmfs-mode": oct(inode.mode),
            "hsmfs-uid": str(inode.uid),
            "hsmfs-gid": str(inode.gid),
            "hsmfs-mtime-ns": str(inode.mtime_ns),
        }
        source = self.cache.path(ino)
        known = self.resident.written_checksums.get(ino)
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
        if self.resident.version(ino) != version:
            log.info("%s changed during its upload; it will be migrated again", key)
            return
        with self.catalog.write() as txn:
            current = txn.get_inode(ino)
            if current is None or current.hsm_state != HsmState.DIRTY:
                return
            current.hsm_state = HsmState.ARCHIVED
            txn.put_inode(current)
            # A key it held before goes to the deferred deletions with this record.
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
        self.resident.written_checksums.pop(ino, None)
        self.counters["migrated"] += 1
        self.counters["migrated_bytes"] += inode.size
        log.info("archived %s (%d bytes, md5 %s)", key, inode.size, result.md5)
        self.wake_release()  # a new release candidate: a full cache may be waiting for it

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

    def _upload_failed(
        self, ino: int, key: str, exc: Exception, retry_delay: float | None = None
    ) -> None:
        attempt = self.failures.get(ino, 0) + 1
        self.failures[ino] = attempt
        hsm = self.config.hsm
        delay = retry_delay or min(hsm.retry_max, hsm.retry_min * 2 ** (attempt - 1))
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

    # -- confirming copies ----------------------------------------------------------------
    async def _head(self, key: str) -> ObjectInfo | None:
        return await trio.to_thread.run_sync(self.backend.head, key, limiter=self.limiter)

    async def confirm_copy(self, ino: int) -> str | None:
        """Why the object store does not hold the copy ``ino``'s record describes, or None
        if it does. ReleaseRefused if the store cannot tell now."""
        with self.catalog.read() as txn:
            record = txn.hsm_record(ino)
        if not record.get("key"):
            return copy_problem(record, None)
        try:
            info = await self._head(record["key"])
        except Exception as exc:
            raise ReleaseRefused(f"the object store cannot confirm its copy now: {exc}") from exc
        return copy_problem(record, info)

    def _migrate_again(self, ino: int, problem: str) -> None:
        """An archived file whose copy is gone: it keeps its data, becomes dirty and is
        migrated again (one transaction: a crash keeps both or neither)."""
        with self.catalog.write() as txn:
            inode = txn.get_inode(ino)
            if inode is None or inode.hsm_state != HsmState.ARCHIVED:
                return
            inode.hsm_state = HsmState.DIRTY
            txn.put_inode(inode)
            self.schedule_in(txn, ino, delay=0)
            path = txn.path_of(ino)
        self.resident.versions[ino] = self.resident.version(ino) + 1
        self.counters["copies_missing"] += 1
        log.error("%s was not released: %s; it stays in the cache, is dirty again and will "
                  "be migrated again", path or f"inode {ino}", problem)  # fmt: skip

    async def recheck(self, ino: int) -> str | None:
        """Check ``ino``'s copy in the object store again (HEAD: size and checksum) and
        let its state follow; returns what is wrong, or None if the copy is there (or the
        file is dirty: nothing to check yet).

        lost, copy back -> released; released, copy gone -> lost; archived, copy gone ->
        dirty, and it migrates anew (its data is still in the cache)."""
        with self.catalog.read() as txn:
            inode = txn.get_inode(ino)
            path = txn.path_of(ino) or f"inode {ino}"
        if inode is None or not inode.is_reg:
            return "it is not a regular file"
        state = inode.hsm_state
        if state == HsmState.DIRTY:
            return None
        try:
            problem = await self.confirm_copy(ino)
        except ReleaseRefused as exc:
            return str(exc)
        if problem is None:
            if state == HsmState.LOST:
                with self.catalog.write() as txn:
                    back = txn.set_hsm_state(ino, HsmState.RELEASED, only_from=HsmState.LOST)
                if back:
                    self.resident.discard_stale(ino)  # what a crash left is not its data
                    log.info("%s: its copy is in the object store again; released", path)
            return None
        if state == HsmState.ARCHIVED:
            self._migrate_again(ino, problem)
            return f"{problem}; it migrates anew from the cache"
        if state == HsmState.RELEASED:
            mark_lost(self.catalog, ino, problem, only_from=HsmState.RELEASED)
        return f"{problem}; restore that object or delete the file"

    # -- release --------------------------------------------------------------------------
    async def release(self, ino: int) -> int:
        """Release one file now, once the object store confirmed its copy; returns the
        bytes freed. ReleaseRefused says why not (a missing copy: the file is dirty again
        and migrates anew)."""
        inode = self.resident.check_evictable(ino)
        if inode.hsm_state == HsmState.RELEASED:
            return 0
        version = self.resident.version(ino)
        problem = await self.confirm_copy(ino)
        if problem is not None:
            self._migrate_again(ino, problem)
            raise ReleaseRefused(f"{problem}; it is migrated again instead")
        freed = self.resident.evict(ino, version)
        self.counters["released"] += freed > 0
        return freed

    async def _confirm_many(self, inodes: list[Inode]) -> dict[int, str | None]:
        """Confirm the copies of several files at once (HEADs in parallel, each in a worker
        thread under the backend limiter); a file the store cannot tell about is left out."""
        results: dict[int, str | None] = {}

        async def one(ino: int) -> None:
            try:
                results[ino] = await self.confirm_copy(ino)
            except ReleaseRefused as exc:
                log.warning("release of inode %d postponed: %s", ino, exc)

        async with trio.open_nursery() as nursery:
            for inode in inodes:
                nursery.start_soon(one, inode.ino)
        return results

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
        wanted = [
            inode
            for inode in candidates  # least recently used first
            if not self.resident.in_use(inode.ino) and not self.resident.staging(inode.ino)
        ]
        freed = 0
        released = []
        index, done = 0, False
        while index < len(wanted) and not done:
            batch: list[Inode] = []
            planned = freed
            while index < len(wanted) and len(batch) < CONFIRM_BATCH:
                inode = wanted[index]
                too_old = cutoff is not None and self._last_use(inode) < cutoff
                if planned >= over and not too_old:
                    done = True  # enough, and the rest is newer still (LRU order)
                    break
                batch.append(inode)
                planned += inode.size
                index += 1
            versions = {inode.ino: self.resident.version(inode.ino) for inode in batch}
            confirmed = await self._confirm_many(batch)
            for inode in batch:  # no await from here to the eviction of each file
                if inode.ino not in confirmed:
                    continue
                problem = confirmed[inode.ino]
                if problem is not None:
                    self._migrate_again(inode.ino, problem)
                    continue
                try:
                    gained = self.resident.evict(inode.ino, versions[inode.ino])
                except ReleaseRefused:
                    continue
                freed += gained
                self.counters["released"] += gained > 0
                released.append(inode.ino)
        for ino in released:  # the next statvfs must see the space freed
            await self.resident.removed(ino)
        if freed < over or max_age is not None:
            # A sweep reads every inode: after one that could not do all it wanted (or an
            # age sweep), wait before the next instead of rescanning every scan_interval;
            # a newly archived file ends the pause (wake_release).
            pause = SWEEP_PAUSE if max_age is None else min(SWEEP_PAUSE, max_age)
            self._next_sweep = time.monotonic() + pause
        if freed:
            log.info("released %d bytes from the cache (used %d, high %d, low %d)",
                     freed, marks["used"], marks["high"], marks["low"])  # fmt: skip
        return freed

    def _release_candidates(self) -> list[Inode]:
        """Archived, releasable files, least recently used first."""
        with self.catalog.read() as txn:
            found = [
                inode
                for inode in txn.inodes()
                if inode.hsm_state == HsmState.ARCHIVED and not inode.hsm_flags & HsmFlag.NORELEASE
            ]
        return sorted(found, key=self._last_use)

    def _last_use(self, inode: Inode) -> int:
        """Last open since mount, else the newer of atime and mtime (survives restarts)."""
        return self.resident.last_use.get(inode.ino) or max(inode.atime_ns, inode.mtime_ns)

    # -- deferred deletions ---------------------------------------------------------------
    async def delete_deferred(self, keys: list[str]) -> list[str]:
        """Delete the objects of ``keys`` (deferred deletions that a stored snapshot no
        longer names), unless a file holds one again; returns the keys deleted."""
        deleted = []
        for key in keys:
            if key in self.uploading.values():
                continue  # an upload is taking the key: its record keeps the object
            with self.catalog.read() as txn:
                if txn.key_owner(key) is not None or not txn.is_deferred(key):
                    continue
            done = self.deleting[key] = trio.Event()
            try:
                await trio.to_thread.run_sync(self.backend.delete, key, limiter=self.limiter)
            except Exception as exc:
                log.error("could not delete object %s of a deleted or moved file: %s; it is "
                          "tried again after the next snapshot", key, exc)  # fmt: skip
                continue
            finally:
                del self.deleting[key]
                done.set()
            deleted.append(key)
        if deleted:
            with self.catalog.write() as txn:  # one commit (see Snapshots.take)
                for key in deleted:
                    if txn.key_owner(key) is None:
                        txn.forget_delete(key)
        self.counters["objects_deleted"] += len(deleted)
        return deleted

    def statistics(self) -> dict[str, Any]:
        with self.catalog.read() as txn:
            queue = txn.queue()
            dirty_bytes = 0
            for ino, _ in queue:
                inode = txn.get_inode(ino)
                dirty_bytes += inode.size if inode is not None else 0
            deferred = len(txn.deferred_deletes())
        return {
            "queue_length": len(queue),
            "dirty_files": len(queue),
            "dirty_bytes": dirty_bytes,
            "uploads_in_flight": len(self.uploading),
            "uploading": sorted(k for k in self.uploading.values() if k),
            "last_upload_error": self.last_error,
            "deletions_deferred": deferred,
            **self.counters,
        }
