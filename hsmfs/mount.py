"""Start-up and shut-down of one hsmfs mount: lock, catalog recovery, FUSE, tasks, signals.

``Daemon.run`` holds the state lock and the catalog; inside one trio run, ``_main``
builds every collaborator first (limiters, resident data, migrator, members, attributes,
snapshots), hands them to ``HsmFs``, mounts, and runs every task in one nursery. After the
unmount it takes the last snapshot, and the catalog is marked clean.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pyfuse3
import trio

from .actions import Actions
from .backends import ObjectStore
from .cache import CacheDir
from .catalog import Catalog, HsmState, Txn, now_ns
from .config import Config, load_config
from .control import ControlServer
from .errors import HsmfsError, MountError
from .fs import HsmFs
from .lock import StateLock
from .members import TarMembers
from .metrics import MetricsEndpoint, daemon_statistics
from .migrator import Migrator
from .notify import Notifier
from .openfiles import OpenFiles
from .options import MountOptions, open_store
from .resident import ResidentData
from .snapshot import Snapshots
from .stager import discard_partial_stages
from .xattrs import HsmAttributes

log = logging.getLogger(__name__)

__all__ = ["Daemon", "MountOptions"]


def recover(catalog: Catalog, cache: CacheDir) -> bool:
    """Bring the catalog in line with the cache after the daemon stopped; returns whether
    it had stopped cleanly.

    Always: inodes unlinked while still open are deleted (the kernel's references died
    with the old mount). After a crash, also: files that were open for writing take their
    size from the cache file, which holds every byte that was acknowledged.
    """
    with catalog.read() as txn:
        unclean = txn.meta(b"clean") != b"1"
    purged: list[int] = []
    resized = 0
    with catalog.write() as txn:
        for ino in txn.members(b"open_writes"):
            inode = txn.get_inode(ino)
            size = cache.size(ino)
            if inode is not None and size is not None and inode.size != size:
                inode.size = size
                txn.put_inode(inode)
                resized += 1
            txn.remove_from(b"open_writes", ino)
            inode = txn.get_inode(ino)
            if inode is not None and inode.hsm_state == HsmState.DIRTY:
                txn.enqueue(ino, now_ns())  # it was never closed, so never queued
        for ino in txn.members(b"orphans"):
            txn.delete_inode(ino)
            purged.append(ino)
        txn.set_meta(b"clean", b"0")
    for ino in purged:
        cache.remove(ino)
    discard_partial_stages(catalog, cache)
    catalog.sync()
    if unclean:
        strays = remove_stray_cache_files(catalog, cache)
        log.warning(
            "the previous daemon did not shut down cleanly: recovered the size of %d file(s) "
            "that were open for writing, removed %d unlinked file(s) and %d cache file(s) "
            "of no inode or of a released file",
            resized,
            len(purged),
            strays,
        )
    return not unclean


def remove_stray_cache_files(catalog: Catalog, cache: CacheDir) -> int:
    """A crash between a catalog commit and the matching cache change (a create that never
    committed, an unlink or a release whose data was not yet removed) leaves data of no
    inode, or of a released file."""
    with catalog.read() as txn:
        strays = [path for ino, path in cache.inodes() if ino >= 0 and wants_no_data(txn, ino)]
    for path in strays:
        path.unlink(missing_ok=True)
    return len(strays)


def wants_no_data(txn: Txn, ino: int) -> bool:
    """No inode, or a released one: a cache file of ``ino`` is garbage."""
    inode = txn.get_inode(ino)
    return inode is None or inode.hsm_state == HsmState.RELEASED


def clear_stale_mount(mountpoint: Path) -> None:
    """A daemon killed with -9 leaves a dead mount ("transport endpoint not connected")."""
    try:
        # statfs always reaches the daemon; stat may be answered from cached attributes.
        os.statvfs(mountpoint)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise MountError(f"cannot use mount point {mountpoint}: {exc.strerror}") from None
        log.warning("removing the stale mount at %s left by a daemon that died", mountpoint)
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
        return
    if not mountpoint.is_dir():
        raise MountError(f"mount point {mountpoint} is not a directory; create it first")
    if os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint} is already a mount point; unmount it first")


def set_read_ahead(dev: int, kib: int) -> None:
    """Let the kernel read ahead in large requests: one FUSE request per MiB, not per
    128 KiB, is what makes sequential reads through the mount fast."""
    path = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    try:
        path.write_text(str(kib))
    except OSError as exc:
        log.info("kernel read-ahead left at its default (%s: %s)", path, exc.strerror)


def only_error(group: BaseExceptionGroup) -> BaseException:
    """A start that failed inside the nursery (a busy metrics port, a mount error) as the
    one plain HsmfsError it raised, which the CLI prints as one line with its exit code;
    anything else stays the group it is."""
    errors, rest = group.split(HsmfsError)
    leaves: list[BaseException] = []
    pending: list[BaseException] = [errors] if errors is not None else []
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if rest is None and len(leaves) == 1 else group


class Daemon:
    """One mounted hsmfs: owns the lock, the catalog and the FUSE session."""

    def __init__(self, options: MountOptions) -> None:
        self.options = options
        self.config: Config = load_config(options.config_file)
        self.lock = StateLock(options.state_dir, f"mounted at {options.mountpoint}")
        self.migrator: Migrator | None = None  # while running: reload reconfigures it
        self.notifier = Notifier.from_environment()
        self._stopping = False
        self._final_snapshot = False  # the unmount stored a snapshot of the final catalog

    def run(self, on_ready: Callable[[], None]) -> None:
        opts = self.options
        clear_stale_mount(opts.mountpoint)
        with self.lock:
            backend = open_store(opts, self.config)
            catalog = Catalog(opts.state_dir / "catalog")
            try:
                cache = CacheDir(opts.cache_dir)
                with catalog.read() as txn:
                    current = txn.meta(b"snapshot_current") == b"1"
                clean = recover(catalog, cache)
                try:
                    trio.run(self._main, catalog, cache, backend, clean and current, on_ready)
                except BaseExceptionGroup as group:
                    raise only_error(group) from None
            finally:
                catalog.flush_dirty()
                with catalog.write() as txn:
                    txn.set_meta(b"clean", b"1")
                    txn.set_meta(b"snapshot_current", b"1" if self._final_snapshot else b"0")
                catalog.sync()
                catalog.close()
                backend.close()

    def _daemon_info(self) -> dict[str, object]:
        o = self.options
        return {
            "pid": os.getpid(),
            "control": str(o.state_dir / "control.sock"),
            "state": str(o.state_dir),
            "cache": str(o.cache_dir),
            "mountpoint": str(o.mountpoint),
        }

    async def _main(
        self,
        catalog: Catalog,
        cache: CacheDir,
        backend: ObjectStore,
        snapshot_current: bool,
        on_ready: Callable[[], None],
    ) -> None:
        opts = self.options
        settings = lambda: self.config.hsm  # noqa: E731 - the current one, after reloads
        backend_limiter = trio.CapacityLimiter(backend.options.max_pool_connections)
        io_limiter = trio.CapacityLimiter(self.config.fs.io_threads)
        control = ControlServer(opts.state_dir / "control.sock")
        mounted = False
        try:
            async with trio.open_nursery() as nursery:
                resident = ResidentData(
                    catalog, cache, backend, settings, io_limiter=io_limiter,
                    backend_limiter=backend_limiter, nursery=nursery,
                    part_size=backend.options.multipart_chunksize,
                )  # fmt: skip
                open_files = OpenFiles()
                migrator = self.migrator = Migrator(
                    catalog, cache, backend, self.config, backend_limiter, resident,
                    open_files.open_for_writing,
                )  # fmt: skip
                snapshots = Snapshots(
                    catalog, backend, opts.state_dir, settings, backend_limiter,
                    migrator.delete_deferred, current=snapshot_current,
                )  # fmt: skip
                members = TarMembers(catalog, resident, lambda: self.config.fs)
                attributes = HsmAttributes(catalog, migrator, resident, self._daemon_info())
                fs = HsmFs(
                    catalog, lambda: self.config, resident, migrator, members, attributes,
                    open_files, nursery.start_soon,
                )  # fmt: skip
                actions = Actions(fs, migrator, resident, snapshots, backend, lambda: self.config)
                actions.register(control)
                with self._metrics_endpoint(migrator, resident, backend) as metrics:
                    if metrics is not None:
                        resident.stager.on_stage_time = metrics.observe_stage
                    self._mount(fs)
                    mounted = True
                    nursery.start_soon(self.notifier.ping_watchdog)
                    nursery.start_soon(self._abort_stale_uploads, backend, backend_limiter)
                    nursery.start_soon(migrator.run, nursery)
                    nursery.start_soon(snapshots.run)
                    nursery.start_soon(self._fuse_main, nursery.cancel_scope)
                    nursery.start_soon(self._signals)
                    nursery.start_soon(self._periodic_sync, fs)
                    await nursery.start(control.serve)
                    # Ready only once the mount answers a request through the kernel.
                    st = await trio.to_thread.run_sync(os.stat, opts.mountpoint)
                    set_read_ahead(st.st_dev, self.config.fs.read_ahead_kb)
                    log.info("mounted %s (state %s, cache %s)", *self._paths())
                    on_ready()
                    self.notifier.ready(f"mounted {opts.mountpoint}")
                    await trio.sleep_forever()  # until the unmount cancels the nursery
        finally:
            if mounted:
                pyfuse3.close(unmount=True)
                log.info("unmounted %s", opts.mountpoint)
        # Unmounted cleanly (an error would have left with the nursery): the last
        # snapshot, so the bucket knows the final catalog.
        catalog.flush_dirty()
        with trio.CancelScope(shield=True):
            self._final_snapshot = await snapshots.take()

    def _mount(self, fs: HsmFs) -> None:
        fuse_options = set(pyfuse3.default_options)
        fuse_options |= {"fsname=hsmfs", "subtype=hsmfs", "noatime"}
        if self.config.fs.allow_other:
            fuse_options.add("allow_other")
        try:
            pyfuse3.init(fs, str(self.options.mountpoint), fuse_options)
        except RuntimeError as exc:
            raise MountError(f"cannot mount {self.options.mountpoint}: {exc}") from None

    def _metrics_endpoint(
        self, migrator: Migrator, resident: ResidentData, backend: ObjectStore
    ) -> AbstractContextManager[MetricsEndpoint | None]:
        settings = self.config.metrics
        if not settings.port:
            return nullcontext()
        return MetricsEndpoint(
            settings.address,
            settings.port,
            lambda: daemon_statistics(migrator, resident, backend),
        )

    def _paths(self) -> tuple[Path, Path, Path]:
        o = self.options
        return o.mountpoint, o.state_dir, o.cache_dir

    async def _abort_stale_uploads(
        self, backend: ObjectStore, limiter: trio.CapacityLimiter
    ) -> None:
        """Uploads a killed daemon left unfinished (S3 multipart uploads cost storage and
        are never listed as objects): none of them can still be running now."""
        mounted_at = time.time()
        try:
            aborted = await trio.to_thread.run_sync(
                backend.abort_stale_uploads, mounted_at, limiter=limiter
            )
        except Exception as exc:
            log.warning("could not look for unfinished uploads in %s: %s; `hsmfs fsck "
                        "--backend URL` removes them later", backend.describe(), exc)  # fmt: skip
            return
        if aborted:
            log.info("aborted %d unfinished upload(s) left in %s by an earlier daemon",
                     aborted, backend.describe())  # fmt: skip

    async def _fuse_main(self, scope: trio.CancelScope) -> None:
        await pyfuse3.main(max_tasks=self.config.fs.max_tasks)
        self._notify_stopping()
        scope.cancel()  # unmounted from outside, or terminate() after a signal

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                log.info("%s received: unmounting", signal.Signals(signum).name)
                self._notify_stopping()
                pyfuse3.terminate()

    def _notify_stopping(self) -> None:
        """Tell systemd once, on a signal or an unmount from outside, that we are stopping."""
        if not self._stopping:
            self._stopping = True
            self.notifier.stopping(f"unmounting {self.options.mountpoint}")

    def reload(self) -> None:
        try:
            new = load_config(self.options.config_file)
        except Exception as exc:
            log.error("configuration not reloaded: %s", exc)
            return
        self.config = new
        if self.migrator is not None:
            self.migrator.reconfigure(new)
        log.info("configuration reloaded from %s", self.options.config_file)

    async def _periodic_sync(self, fs: HsmFs) -> None:
        while True:
            await trio.sleep(self.config.fs.sync_interval)
            await fs.sync()
