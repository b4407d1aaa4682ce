"""Stage-on-read: bring a released file back from the object store, serving reads early.

One ``Stage`` per inode however many readers: it downloads the object into
``<cache file>.part`` in a worker thread, checks every block against the CRC32 recorded
at migration before any reader sees it, and answers each read as soon as the verified
prefix covers it. The whole object is then checked against its MD5 and the part file
renamed into place (open file descriptors stay valid across the rename). A checksum
mismatch marks the file ``lost``; every waiting read fails with EIO, never wrong bytes.
Every file operation on the part file runs in a worker thread (io limiter): a slow cache
disk stalls the stage, never the trio thread.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from .backends import ChecksumMismatch, NoSuchObject, ObjectInfo, ObjectStore
from .cache import CacheDir
from .catalog import Catalog, HsmState
from .removals import CacheRemovals

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20  # CRC32 granularity: one verified block is the unit served early


def file_checksums(path: Path) -> tuple[list[int], str]:
    """CRC32 of every BLOCK_SIZE block of a file and its MD5, in one pass (at migration)."""
    crcs = []
    md5 = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(BLOCK_SIZE):
            crcs.append(zlib.crc32(block))
            md5.update(block)
    return crcs, md5.hexdigest()


# (data version, block CRCs, MD5, (part size, part MD5 digests) or None)
WrittenChecksums = tuple[int, list[int], str, tuple[int, list[bytes]] | None]


class RunningChecksums:
    """The block CRCs and MD5 of a file written front to back, kept while it is written,
    so that migration need not read the file once more before uploading it.

    ``write`` runs in worker threads; a write that does not continue exactly where the
    last one ended (random access, or two writes finishing out of order) makes the sums
    ``invalid`` and migration falls back to ``file_checksums``.
    """

    def __init__(self, part_size: int = 0) -> None:
        self.md5 = hashlib.md5()
        self.part_size = part_size  # the object store's multipart part size (0: none)
        self.part = hashlib.md5()
        self.parts: list[bytes] = []  # MD5 digests of the complete parts
        self.crcs: list[int] = []
        self.crc = 0
        self.in_block = 0
        self.length = 0
        self.next_offset = 0  # where the next write must start, as dispatched
        self.invalid = False
        self._lock = threading.Lock()

    def write(self, fd: int, data: bytes, offset: int) -> int:
        written = os.pwrite(fd, data, offset)
        with self._lock:
            if self.invalid or offset != self.length or written != len(data):
                self.invalid = True
                return written
            self.md5.update(data)
            self._hash_parts(memoryview(data))
            view = memoryview(data)
            while view:
                take = min(BLOCK_SIZE - self.in_block, len(view))
                self.crc = zlib.crc32(view[:take], self.crc)
                self.in_block += take
                view = view[take:]
                if self.in_block == BLOCK_SIZE:
                    self.crcs.append(self.crc)
                    self.crc, self.in_block = 0, 0
            self.length += written
        return written

    def _hash_parts(self, view: memoryview) -> None:
        if not self.part_size:
            return
        position = self.length
        while view:
            take = min(self.part_size - position % self.part_size, len(view))
            self.part.update(view[:take])
            position += take
            view = view[take:]
            if position % self.part_size == 0:
                self.parts.append(self.part.digest())
                self.part = hashlib.md5()

    def result(self) -> tuple[list[int], str]:
        return self.crcs + ([self.crc] if self.in_block else []), self.md5.hexdigest()

    def part_digests(self) -> tuple[int, list[bytes]] | None:
        """(part size, MD5 digest of every part) for the object store's ETag check."""
        if not self.part_size:
            return None
        tail = [self.part.digest()] if self.length % self.part_size else []
        return self.part_size, self.parts + tail


@dataclass
class Stage:
    ino: int
    key: str
    size: int
    part: Path
    crcs: list[int]
    started: float = field(default_factory=time.monotonic)
    received: int = 0  # contiguous bytes in the part file
    verified: int = 0  # contiguous bytes checked against their block CRC
    done: bool = False
    error: str | None = None
    known: ObjectInfo | None = None  # from the migration: lets the store skip a HEAD
    part_ready: trio.Event = field(default_factory=trio.Event)  # set once the part exists
    # Set once done or failed and its part file renamed or removed: a reader that finds
    # no part file learns here which it was, a new stage of the file may make its own.
    ended: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def notify(self) -> None:
        """Wake every waiting reader (called on the trio thread)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, end: int, timeout: float) -> None:
        """Return once bytes [0, end) are verified; FUSEError(EIO) on failure or timeout.

        A wait that reaches the end of the file (every writer's) lasts until the stage is
        done: until the download returns, its thread still truncates the part file to the
        object's size, which would cut off bytes a writer appended."""
        end = min(end, self.size)
        whole = end >= self.size
        with trio.move_on_after(timeout):
            while (whole or self.verified < end) and self.error is None and not self.done:
                await self._changed.wait()
        if self.error is not None:
            raise pyfuse3.FUSEError(errno.EIO)
        if not self.done and (whole or self.verified < end):
            log.error("staging %s: no data for %.0f s; read failed with EIO", self.key, timeout)
            raise pyfuse3.FUSEError(errno.EIO)

    async def wait_part(self) -> None:
        """Return once the part file exists (it is created in a worker thread after the
        stage started), or the stage failed: only then may a reader open ``part``."""
        await self.part_ready.wait()

    async def wait_ended(self) -> None:
        """Return once the stage is ``done`` (the part file is the cache file now) or has
        failed (it is gone), and the catalog says so."""
        await self.ended.wait()

    def check_blocks(self, fd: int) -> None:
        """Verify the blocks that arrived completely (worker thread).

        Without block checksums (a file rebuilt from the bucket alone) nothing is served
        before the whole object has passed its MD5 check."""
        while self.crcs and self.verified < self.received:
            index = self.verified // BLOCK_SIZE
            block_end = min(self.size, (index + 1) * BLOCK_SIZE)
            if self.received < block_end:
                return
            data = os.pread(fd, block_end - self.verified, self.verified)
            if index >= len(self.crcs) or zlib.crc32(data) != self.crcs[index]:
                raise ChecksumMismatch(
                    f"{self.key}: block {index} (bytes {self.verified}-{block_end}) does not "
                    "match the checksum recorded at migration"
                )
            self.verified = block_end


class Stager:
    """Starts, tracks and finishes stages; ``fs`` reads wait on them."""

    def __init__(
        self,
        catalog: Catalog,
        cache: CacheDir,
        backend: ObjectStore,
        limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
        on_staged: Callable[[int], None],
        io_limiter: trio.CapacityLimiter,
        removals: CacheRemovals,
        max_stages: int = 4,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.backend = backend
        self.limiter = limiter  # downloads
        self.io_limiter = io_limiter  # part files: create, rename, remove (the cache disk)
        self.removals = removals  # of released cache files, which a stage must not overtake
        self.nursery = nursery
        self.on_staged = on_staged
        self.on_stage_time: Callable[[float], None] = lambda seconds: None  # metrics
        self.stages: dict[int, Stage] = {}
        self.slots = trio.Semaphore(max_stages)  # whole-file downloads at once
        self.completed = 0
        self.failed = 0
        self.last_error: str | None = None

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
        stage = Stage(ino, record["key"], inode.size, part, list(record.get("crcs", [])))
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
            async with self.slots:
                await trio.to_thread.run_sync(self._download, stage, token, limiter=self.limiter)
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
        fd = os.open(stage.part, os.O_RDONLY | os.O_CLOEXEC)
        try:

            def progress(increment: int) -> None:
                with stage._lock:
                    stage.received += increment
                    stage.check_blocks(fd)
                trio.from_thread.run_sync(stage.notify, trio_token=token)

            # download() checks the MD5
            self.backend.download(stage.key, stage.part, progress=progress, known=stage.known)
            with stage._lock:
                stage.received = max(stage.received, os.fstat(fd).st_size)
                stage.check_blocks(fd)
                if not stage.crcs and stage.received == stage.size:
                    stage.verified = stage.size
            if stage.verified != stage.size:
                raise ChecksumMismatch(
                    f"{stage.key}: staged {stage.verified} bytes, the file has {stage.size}"
                )
        finally:
            os.close(fd)

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
        stage.error = str(exc)
        self.failed += 1
        self.last_error = f"{stage.key}: {exc}"
        lost = isinstance(exc, ChecksumMismatch | NoSuchObject)
        if lost:  # in the same step as the error: no new open tries the copy again
            with self.catalog.write() as txn:
                inode = txn.get_inode(stage.ino)
                if inode is not None:
                    inode.hsm_state = HsmState.LOST
                    txn.put_inode(inode)
            log.error("file %s is lost: %s", stage.key, exc)
        else:
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
