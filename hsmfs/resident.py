"""Resident data: the one way between the FUSE layer and file bytes in the cache.

``fs.py`` and ``members.py`` ask this layer for readable data and never see a stage, a
part file or a cache-file removal. It owns, for every inode:

- opening the data: the cache file of a resident file, or (released) the part file of a
  stage that it starts and whose verified prefix answers reads (``stager.py``); a member
  of a released tar is fetched alone with a ranged GET, checked against its MD5;
- who uses the data (``users``): every open file, every open member of a tar and every
  open still waiting for its cache file counts, and ``evict`` never frees data in use or
  being staged;
- the order of cache-file changes (``removals.py``): new data never lands in a path whose
  removal is still pending;
- what the migrator needs to know of the data: a version bumped by every change, the
  checksums computed while a file was written front to back, and when it was last used
  (the release order).

See CONCURRENCY.md for the tasks, locks and invariants.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyfuse3
import trio

from .backends import ChecksumMismatch, ObjectStore
from .cache import CacheDir, pread_into, pread_nowait
from .catalog import Catalog, HsmFlag, HsmState, Inode, now_ns
from .checksums import RunningChecksums, WrittenChecksums
from .config import HsmSettings
from .copies import RECHECK, mark_lost
from .removals import CacheRemovals
from .stager import Stage, Stager

log = logging.getLogger(__name__)

PREFETCH_WINDOW = 64 << 20  # a member this close ahead of a running stage waits for it


class ReleaseRefused(Exception):
    """Why a file's cache data may not be freed (the message names the reason)."""


def eio() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EIO)


class ResidentFile:
    """The data of one open regular file, shared by all its handles: the cache file, or
    the part file of the stage that is bringing it back."""

    def __init__(self, owner: ResidentData, ino: int, fd: int, stage: Stage | None) -> None:
        self._owner = owner
        self.ino = ino
        self._fd = fd
        self._stage = stage
        self.refs = 0
        # The checksums of a file written front to back from empty (None otherwise).
        self.sums: RunningChecksums | None = None

    @property
    def failed(self) -> bool:
        """Its stage failed: the next open replaces the data with a new stage's."""
        return self._stage is not None and self._stage.error is not None

    def _replace(self, fd: int, stage: Stage | None) -> int:
        old, self._fd, self._stage = self._fd, fd, stage
        return old

    def _staged(self, stage: Stage) -> None:
        if self._stage is stage:
            self._stage = None

    async def ready(self, end: int) -> None:
        """Wait until bytes [0, end) are here and verified (EIO if the stage fails)."""
        stage = self._stage
        if stage is not None:
            await stage.wait_for(end)

    async def read(self, offset: int, size: int) -> memoryview:
        await self.ready(offset + size)
        return await self._owner.pread(self._fd, offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        sums = self.sums
        io = self._owner.io_limiter
        if sums is not None and offset == sums.next_offset and not sums.invalid:
            sums.next_offset = offset + len(data)
            return await trio.to_thread.run_sync(sums.write, self._fd, data, offset, limiter=io)
        self.sums = None
        return await trio.to_thread.run_sync(os.pwrite, self._fd, data, offset, limiter=io)

    async def truncate(self, size: int, old_size: int) -> None:
        await self.ready(old_size)  # a stage still writing would undo the truncation
        io = self._owner.io_limiter
        await trio.to_thread.run_sync(os.ftruncate, self._fd, size, limiter=io)
        self.sums = RunningChecksums(self._owner.part_size) if size == 0 else None

    async def sync(self, datasync: bool) -> None:
        sync = os.fdatasync if datasync else os.fsync
        await trio.to_thread.run_sync(sync, self._fd, limiter=self._owner.io_limiter)

    def hash_from_start(self) -> None:
        """The file is empty and about to be written: keep checksums as it is written."""
        self.sums = RunningChecksums(self._owner.part_size)

    def keep_checksums(self, size: int) -> None:
        """The last writer closed: hand the checksums to the migrator (valid for this
        data version of this daemon run only)."""
        sums, owner = self.sums, self._owner
        if sums is not None and not sums.invalid and sums.length == size:
            crcs, md5 = sums.result()
            owner.written_checksums[self.ino] = (
                owner.version(self.ino),
                crcs,
                md5,
                sums.part_digests(),
            )
        else:
            owner.written_checksums.pop(self.ino, None)


class DataView:
    """Bytes of one range of a file (a tar member), read with offsets into that range."""

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        raise NotImplementedError

    async def close(self) -> None:
        """Give the data back (a view must be closed once)."""


class FetchedView(DataView):
    """A member fetched alone from the object store, in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        return memoryview(self.data)[offset : offset + size]


class FileView(DataView):
    """A range of a resident (or staging) file, read from its cache (or part) file."""

    def __init__(
        self, owner: ResidentData, ino: int, fd: int, stage: Stage | None, start: int
    ) -> None:
        self._owner = owner
        self.ino = ino
        self._fd = fd
        self._stage = stage
        self._start = start

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        position = self._start + offset
        stage = self._stage
        if stage is not None and not stage.done:
            await stage.wait_for(position + size)
        return await self._owner.pread(self._fd, position, size)

    async def close(self) -> None:
        # On the trio thread: a read-only descriptor, nothing to flush.
        os.close(self._fd)
        self._owner._unuse(self.ino)


@dataclass
class Fetch:
    """One ranged GET of one member, shared by every reader of it."""

    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: str | None = None


class ResidentData:
    """The resident data of one mount (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        cache: CacheDir,
        backend: ObjectStore,
        settings: Callable[[], HsmSettings],
        *,
        io_limiter: trio.CapacityLimiter,
        backend_limiter: trio.CapacityLimiter,
        nursery: trio.Nursery,
        part_size: int = 0,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.backend = backend
        self.settings = settings  # the configuration's [hsm] section (reloadable)
        self.io_limiter = io_limiter  # cache-file I/O
        self.backend_limiter = backend_limiter
        self.part_size = part_size  # the object store's multipart part size
        self.removals = CacheRemovals(cache, io_limiter, nursery.start_soon)
        self.stager = Stager(
            catalog, cache, backend, backend_limiter, nursery, io_limiter, self.removals,
            timeout=lambda: settings().stage_timeout, max_stages=settings().max_stages,
        )  # fmt: skip
        self.stager.on_staged = self._staged
        self.files: dict[int, ResidentFile] = {}  # open regular files
        # Who uses an inode's data: open files, open members, opens still waiting.
        self.users: Counter[int] = Counter()
        self.emptying: dict[int, trio.Event] = {}  # released files being truncated to 0
        self.fetches: dict[tuple[int, int], Fetch] = {}
        self.versions: dict[int, int] = {}  # ino -> bumped by every change of its data
        self.last_use: dict[int, int] = {}  # ino -> ns of its last open; the release order
        # ino -> (data version, block CRCs, MD5, part MD5s) of files hashed while written;
        # in memory only: after a restart, migration computes them again
        self.written_checksums: dict[int, WrittenChecksums] = {}
        self.counters = {"member_fetches": 0, "member_fetch_bytes": 0}

    # -- bookkeeping ----------------------------------------------------------------------
    def version(self, ino: int) -> int:
        return self.versions.get(ino, 0)

    def modified(self, inode: Inode) -> None:
        """File data changed: whatever copy the object store has is stale now."""
        self.versions[inode.ino] = self.versions.get(inode.ino, 0) + 1
        if inode.is_reg and inode.hsm_state != HsmState.LOST:
            inode.hsm_state = HsmState.DIRTY

    def in_use(self, ino: int) -> bool:
        return self.users[ino] > 0

    def staging(self, ino: int) -> bool:
        return self.stager.running(ino) is not None

    def _unuse(self, ino: int) -> None:
        self.users[ino] -= 1
        if self.users[ino] <= 0:
            del self.users[ino]

    def _state(self, ino: int) -> HsmState:
        with self.catalog.read() as txn:
            inode = txn.get_inode(ino)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return HsmState(inode.hsm_state)

    async def pread(self, fd: int, offset: int, size: int) -> memoryview:
        """From the page cache on the trio thread if it has the bytes, else in a worker."""
        buf = bytearray(size)
        n = pread_nowait(fd, buf, offset)
        if n is None:
            n = await trio.to_thread.run_sync(pread_into, fd, buf, offset, limiter=self.io_limiter)
        return memoryview(buf)[:n]

    # -- opening data ---------------------------------------------------------------------
    async def _attach(self, ino: int, flags: int, *, create: bool) -> tuple[int, Stage | None]:
        """A descriptor of ``ino``'s data: its cache file, or the part file of its stage
        (started here if the file is released). The caller counts as a user already."""
        while True:
            emptying = self.emptying.get(ino)
            if emptying is not None:
                await emptying.wait()
                continue
            state = self._state(ino)
            if state == HsmState.LOST:
                log.error("inode %d is lost: no valid copy in the cache or the object store; "
                          "reads fail with EIO. %s", ino, RECHECK)  # fmt: skip
                raise eio()
            if state != HsmState.RELEASED:
                await self.removals.removed(ino)
                opener = functools.partial(self.cache.open, ino, create=create)
                return await trio.to_thread.run_sync(opener, limiter=self.io_limiter), None
            stage = self.stager.start(ino)
            await stage.wait_part()
            try:
                fd = await trio.to_thread.run_sync(
                    os.open, stage.part, flags | os.O_CLOEXEC, limiter=self.io_limiter
                )
            except FileNotFoundError:
                # The stage is ending: its part file was renamed into place or discarded,
                # and the catalog says which only once it has ended.
                await stage.wait_ended()
                if not stage.done:
                    raise eio() from None
                continue
            return fd, stage

    async def open(self, ino: int, *, create: bool) -> ResidentFile:
        """The data of a regular file being opened (staged back if released); ``create``:
        an empty file may have no cache file yet. Close it with ``close``."""
        self.users[ino] += 1  # from now on a release would take the file being opened
        try:
            file = self.files.get(ino)
            if file is None or file.failed:
                fd, stage = await self._attach(ino, os.O_RDWR, create=create)
                file = self.files.get(ino)  # another open may have won the race
                if file is None:
                    file = self.files[ino] = ResidentFile(self, ino, fd, stage)
                elif file.failed:
                    os.close(file._replace(fd, stage))  # the failed stage's part file
                else:
                    os.close(fd)
        except BaseException:
            self._unuse(ino)
            raise
        file.refs += 1
        self.last_use[ino] = now_ns()
        return file

    async def close(self, file: ResidentFile) -> None:
        """One open of ``file`` ended; the last one closes its descriptor."""
        file.refs -= 1
        self._unuse(file.ino)  # now: a release may free the data the descriptor still has
        if file.refs == 0:
            if self.files.get(file.ino) is file:
                del self.files[file.ino]
            # A close can wait for the disk (freeing an unlinked file's blocks).
            await trio.to_thread.run_sync(os.close, file._fd, limiter=self.io_limiter)

    async def open_range(
        self, ino: int, key: str | None, start: int, size: int, md5: str | None, name: str
    ) -> DataView:
        """Bytes [start, start + size) of a tar, for its member ``name``: from the cache (or
        a stage that is about to reach them); for a released tar, fetched alone (and the
        whole tar staged in the background, unless ``member_prefetch`` is none)."""
        state = self._state(ino)
        if state == HsmState.LOST:
            raise eio()
        stage = self.stager.running(ino)
        near = stage is not None and start + size <= stage.received + PREFETCH_WINDOW
        if state != HsmState.RELEASED or near:
            self.users[ino] += 1
            try:
                fd, stage = await self._attach(ino, os.O_RDONLY, create=False)
            except BaseException:
                self._unuse(ino)
                raise
            return FileView(self, ino, fd, stage, start)
        if key is None:
            raise eio()
        if stage is None and self.settings().member_prefetch == "whole":
            self.stager.start(ino)  # the rest of the series will be read soon: fetch it all
        return FetchedView(await self._fetch(ino, key, start, size, md5, name))

    async def _fetch(
        self, ino: int, key: str, start: int, size: int, md5: str | None, name: str
    ) -> bytes:
        fetch = self.fetches.get((ino, start))
        if fetch is not None:
            await fetch.done.wait()
        else:
            fetch = self.fetches[(ino, start)] = Fetch()
            try:
                with trio.fail_after(self.settings().stage_timeout):
                    fetch.data = await trio.to_thread.run_sync(
                        self._fetch_range, key, start, size, md5, name, abandon_on_cancel=True
                    )
                self.counters["member_fetches"] += 1
                self.counters["member_fetch_bytes"] += size
            except ChecksumMismatch as exc:
                fetch.error = str(exc)
                mark_lost(self.catalog, ino, exc)
            except Exception as exc:
                fetch.error = str(exc) or "timed out"
                log.error("fetching %s (bytes %d-%d) of %s failed: %s", name, start,
                          start + size, key, fetch.error)  # fmt: skip
            finally:
                fetch.done.set()
                del self.fetches[(ino, start)]
        if fetch.data is None:
            raise eio()
        return fetch.data

    def _fetch_range(self, key: str, start: int, size: int, md5: str | None, name: str) -> bytes:
        with self.backend.open_range(key, start, start + size) as reader:
            data = reader.read()
        if len(data) != size or (md5 and hashlib.md5(data).hexdigest() != md5):
            raise ChecksumMismatch(
                f"{key}: {name} (bytes {start}-{start + size}) does not match its MD5 {md5} "
                f"({len(data)} of {size} bytes fetched)"
            )
        return data

    def _staged(self, ino: int) -> None:
        file = self.files.get(ino)
        if file is not None and file._stage is not None and file._stage.done:
            file._stage = None

    # -- changing data without opening it -------------------------------------------------
    async def empty_released(self, ino: int) -> None:
        """A released file truncated to zero wants none of its data: an empty cache file,
        no stage (an open meanwhile waits for it, or it would stage the old data)."""
        done = self.emptying[ino] = trio.Event()
        try:
            await self.removals.removed(ino)
            emptied = functools.partial(self.cache.truncate, create=True)
            # Truncated too: a crash may have left the released data there.
            await trio.to_thread.run_sync(emptied, ino, 0, limiter=self.io_limiter)
        finally:
            del self.emptying[ino]
            done.set()

    def discard(self, ino: int) -> None:
        """The file is deleted: its cache data goes (in the background)."""
        self.removals.start(ino)
        self.versions.pop(ino, None)
        self.written_checksums.pop(ino, None)
        self.last_use.pop(ino, None)

    def discard_stale(self, ino: int) -> None:
        """A file that has no cache data (released, lost): remove whatever is there."""
        self.removals.start(ino)

    async def removed(self, ino: int) -> None:
        """Return once a freed cache file of ``ino`` is gone from the disk."""
        await self.removals.removed(ino)

    # -- staging and eviction -------------------------------------------------------------
    def stage(self, ino: int) -> None:
        """Bring a released file back in the background (hsmctl stage, user.hsm.action)."""
        self.stager.start(ino)

    async def staged(self, ino: int) -> str | None:
        """Wait for the stage of ``ino`` to end; its error, or None once resident."""
        stage = self.stager.stages.get(ino)
        if stage is None:
            return None
        await stage.wait_ended()
        return stage.error

    def check_evictable(self, ino: int) -> Inode:
        """The inode, if its data could be freed now; ReleaseRefused says why not."""
        if self.in_use(ino):
            raise ReleaseRefused("it is open")
        if self.staging(ino):
            raise ReleaseRefused("it is being staged; release it once the stage is done")
        with self.catalog.read() as txn:
            inode = txn.get_inode(ino)
        if inode is None or not inode.is_reg:
            raise ReleaseRefused("it is not a regular file")
        if inode.hsm_flags & HsmFlag.NORELEASE:
            raise ReleaseRefused("it is marked norelease")
        state = HsmState(inode.hsm_state)
        if state not in (HsmState.ARCHIVED, HsmState.RELEASED):
            raise ReleaseRefused(f"it is {state.name.lower()}")
        return inode

    def evict(self, ino: int, version: int) -> int:
        """Free the cache data of an archived file whose copy the caller has confirmed
        since its data was at ``version``; returns the bytes freed.

        Not async: the checks and the state change are one step, so no open slips in.
        The cache file goes in a worker thread after; ``removed(ino)`` waits for it."""
        inode = self.check_evictable(ino)
        if self.version(ino) != version:
            raise ReleaseRefused("it changed while its copy was being confirmed")
        if inode.hsm_state == HsmState.RELEASED:
            return 0
        with self.catalog.write() as txn:
            inode.hsm_state = HsmState.RELEASED
            txn.put_inode(inode)
        self.removals.start(ino)
        return inode.size

    def statistics(self) -> dict[str, Any]:
        return {
            **self.stager.statistics(),
            **self.removals.statistics(),
            "open_data": len(self.files),
            "member_fetches_in_flight": len(self.fetches),
            **self.counters,
        }
