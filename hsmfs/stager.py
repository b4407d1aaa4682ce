"""Stage-on-read: bring a released file back from the object store, serving reads early.

One ``Stage`` per inode however many readers: it downloads the object into
``<cache file>.part`` in a worker thread. The download hands every byte, in order, to
the stage as it hashes it for the MD5, and the stage checks each block against the CRC32
recorded at migration from those same bytes (``checksums.BlockVerifier``): nothing is
read back. A read is answered as soon as the verified prefix covers it. The whole object
is then checked against its MD5 and the part file renamed into place (open descriptors
stay valid across the rename). A checksum mismatch marks the file ``lost``; every
waiting read fails with EIO, never wrong bytes.

Every reader of a stage shares its deadline: ``stage_timeout`` seconds after the stage's
last progress. When it passes, the stage fails for all its readers at once (EIO), rather
than each reader waiting out a timeout of its own after the one before.

Every file operation on the part file runs in a worker thread (io limiter): a slow cache
disk stalls the stage, never the trio thread. Only ``resident.py`` uses this module.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from .backends import ChecksumMismatch, NoSuchObject, ObjectInfo, ObjectStore
from .cache import CacheDir
from .catalog import Catalog, HsmState
from .checksums import BlockVerifier
from .copies import mark_lost
from .removals import CacheRemovals

log = logging.getLogger(__name__)


class StageAbandoned(Exception):
    """The stage failed (its readers' deadline passed) while its download still ran."""


@dataclass(eq=False)
class Stage:
    ino: int
    key: str
    size: int
    part: Path
    verifier: BlockVerifier
    timeout: float  # seconds without progress after which every reader fails
    started: float = field(default_factory=time.monotonic)
    done: bool = False
    error: str | None = None
    known: ObjectInfo | None = None  # from the migration: lets the store skip a HEAD
    part_ready: trio.Event = field(default_factory=trio.Event)  # set once the part exists
    # Set once done or failed and its part file renamed or removed: a reader that finds
    # no part file learns here which it was, a new stage of the file may make its own.
    ended: trio.Event = field(default_factory=trio.Event)
    deadline: float = 0.0  # trio time: the shared deadline, moved on by progress
    _changed: trio.Event = field(default_factory=trio.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.deadline = trio.current_time() + self.timeout

    @property
    def received(self) -> int:
        """Contiguous bytes downloaded (and hashed) so far."""
        return self.verifier.received

    @property
    def verified(self) -> int:
        """Contiguous bytes checked against their block CRC: these may be served."""
        return self.verifier.verified

    def notify(self) -> None:
        """Progress, or the end: wake every waiting reader (called on the trio thread)."""
        self.deadline = trio.current_time() + self.timeout
        self._changed.set()
        self._changed = trio.Event()

    def fail(self, reason: str) -> None:
        """Fail every reader now (the download thread learns of it at its next bytes)."""
        if self.error is None and not self.done:
            self.error = reason
            self._changed.set()
            self._changed = trio.Event()

    async def _wait(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``, or raise EIO once the stage failed or its deadline
        passed (which then fails it for every reader)."""
        while not ready() and self.error is None:
            with trio.move_on_at(self.deadline):
                await self._changed.wait()
            if not ready() and self.error is None and trio.current_time() >= self.deadline:
                log.error("staging %s: no data from the object store for %.0f s; the reads "
                          "waiting for it fail with EIO", self.key, self.timeout)  # fmt: skip
                self.fail(f"no data from the object store for {self.timeout:.0f} s")
        if not ready():
            raise pyfuse3.FUSEError(errno.EIO)

    async def wait_for(self, end: int) -> None:
        """Return once bytes [0, end) are verified; FUSEError(EIO) on failure or timeout.

        A wait that reaches the end of the file (every writer's) lasts until the stage is
        done: until the download returns, its thread still truncates the part file to the
        object's size, which would cut off bytes a writer appended."""
        end = min(end, self.size)
        if end >= self.size:
            await self._wait(lambda: self.done)
        else:
            await self._wait(lambda: self.done or self.verified >= end)

    async def wait_part(self) -> None:
        """Return once the part file exists (it is created in a worker thread after the
        stage started): only then may a reader open ``part``; EIO if the stage failed."""
        await self._wait(self.part_ready.is_set)

    async def wait_ended(self) -> None:
        """Return once the stage is ``done`` (the part file is the cache file now) or has
        failed (it is gone), and the catalog says so."""
        await self.ended.wait()


class Stager:
    """Starts, tracks and finishes stages; the resident-data layer waits on them."""

    def __init__(
        self,
        catalog: Catalog,
        cache: CacheDir,
        backend: ObjectStore,
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
        io_limiter: trio.CapacityLimiter,
        removals: CacheRemovals,
        *,
        timeout: Callable[[], float],
        max_stages: int = 4,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.backend = backend
        self.limiter = limiter  # downloads
        self.io_limiter = io_limiter  # part files: create, rename, remove (the cache disk)
        self.removals = removals  # of released cache files, which a stage must not overtake
        self.nursery = nursery
        self.timeout = timeout  # the configuration's stage_timeout (reloadable)
        self.on_staged: Callable[[int], None] = lambda ino: None
        self.on_stage_time: Callable[[float], None] = lambda seconds: None  # metrics
        self.stages: dict[int, Stage] = {}
        self.slots = trio.Semaphore(max_stages)  # whole-file downloads at once
        self.completed = 0
        self.failed = 0
        self.last_error: str | None = None

    def running(self, ino: int) -> Stage | None:
        """The stage of ``ino`` that is still going (not failed, not done), if any."""
        stage = self.stages.get(ino)
        return stage if stage is not None and stage.error is None else None

    def start(self, ino: int) -> Stage:
        """The running stage of ``ino``, or a new one (the file must be released).

        Registered at once, so every reader that comes later shares it; its task creates
        the part file off the trio thread (``Stage.wait_part``) before downloading."""
        previous = self.stages.get(ino)
        if previous is not None and previous.error is None:
            return previous
        with self.catalog.write() as txn:  # in the staging set before its part file exists
            record = txn.hsm_record(ino)
            inode = txn.get_inode(ino)
            assert inode is not None
            txn.add_to(b"staging", ino)
        part = self.cache.path(ino).with_suffix(".part")
        verifier = BlockVerifier(record["key"], inode.size, list(record.get("crcs", [])))
        stage = Stage(ino, record["key"], inode.size, part, verifier, self.timeout())
        if record.get("etag"):
            stage.known = ObjectInfo(record["key"], inode.size, record.get("md5"), 0.0,
                                     etag=record["etag"])  # fmt: skip
        self.stages[ino] = stage
        self.nursery.start_soon(self._run, stage, previous)
        return stage

    async def _run(self, stage: Stage, previous: Stage | None) -> None:
        """Create the part file, download into it, rename it into place (or discard it)."""
        token = trio.lowlevel.current_trio_token()
        try:
            if previous is not None:  # a failed stage: it removes the same part path first
                await previous.wait_ended()
            await trio.to_thread.run_sync(create_part, stage.part, limiter=self.io_limiter)
            stage.part_ready.set()
            stage.notify()
            async with self.slots:
                await trio.to_thread.run_sync(self._download, stage, token, limiter=self.limiter)
            if stage.error is not None:  # its readers' deadline passed meanwhile
                raise StageAbandoned(stage.error)
            # A release's removal of the old cache file must not remove the staged data.
            await self.removals.removed(stage.ino)
            cache_file = self.cache.path(stage.ino)
            await trio.to_thread.run_sync(
                install_part, stage.part, cache_file, limiter=self.io_limiter
            )
        except Exception as exc:
            await self._failed(stage, exc)
        else:
            self._finished(stage)
        finally:
            stage.part_ready.set()  # who waits for the part file learns of a failure too
            stage.ended.set()
            stage.notify()

    def _download(self, stage: Stage, token: trio.lowlevel.TrioToken) -> None:
        """The object into the part file, each block checked as it passes (worker thread)."""

        def on_data(data: memoryview) -> None:
            with stage._lock:
                if stage.error is not None:
                    raise StageAbandoned(stage.error)  # nobody waits for these bytes
                stage.verifier.update(data)
            trio.from_thread.run_sync(stage.notify, trio_token=token)

        # download() checks the MD5 of the bytes it passed to on_data
        self.backend.download(stage.key, stage.part, known=stage.known, on_data=on_data)
        with stage._lock:
            if not stage.verifier.expected and stage.received == stage.size:
                stage.verifier.whole_file_verified()
            if stage.verified != stage.size:
                raise ChecksumMismatch(
                    f"{stage.key}: staged {stage.verified} bytes, the file has {stage.size}"
                )

    def _finished(self, stage: Stage) -> None:
        """The part file is the cache file now: the file is resident again."""
        with self.catalog.write() as txn:
            inode = txn.get_inode(stage.ino)
            if inode is not None and inode.hsm_state == HsmState.RELEASED:
                inode.hsm_state = HsmState.ARCHIVED
                txn.put_inode(inode)
            txn.remove_from(b"staging", stage.ino)
        if inode is None:  # deleted while staging: its removal may have come first
            self.removals.start(stage.ino)
        stage.done = True
        self.completed += 1
        del self.stages[stage.ino]
        self.on_staged(stage.ino)
        seconds = time.monotonic() - stage.started
        self.on_stage_time(seconds)
        log.info("staged %s (%d bytes in %.2f s)", stage.key, stage.size, seconds)

    async def _failed(self, stage: Stage, exc: Exception) -> None:
        """Fail every reader at once, then discard the part file (a new stage of the file
        waits for that: ``ended``)."""
        stage.fail(str(exc))
        self.failed += 1
        self.last_error = f"{stage.key}: {stage.error}"
        lost = isinstance(exc, ChecksumMismatch | NoSuchObject)
        if lost:  # in the same step as the error: no new open tries the copy again
            mark_lost(self.catalog, stage.ino, exc)
        elif not isinstance(exc, StageAbandoned):
            log.error(
                "staging %s failed: %s; reads fail with EIO until it succeeds", stage.key, exc
            )
        stage.part_ready.set()
        stage.notify()
        try:
            await trio.to_thread.run_sync(discard_part, stage.part, limiter=self.io_limiter)
        except OSError as err:  # left in the staging set: the next mount discards it
            log.error("cannot remove %s of a failed stage: %s", stage.part, err)
            return
        if self.stages.get(stage.ino) is stage:  # else a new stage has the file staging
            with self.catalog.write() as txn:
                txn.remove_from(b"staging", stage.ino)

    def statistics(self) -> dict[str, Any]:
        return {
            "stages_in_flight": len([s for s in self.stages.values() if s.error is None]),
            "stages_completed": self.completed,
            "stages_failed": self.failed,
            "last_stage_error": self.last_error,
        }


def create_part(part: Path) -> None:
    """An empty part file for a new stage (a worker thread: the cache disk may be slow);
    whatever a failed stage left there goes first."""
    part.parent.mkdir(exist_ok=True)
    part.unlink(missing_ok=True)
    part.touch(mode=0o600)


def install_part(part: Path, cache_file: Path) -> None:
    """Make a verified part file the cache file (a worker thread). Descriptors readers
    opened on the part file stay valid: they name the same file."""
    os.rename(part, cache_file)


def discard_part(part: Path) -> None:
    """Remove the part file of a failed stage (a worker thread)."""
    part.unlink(missing_ok=True)


def discard_partial_stages(catalog: Catalog, cache: CacheDir) -> int:
    """At mount: a stage cut short by a crash is discarded; the next read starts afresh."""
    with catalog.write() as txn:
        inos = txn.members(b"staging")
        for ino in inos:
            cache.path(ino).with_suffix(".part").unlink(missing_ok=True)
            txn.remove_from(b"staging", ino)
    return len(inos)
