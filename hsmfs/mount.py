"""Start-up and shut-down of one hsmfs mount: lock, catalog recovery, FUSE, tasks, signals."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from .actions import Actions
from .backends import ObjectStore, ObjectStoreError, open_backend
from .cache import CacheDir
from .catalog import Catalog, HsmState, Txn, now_ns
from .config import Config, load_config
from .control import ControlServer
from .errors import MountError, UsageError
from .fs import HsmFs
from .lock import StateLock
from .metrics import MetricsEndpoint, daemon_statistics
from .migrator import Migrator
from .notify import Notifier
from .snapshot import take_snapshot
from .stager import Stager, discard_partial_stages

log = logging.getLogger(__name__)


@dataclass
class MountOptions:
    mountpoint: Path
    cache_dir: Path
    state_dir: Path
    config_file: Path | None = None
    backend_url: str | None = None  # overrides the configuration's hsm.backend


def backend_url(options: MountOptions, config: Config) -> str:
    """--backend, else the configuration, else the embedded default: a local directory."""
    url = options.backend_url or config.hsm.backend
    if url is None:
        default = options.state_dir / "objects"
        default.mkdir(parents=True, exist_ok=True)
        url = f"file://{default}"
    return url


def open_store(options: MountOptions, config: Config) -> ObjectStore:
    try:
        return open_backend(
            backend_url(options, config),
            connect_timeout=config.hsm.connect_timeout,
            read_timeout=config.hsm.read_timeout,
        )
    except ObjectStoreError as exc:
        raise UsageError(str(exc)) from None


def recover(catalog: Catalog, cache: CacheDir) -> None:
    """Bring the catalog in line with the cache after the daemon stopped.

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


class Daemon:
    """One mounted hsmfs: owns the lock, the catalog and the FUSE session."""

    def __init__(self, options: MountOptions) -> None:
        self.options = options
        self.config: Config = load_config(options.config_file)
        self.lock = StateLock(options.state_dir, f"mounted at {options.mountpoint}")
        self.fs: HsmFs | None = None
        self.backend: ObjectStore | None = None
        self._cancel: trio.CancelScope | None = None
        self.notifier = Notifier.from_environment()
        self._stopping = False

    def run(self, on_ready: Callable[[], None]) -> None:
        opts = self.options
        clear_stale_mount(opts.mountpoint)
        with self.lock:
            self.backend = open_store(opts, self.config)
            catalog = Catalog(opts.state_dir / "catalog")
            clean_exit = False
            try:
                cache = CacheDir(opts.cache_dir)
                recover(catalog, cache)
                self.fs = HsmFs(catalog, cache, self.config)
                self.fs.daemon_info = {
                    "pid": os.getpid(),
                    "control": str(opts.state_dir / "control.sock"),
                    "state": str(opts.state_dir),
                    "cache": str(opts.cache_dir),
                    "mountpoint": str(opts.mountpoint),
                }
                fuse_options = set(pyfuse3.default_options)
                fuse_options |= {"fsname=hsmfs", "subtype=hsmfs", "noatime"}
                if self.config.fs.allow_other:
                    fuse_options.add("allow_other")
                try:
                    pyfuse3.init(self.fs, str(opts.mountpoint), fuse_options)
                except RuntimeError as exc:
                    raise MountError(f"cannot mount {opts.mountpoint}: {exc}") from None
                try:
                    trio.run(self._serve, on_ready)
                    clean_exit = True
                finally:
                    pyfuse3.close(unmount=True)
                    log.info("unmounted %s", opts.mountpoint)
            finally:
                catalog.flush_dirty()
                with catalog.write() as txn:
                    txn.set_meta(b"clean", b"1")
                catalog.sync()
                if clean_exit:
                    self._snapshot(catalog)
                catalog.close()
                self.backend.close()

    def _snapshot(self, catalog: Catalog) -> None:
        assert self.backend is not None
        try:
            take_snapshot(catalog, self.backend, self.options.state_dir)
        except Exception as exc:
            log.error("catalog snapshot to %s failed: %s", self.backend.describe(), exc)

    async def _serve(self, on_ready: Callable[[], None]) -> None:
        with self._metrics_endpoint() as metrics:
            await self._serve_fs(on_ready, metrics)

    def _metrics_endpoint(self) -> AbstractContextManager[MetricsEndpoint | None]:
        settings = self.config.metrics
        if not settings.port:
            return nullcontext()
        fs, backend = self.fs, self.backend
        assert fs is not None and backend is not None
        return MetricsEndpoint(
            settings.address, settings.port, lambda: daemon_statistics(fs, backend)
        )

    async def _serve_fs(
        self, on_ready: Callable[[], None], metrics: MetricsEndpoint | None
    ) -> None:
        assert self.fs is not None
        fs, backend = self.fs, self.backend
        assert backend is not None
        control = ControlServer(self.options.state_dir / "control.sock")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.notifier.ping_watchdog)
            self._cancel = nursery.cancel_scope
            limiter = trio.CapacityLimiter(backend.options.max_pool_connections)
            fs.removals.spawn = nursery.start_soon
            fs.stager = Stager(
                fs.catalog, fs.cache, backend, limiter, nursery, fs.on_staged,
                io_limiter=fs.io_limiter, removals=fs.removals,
                max_stages=self.config.hsm.max_stages,
            )  # fmt: skip
            if metrics is not None:
                fs.stager.on_stage_time = metrics.observe_stage
            fs.migrator = Migrator(
                fs.catalog, fs.cache, backend, self.config, limiter,
                fs.is_open, lambda ino: fs.data_versions.get(ino, 0), fs.removals,
                fs.last_open, fs.written_checksums,
            )  # fmt: skip
            fs.delete_object = lambda key: nursery.start_soon(self._delete_object, key, limiter)
            fs.members.backend = backend
            fs.part_size = backend.options.multipart_chunksize
            fs.spawn = nursery.start_soon
            self.actions = Actions(fs, backend, self.options, lambda: self.config)
            self.actions.register(control)
            nursery.start_soon(fs.migrator.run, nursery)
            nursery.start_soon(self._periodic_snapshot, limiter)
            nursery.start_soon(self._fuse_main, nursery.cancel_scope)
            nursery.start_soon(self._signals)
            nursery.start_soon(self._periodic_sync)
            await nursery.start(control.serve)
            # Ready only once the mount answers a request through the kernel.
            st = await trio.to_thread.run_sync(os.stat, self.options.mountpoint)
            set_read_ahead(st.st_dev, self.config.fs.read_ahead_kb)
            log.info("mounted %s (state %s, cache %s)", *self._paths())
            on_ready()
            self.notifier.ready(f"mounted {self.options.mountpoint}")

    def _paths(self) -> tuple[Path, Path, Path]:
        o = self.options
        return o.mountpoint, o.state_dir, o.cache_dir

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
        if self.fs is not None:
            self.fs.config = new
            if self.fs.migrator is not None:
                self.fs.migrator.reconfigure(new)
        log.info("configuration reloaded from %s", self.options.config_file)

    async def _periodic_sync(self) -> None:
        assert self.fs is not None
        while True:
            await trio.sleep(self.config.fs.sync_interval)
            await self.fs.sync()

    async def _periodic_snapshot(self, limiter: trio.CapacityLimiter) -> None:
        assert self.fs is not None
        while True:
            await trio.sleep(self.config.hsm.snapshot_interval)
            await trio.to_thread.run_sync(self._snapshot, self.fs.catalog, limiter=limiter)

    async def _delete_object(self, key: str, limiter: trio.CapacityLimiter) -> None:
        assert self.backend is not None
        try:
            await trio.to_thread.run_sync(self.backend.delete, key, limiter=limiter)
        except Exception as exc:
            log.error("could not delete object %s of a deleted file: %s", key, exc)
