"""The pyfuse3 Operations of hsmfs: thin handlers over the catalog and the cache.

Every handler turns a failure into ``FUSEError(errno)`` (errnos.py). Focused modules do
the rest: rename.py the catalog side of rename(2), xattrs.py the ``user.hsm.*``
attributes, members.py everything inside tars, stager.py and migrator.py the HSM. See
CONCURRENCY.md for tasks, locks and invariants.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyfuse3
import trio

from .cache import CacheDir, pread_into, pread_nowait
from .catalog import NAME_MAX, Catalog, HsmState, Inode, Txn, now_ns
from .config import Config
from .errnos import check_name, existing, fail, fuse_op
from .members import TarMembers, is_member, is_tar_name, split_ino
from .removals import CacheRemovals
from .rename import rename_entry
from .stager import RunningChecksums, WrittenChecksums
from .xattrs import HSM_PREFIX, HsmAttributes, check_storable

if TYPE_CHECKING:
    from .migrator import Migrator
    from .stager import Stage, Stager

log = logging.getLogger(__name__)


@dataclass
class OpenInode:
    """The shared state of all open handles of one inode."""

    inode: Inode
    fd: int
    handles: int = 0
    writers: int = 0
    stage: Stage | None = None  # set while the data is being staged back
    sums: RunningChecksums | None = None  # while the file is written front to back


@dataclass
class Handle:
    ino: int
    writable: bool


class HsmFs(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, catalog: Catalog, cache: CacheDir, config: Config) -> None:
        super().__init__()
        self.catalog = catalog
        self.cache = cache
        self.config = config
        self.io_limiter = trio.CapacityLimiter(config.fs.io_threads)
        self.removals = CacheRemovals(cache, self.io_limiter)
        self.lookups: dict[int, int] = {}
        self.open_inodes: dict[int, OpenInode] = {}
        # Opens still waiting for their cache file: not releasable yet, like open ones.
        self.opening: Counter[int] = Counter()
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self.daemon_info: dict[str, Any] = {}
        # Set by the mount once the HSM runs; without them the file system is local only.
        self.stager: Stager | None = None
        self.migrator: Migrator | None = None
        self.delete_object: Any = None  # callable(key): remove a deleted file's copy
        self.data_versions: dict[int, int] = {}
        self.last_open: dict[int, int] = {}  # ino -> ns; since mount, for the release order
        # ino -> (data version, block CRCs, MD5) of files hashed while written; in memory
        # only: after a restart migration computes them again
        self.written_checksums: dict[int, WrittenChecksums] = {}
        self.part_size = 0  # the object store's multipart part size, set by the mount
        self.members = TarMembers(self)
        self.hsm_attributes = HsmAttributes(self)
        self.spawn: Callable[..., None] | None = None  # starts a background task (the mount's)
        self.counters: dict[str, int] = {
            "reads": 0,
            "writes": 0,
            "read_bytes": 0,
            "written_bytes": 0,
        }

    # -- helpers ------------------------------------------------------------------------
    def _attr(self, inode: Inode) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode.ino
        attr.generation = 0
        attr.entry_timeout = self.config.fs.entry_timeout
        attr.attr_timeout = self.config.fs.attr_timeout
        attr.st_mode = inode.mode
        attr.st_nlink = inode.nlink
        attr.st_uid = inode.uid
        attr.st_gid = inode.gid
        attr.st_rdev = inode.rdev
        attr.st_size = inode.size
        attr.st_blksize = 128 * 1024
        attr.st_blocks = (inode.size + 511) // 512
        attr.st_atime_ns = inode.atime_ns
        attr.st_mtime_ns = inode.mtime_ns
        attr.st_ctime_ns = inode.ctime_ns
        return attr

    def _writable(self, *inos: int) -> None:
        """Tar members and their directories are read-only."""
        if any(is_member(ino) for ino in inos):
            raise fail(errno.EROFS)

    def _writable_names(self, *names: tuple[int, bytes]) -> None:
        """``NAME.tar!REST`` in a real directory is inside that tar: read-only as well."""
        if any(b"!" in name for _, name in names):
            with self.catalog.read() as txn:
                if any(self.members.names_member(txn, *entry) for entry in names):
                    raise fail(errno.EROFS)

    def _inode(self, ino: int) -> Inode:
        live = self.catalog.live.get(ino)
        if live is not None:
            return live
        with self.catalog.read() as txn:
            return existing(txn, ino)

    def _remember(self, inode: Inode) -> pyfuse3.EntryAttributes:
        """Count one kernel reference to ``inode`` and return its attributes."""
        self.lookups[inode.ino] = self.lookups.get(inode.ino, 0) + 1
        return self._attr(inode)

    def _in_use(self, ino: int) -> bool:
        return ino in self.lookups or ino in self.open_inodes

    def _drop_link(self, txn: Txn, inode: Inode) -> tuple[int, str | None] | None:
        """After nlink reached 0: delete now, or park as orphan until the kernel forgets it.

        Returns what ``_purge`` must remove once the transaction committed, if anything."""
        if self._in_use(inode.ino):
            txn.add_to(b"orphans", inode.ino)
            return None
        return inode.ino, txn.delete_inode(inode.ino)

    def _purge(self, deleted: tuple[int, str | None] | None) -> None:
        """Remove the data of a deleted inode: its cache file and its object-store copy."""
        if deleted is None:
            return
        ino, key = deleted
        # Off the trio thread, so a slow cache disk stalls no other request. Inode numbers
        # are never reused, and recovery removes what a crash left behind.
        self.removals.start(ino)
        self.data_versions.pop(ino, None)
        if key is not None and self.delete_object is not None:
            self.delete_object(key)

    def _new_owner(self, parent: Inode, mode: int, ctx: pyfuse3.RequestContext) -> tuple[int, int]:
        """(mode, gid) for a new inode, honouring a set-group-ID parent directory."""
        if parent.mode & stat.S_ISGID:
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
            return mode, parent.gid
        return mode, ctx.gid

    def _create_node(
        self, parent_ino: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext, rdev: int = 0
    ) -> Inode:
        check_name(name)
        self._writable(parent_ino)
        self._writable_names((parent_ino, name))
        with self.catalog.write() as txn:
            parent = existing(txn, parent_ino)
            if not parent.is_dir:
                raise fail(errno.ENOTDIR)
            if parent.nlink == 0:
                raise fail(errno.ENOENT)
            if txn.lookup(parent_ino, name) is not None:
                raise fail(errno.EEXIST)
            mode, gid = self._new_owner(parent, mode, ctx)
            inode = txn.new_inode(mode, ctx.uid, gid, rdev, parent=parent_ino)
            txn.add_entry(parent_ino, name, inode.ino)
            if inode.is_dir:
                parent.nlink += 1
            parent.touch()
            txn.put_inode(parent)
        # No cache file yet: an empty file gets one at its first open (in a worker thread),
        # so a slow cache disk never stalls the trio thread here.
        return inode

    # -- namespace ----------------------------------------------------------------------
    @fuse_op
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        check_name(name)
        with self.catalog.read() as txn:
            if is_member(parent_inode):
                found = self.members.lookup(txn, parent_inode, name)
                if found is None and name == b"..":  # above the tar root: the tar's directory
                    link = txn.first_link(split_ino(parent_inode)[0])
                    found = self._attr(existing(txn, link[0])) if link else None
                return found if found is not None else self._negative()
            parent = existing(txn, parent_inode)
            if name == b".":
                ino: int | None = parent_inode
            elif name == b"..":
                ino = parent.parent
            else:
                ino = txn.lookup(parent_inode, name)
            if ino is None:
                if b"!" not in name:
                    return self._negative()
                bang = self.members.lookup_bang(txn, parent_inode, name)
                # Not cached: a tar still open or being indexed has its members soon.
                return bang if bang is not None else self._negative(entry_timeout=0.0)
            return self._remember(existing(txn, ino))

    def _negative(self, entry_timeout: float | None = None) -> pyfuse3.EntryAttributes:
        negative = pyfuse3.EntryAttributes()
        negative.st_ino = 0
        negative.entry_timeout = (
            self.config.fs.entry_timeout if entry_timeout is None else entry_timeout
        )
        return negative

    @fuse_op
    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, nlookup in inode_list:
            count = self.lookups.get(ino, 0) - nlookup
            if count > 0:
                self.lookups[ino] = count
                continue
            self.lookups.pop(ino, None)
            self._reap_if_unlinked(ino)

    def _reap_if_unlinked(self, ino: int) -> None:
        if self._in_use(ino):
            return
        with self.catalog.write() as txn:
            inode = txn.get_inode(ino)
            if inode is None or inode.nlink > 0:
                return
            deleted = (ino, txn.delete_inode(ino))
        self._purge(deleted)

    @fuse_op
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if is_member(inode):
            with self.catalog.read() as txn:
                return self.members.member_attr(txn, inode)
        return self._attr(self._inode(inode))

    @fuse_op
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        self._writable(inode)
        if fields.update_size:
            await self._truncate(inode, attr.st_size)
        with self.catalog.write() as txn:
            node = existing(txn, inode)
            t = now_ns()
            if fields.update_mode:
                node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                node.uid = attr.st_uid
            if fields.update_gid:
                node.gid = attr.st_gid
            if fields.update_atime:
                node.atime_ns = attr.st_atime_ns
            if fields.update_mtime:
                node.mtime_ns = attr.st_mtime_ns
            node.ctime_ns = attr.st_ctime_ns if fields.update_ctime else t
            txn.put_inode(node)
            return self._attr(node)

    async def _truncate(self, ino: int, size: int) -> None:
        await self.removals.removed(ino)  # a release's removal must not take the new data
        node = self._inode(ino)
        if node.is_dir:
            raise fail(errno.EISDIR)
        if not node.is_reg:
            raise fail(errno.EINVAL)
        opened = self.open_inodes.get(ino)
        if opened is not None:
            await self._wait_staged(opened, node.size)
            await trio.to_thread.run_sync(os.ftruncate, opened.fd, size, limiter=self.io_limiter)
            opened.sums = RunningChecksums(self.part_size) if size == 0 else None
        elif node.hsm_state == HsmState.RELEASED and size == 0:
            # Truncated too: a crash may have left the released data there.
            emptied = functools.partial(self.cache.truncate, create=True)
            await trio.to_thread.run_sync(emptied, ino, 0, limiter=self.io_limiter)
        else:
            # Open it for the truncate (staging a released file first): an open file is
            # never released under the truncate, and its release queues the migration.
            info = await self._open(ino, os.O_RDWR)
            try:
                await self._truncate(ino, size)
            finally:
                await self.release(info.fh)
            return
        with self.catalog.write() as txn:
            node = existing(txn, ino)
            node.size = size
            node.touch()
            self._mark_modified(node)
            txn.put_inode(node)
            if opened is None and self.migrator is not None:
                self.migrator.schedule_in(txn, ino)  # with the change that made it dirty

    def _mark_modified(self, inode: Inode) -> None:
        """File data changed: whatever copy the object store has is stale now."""
        self.data_versions[inode.ino] = self.data_versions.get(inode.ino, 0) + 1
        if inode.is_reg and inode.hsm_state != HsmState.LOST:
            inode.hsm_state = HsmState.DIRTY

    def _keep_checksums(self, opened: OpenInode) -> None:
        """Hand the checksums computed while writing to the migrator (valid for this data
        version of this daemon run only)."""
        sums, ino = opened.sums, opened.inode.ino
        usable = sums is not None and not sums.invalid and sums.length == opened.inode.size
        if usable:
            assert sums is not None
            crcs, md5 = sums.result()
            version = self.data_versions.get(ino, 0)
            self.written_checksums[ino] = (version, crcs, md5, sums.part_digests())
        else:
            self.written_checksums.pop(ino, None)

    def is_open(self, ino: int, *, writers: bool) -> bool:
        if not writers and ino in self.members.open_tars:
            return True  # a member of this tar is being read
        if not writers and self.opening[ino]:
            return True
        opened = self.open_inodes.get(ino)
        return opened is not None and (opened.writers > 0 or not writers)

    @fuse_op
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        with self.catalog.read() as txn:
            if is_member(inode):
                return self.members.readlink(txn, inode)
            target = txn.readlink(inode)
        if target is None:
            raise fail(errno.EINVAL)
        return target

    @fuse_op
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        inode = self._create_node(parent_inode, name, mode, ctx, rdev)
        if inode.is_reg:  # create() opens its file at once; a mknod'ed one may never be
            await trio.to_thread.run_sync(
                self.cache.create_empty, inode.ino, limiter=self.io_limiter
            )
        return self._remember(inode)

    @fuse_op
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        mode = stat.S_IFDIR | stat.S_IMODE(mode)
        return self._remember(self._create_node(parent_inode, name, mode, ctx))

    @fuse_op
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        check_name(name)
        self._writable(parent_inode)
        self._writable_names((parent_inode, name))
        with self.catalog.write() as txn:
            parent = existing(txn, parent_inode)
            if txn.lookup(parent_inode, name) is not None:
                raise fail(errno.EEXIST)
            _, gid = self._new_owner(parent, stat.S_IFLNK, ctx)
            inode = txn.new_inode(stat.S_IFLNK | 0o777, ctx.uid, gid)
            inode.size = len(target)
            txn.put_inode(inode)
            txn.set_symlink(inode.ino, target)
            txn.add_entry(parent_inode, name, inode.ino)
            parent.touch()
            txn.put_inode(parent)
        return self._remember(inode)

    @fuse_op
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        check_name(name)
        self._writable(parent_inode)
        self._writable_names((parent_inode, name))
        purge = None
        with self.catalog.write() as txn:
            parent = existing(txn, parent_inode)
            ino = txn.lookup(parent_inode, name)
            if ino is None:
                raise fail(errno.ENOENT)
            inode = existing(txn, ino)
            if inode.is_dir:
                raise fail(errno.EISDIR)
            txn.remove_entry(parent_inode, name)
            inode.nlink -= 1
            inode.touch(mtime=False)
            parent.touch()
            txn.put_inode(parent)
            txn.put_inode(inode)
            if inode.nlink == 0:
                purge = self._drop_link(txn, inode)
        self._purge(purge)

    @fuse_op
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        check_name(name)
        self._writable(parent_inode)
        self._writable_names((parent_inode, name))
        with self.catalog.write() as txn:
            parent = existing(txn, parent_inode)
            ino = txn.lookup(parent_inode, name)
            if ino is None:
                raise fail(errno.ENOENT)
            inode = existing(txn, ino)
            if not inode.is_dir:
                raise fail(errno.ENOTDIR)
            if txn.has_entries(ino):
                raise fail(errno.ENOTEMPTY)
            txn.remove_entry(parent_inode, name)
            inode.nlink = 0
            inode.touch(mtime=False)
            txn.put_inode(inode)
            parent.nlink -= 1
            parent.touch()
            txn.put_inode(parent)
            purge = self._drop_link(txn, inode)
        self._purge(purge)

    @fuse_op
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        check_name(name_old)
        check_name(name_new)
        self._writable(parent_inode_old, parent_inode_new)
        self._writable_names((parent_inode_old, name_old), (parent_inode_new, name_new))
        if flags & ~(pyfuse3.RENAME_NOREPLACE | pyfuse3.RENAME_EXCHANGE):
            raise fail(errno.EINVAL)
        purge = None
        with self.catalog.write() as txn:
            replaced = rename_entry(
                txn, parent_inode_old, name_old, parent_inode_new, name_new, flags
            )
            if replaced is not None:
                purge = self._drop_link(txn, replaced)
        self._purge(purge)

    @fuse_op
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        check_name(new_name)
        self._writable(inode, new_parent_inode)
        self._writable_names((new_parent_inode, new_name))
        with self.catalog.write() as txn:
            node = existing(txn, inode)
            if node.is_dir:
                raise fail(errno.EPERM)
            if node.nlink == 0:
                raise fail(errno.ENOENT)
            parent = existing(txn, new_parent_inode)
            if txn.lookup(new_parent_inode, new_name) is not None:
                raise fail(errno.EEXIST)
            txn.add_entry(new_parent_inode, new_name, inode)
            node.nlink += 1
            node.touch(mtime=False)
            parent.touch()
            txn.put_inode(node)
            txn.put_inode(parent)
        return self._remember(node)

    # -- directories --------------------------------------------------------------------
    @fuse_op
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if is_member(inode):
            return inode  # readdir answers ENOTDIR for a member that is not a directory
        if not self._inode(inode).is_dir:
            raise fail(errno.ENOTDIR)
        return inode

    @fuse_op
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        # Offsets are entry cookies: 1 and 2 are "." and "..", the rest grow with every
        # new entry, so a listing never repeats or skips an entry that stays.
        if is_member(fh):
            with self.catalog.read() as txn:
                self.members.readdir(txn, fh, start_id, token)
            return
        with self.catalog.read() as txn:
            directory = existing(txn, fh)
            if start_id < 1 and not pyfuse3.readdir_reply(token, b".", self._attr(directory), 1):
                return
            if start_id < 2:
                parent = existing(txn, directory.parent or fh)
                if not pyfuse3.readdir_reply(token, b"..", self._attr(parent), 2):
                    return
            for entry in txn.entries(fh, after_cookie=max(start_id, 2)):
                child = txn.get_inode(entry.ino)
                if child is None:
                    continue
                if not pyfuse3.readdir_reply(token, entry.name, self._attr(child), entry.cookie):
                    return
                self.lookups[entry.ino] = self.lookups.get(entry.ino, 0) + 1

    @fuse_op
    async def releasedir(self, fh: int) -> None:
        return None

    @fuse_op
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.sync()

    # -- files --------------------------------------------------------------------------
    @fuse_op
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if is_member(inode):
            fh = self._next_fh
            self._next_fh += 1
            await self.members.open(inode, flags, fh)
            return pyfuse3.FileInfo(fh=fh, keep_cache=True)
        return await self._open(inode, flags)

    async def _open(self, ino: int, flags: int) -> pyfuse3.FileInfo:
        node = self._inode(ino)
        if node.is_dir:
            raise fail(errno.EISDIR)
        if not node.is_reg:
            raise fail(errno.EINVAL)
        if node.hsm_state == HsmState.LOST:
            log.error("inode %d is lost (no valid copy in the cache or the object store)", ino)
            raise fail(errno.EIO)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        opened = self.open_inodes.get(ino)
        truncating = writable and flags & os.O_TRUNC
        if truncating and opened is None and node.hsm_state == HsmState.RELEASED:
            await self._truncate(ino, 0)  # none of the old data is wanted: no stage
            node = self._inode(ino)
        if opened is None or (opened.stage is not None and opened.stage.error is not None):
            opened = await self._open_data(ino, node)
        opened.handles += 1
        if writable and opened.writers == 0 and opened.inode.size == 0:
            opened.sums = RunningChecksums(self.part_size)  # new or emptied: hash as written
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(ino, writable)
        if writable:
            opened.writers += 1
            if opened.writers == 1:
                with self.catalog.write() as txn:
                    txn.add_to(b"open_writes", ino)
            try:
                await self._wait_staged(opened, node.size)  # a write needs all the old data
            except pyfuse3.FUSEError:
                await self.release(fh)
                raise
        if writable and flags & os.O_TRUNC and opened.inode.size:
            await self._truncate(ino, 0)
        self.last_open[ino] = now_ns()  # orders releases (LRU); atime stays POSIX (noatime)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    async def _open_data(self, ino: int, node: Inode) -> OpenInode:
        """Open the cache file of ``ino``, starting a stage first if it is released."""
        stage = None
        if node.hsm_state == HsmState.RELEASED:
            if self.stager is None:
                raise fail(errno.EIO)
            stage = self.stager.start(ino)
            await stage.wait_part()
            if stage.error is not None:
                raise fail(errno.EIO)
            try:
                fd = await trio.to_thread.run_sync(os.open, stage.part, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                # The stage is ending: its part file was renamed into place or discarded,
                # and the catalog says which only once it has ended.
                await stage.wait_ended()
                if not stage.done:
                    raise fail(errno.EIO) from None
                fd = await trio.to_thread.run_sync(self.cache.open, ino, limiter=self.io_limiter)
        else:
            self.opening[ino] += 1  # a release now would remove the file being opened
            try:
                await self.removals.removed(ino)
                # An empty file may have no cache file yet; one with data must have its own.
                fd = await trio.to_thread.run_sync(
                    functools.partial(self.cache.open, ino, create=node.size == 0),
                    limiter=self.io_limiter,
                )
            finally:
                self.opening[ino] -= 1
                if not self.opening[ino]:
                    del self.opening[ino]
        opened = self.open_inodes.get(ino)  # another open may have won the race
        if opened is None:
            with self.catalog.read() as txn:  # a stage may have finished during the awaits
                node = txn.get_inode(ino) or node
            opened = OpenInode(node, fd, stage=stage)
            self.open_inodes[ino] = opened
            self.catalog.live[ino] = node
        elif opened.stage is not None and opened.stage.error is not None:
            os.close(opened.fd)  # the part file of a failed stage: retry with the new one
            opened.fd, opened.stage = fd, stage
        else:
            os.close(fd)
        return opened

    async def _wait_staged(self, opened: OpenInode, end: int) -> None:
        """Wait until bytes [0, end) of a file being staged are here and verified."""
        stage = opened.stage
        if stage is None:
            return
        if stage.done:
            opened.stage = None
            return
        await stage.wait_for(end, self.config.hsm.stage_timeout)

    def on_staged(self, ino: int) -> None:
        opened = self.open_inodes.get(ino)
        if opened is not None and opened.stage is not None and opened.stage.done:
            opened.stage = None
        live = self.catalog.live.get(ino)
        if live is not None and live.hsm_state == HsmState.RELEASED:
            live.hsm_state = HsmState.ARCHIVED

    @fuse_op
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        inode = self._create_node(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode), ctx)
        attr = self._remember(inode)
        return await self._open(inode.ino, flags & ~os.O_TRUNC), attr

    @fuse_op
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        if fh in self.members.handles:
            return await self.members.read(fh, off, size)
        opened = self.open_inodes[self.handles[fh].ino]
        if opened.stage is not None:
            await self._wait_staged(opened, off + size)
        buf = bytearray(size)
        n = pread_nowait(opened.fd, buf, off)
        if n is None:
            n = await trio.to_thread.run_sync(
                pread_into, opened.fd, buf, off, limiter=self.io_limiter
            )
        data = memoryview(buf)[:n]
        self.counters["reads"] += 1
        self.counters["read_bytes"] += len(data)
        return data

    @fuse_op
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles[fh]
        opened = self.open_inodes[handle.ino]
        sums = opened.sums
        if sums is not None and off == sums.next_offset and not sums.invalid:
            sums.next_offset = off + len(buf)
            written = await trio.to_thread.run_sync(
                sums.write, opened.fd, buf, off, limiter=self.io_limiter
            )
        else:
            opened.sums = None
            written = await trio.to_thread.run_sync(
                os.pwrite, opened.fd, buf, off, limiter=self.io_limiter
            )
        inode = opened.inode
        inode.size = max(inode.size, off + written)
        inode.touch()
        self._mark_modified(inode)
        self.catalog.dirty.add(inode.ino)
        self.counters["writes"] += 1
        self.counters["written_bytes"] += written
        return written

    @fuse_op
    async def flush(self, fh: int) -> None:
        if fh in self.members.handles:
            return
        ino = self.handles[fh].ino
        if ino in self.catalog.dirty:
            with self.catalog.write() as txn:
                txn.put_inode(self.open_inodes[ino].inode)

    @fuse_op
    async def fsync(self, fh: int, datasync: bool) -> None:
        if fh in self.members.handles:
            return
        ino = self.handles[fh].ino
        opened = self.open_inodes[ino]
        sync = os.fdatasync if datasync else os.fsync
        await trio.to_thread.run_sync(sync, opened.fd, limiter=self.io_limiter)
        with self.catalog.write() as txn:
            txn.put_inode(opened.inode)
        await self.sync()

    @fuse_op
    async def release(self, fh: int) -> None:
        if fh in self.members.handles:
            self.members.release(fh)
            return
        handle = self.handles.pop(fh)
        ino = handle.ino
        opened = self.open_inodes[ino]
        opened.handles -= 1
        if handle.writable:
            opened.writers -= 1
        last_writer = handle.writable and opened.writers == 0
        if last_writer or opened.handles == 0:
            dirty = last_writer and opened.inode.hsm_state == HsmState.DIRTY
            migrator = self.migrator if dirty else None
            if migrator is not None:
                self._keep_checksums(opened)
            with self.catalog.write() as txn:
                txn.put_inode(opened.inode)
                if last_writer:
                    txn.remove_from(b"open_writes", ino)
                if migrator is not None:  # queued with the close: a crash keeps both or neither
                    migrator.schedule_in(txn, ino)
            if last_writer and self.spawn is not None:
                with self.catalog.read() as txn:
                    if is_tar_name(txn.path_of(ino)):
                        self.spawn(self.members.index, ino)
        if opened.handles == 0:
            del self.open_inodes[ino]
            self.catalog.live.pop(ino, None)
            # A close can wait for the disk (a flush, freeing an unlinked file's blocks).
            await trio.to_thread.run_sync(os.close, opened.fd, limiter=self.io_limiter)
            self._reap_if_unlinked(ino)

    # -- extended attributes ------------------------------------------------------------
    @fuse_op
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if is_member(inode):
            with self.catalog.read() as txn:
                return self.members.xattr(txn, inode, name)
        if name == b"user.hsm.tar":
            with self.catalog.read() as txn:
                return self.members.tar_xattr(txn, inode)
        if name.startswith(HSM_PREFIX):
            return self.hsm_attributes.get(self._inode(inode), name)
        with self.catalog.read() as txn:
            value = txn.get_xattr(inode, name)
        if value is None:
            raise fail(pyfuse3.ENOATTR)
        return value

    @fuse_op
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        self._writable(inode)
        if name.startswith(HSM_PREFIX):
            self.hsm_attributes.set(self._inode(inode), name, value)
            await self.removals.removed(inode)  # a release answers once the data is gone
            return
        check_storable(name, value)
        with self.catalog.write() as txn:
            node = existing(txn, inode)
            txn.set_xattr(inode, name, value)
            node.touch(mtime=False)
            txn.put_inode(node)

    @fuse_op
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if is_member(inode):
            return []
        with self.catalog.read() as txn:
            existing(txn, inode)
            return [name for name, _ in txn.xattrs(inode)]

    @fuse_op
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._writable(inode)
        if name.startswith(HSM_PREFIX):
            raise fail(errno.EPERM)
        with self.catalog.write() as txn:
            node = existing(txn, inode)
            if not txn.remove_xattr(inode, name):
                raise fail(pyfuse3.ENOATTR)
            node.touch(mtime=False)
            txn.put_inode(node)

    # -- whole file system --------------------------------------------------------------
    @fuse_op
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        return True  # the kernel checks permissions (default_permissions)

    @fuse_op
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = await trio.to_thread.run_sync(os.statvfs, self.cache.root)
        with self.catalog.read() as txn:
            inodes = txn.stats().inodes
        data = pyfuse3.StatvfsData()
        data.f_bsize = st.f_bsize
        data.f_frsize = st.f_frsize
        data.f_blocks = st.f_blocks
        data.f_bfree = st.f_bfree
        data.f_bavail = st.f_bavail
        data.f_files = inodes + st.f_ffree
        data.f_ffree = st.f_ffree
        data.f_favail = st.f_favail
        data.f_namemax = NAME_MAX
        return data

    async def sync(self) -> None:
        """Make every committed change durable (catalog and pending inode updates)."""
        self.catalog.flush_dirty()
        await trio.to_thread.run_sync(self.catalog.sync, limiter=self.io_limiter)

    def statistics(self) -> dict[str, Any]:
        with self.catalog.read() as txn:
            cat = txn.stats()
        return {
            "inodes": cat.inodes,
            "entries": cat.entries,
            "catalog_bytes": cat.used_bytes,
            "open_files": len(self.open_inodes),
            "open_handles": len(self.handles),
            "kernel_references": len(self.lookups),
            "unflushed_inodes": len(self.catalog.dirty),
            "orphans": cat.orphans,
            **self.removals.statistics(),
            **self.counters,
        }
