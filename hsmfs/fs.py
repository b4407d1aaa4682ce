"""The pyfuse3 Operations of hsmfs: thin handlers over the catalog and the resident data.

Every handler turns a failure into ``FUSEError(errno)`` (errnos.py). Focused modules do
the rest: resident.py every byte of file data (cache files, staging, member reads),
openfiles.py the open files, rename.py the catalog side of rename(2), xattrs.py the
``user.hsm.*`` attributes, members.py everything inside tars, migrator.py the HSM
policy. See CONCURRENCY.md for tasks, locks and invariants.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any

import pyfuse3
import trio

from .catalog import NAME_MAX, ROOT_INO, Catalog, HsmState, Inode, Txn, now_ns
from .config import Config
from .errnos import check_name, existing, fail, fuse_op
from .members import TarMembers, is_member, is_tar_name, split_ino
from .migrator import Migrator
from .openfiles import OpenFiles
from .rename import rename_entry
from .resident import ResidentData
from .xattrs import HSM_PREFIX, HsmAttributes, check_storable

log = logging.getLogger(__name__)

RESERVED_ROOT_NAME = b".hsmfs"  # hsmfs's own key space in the object store (snapshot.py)


class HsmFs(pyfuse3.Operations):
    """The file system of one mount: namespace and attributes from the catalog, data from
    the resident-data layer, tar members from ``TarMembers``, HSM attributes and actions
    from ``HsmAttributes``; a closed dirty file is queued with the ``Migrator``.

    Every collaborator is built before and passed in (mount.py); the file system keeps
    only the kernel's references (``lookups``) and the open files."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(
        self,
        catalog: Catalog,
        config: Callable[[], Config],
        resident: ResidentData,
        migrator: Migrator,
        members: TarMembers,
        attributes: HsmAttributes,
        open_files: OpenFiles,
        spawn: Callable[..., None],
    ) -> None:
        super().__init__()
        self.catalog = catalog
        self._config = config  # the daemon's current configuration (reloadable)
        self.resident = resident
        self.migrator = migrator
        self.members = members
        self.hsm_attributes = attributes
        self.open_files = open_files
        self.spawn = spawn  # starts a background task (a tar's indexing)
        self.lookups: dict[int, int] = {}
        self.counters: dict[str, int] = {
            "reads": 0,
            "writes": 0,
            "read_bytes": 0,
            "written_bytes": 0,
        }

    @property
    def config(self) -> Config:
        return self._config()

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

    def _check_new_names(self, *names: tuple[int, bytes]) -> None:
        """Names a request would create: ``NAME.tar!MEMBER`` is the syntax of tar members
        (EROFS inside an existing tar, EPERM before it exists: such a file would hide the
        member later), and ``/.hsmfs`` is hsmfs's own name in the object store (EPERM)."""
        for parent, name in names:
            if parent == ROOT_INO and name == RESERVED_ROOT_NAME:
                log.warning("refused to create /%s: the name is reserved for hsmfs's catalog "
                            "snapshots in the object store; choose another name",
                            name.decode())  # fmt: skip
                raise fail(errno.EPERM)
            tar_name, bang, _ = name.partition(b"!")
            if bang and is_tar_name(tar_name):
                with self.catalog.read() as txn:
                    if self.members.names_member(txn, parent, name):
                        raise fail(errno.EROFS)
                log.warning("refused to create %r: NAME.tar!MEMBER names are reserved for the "
                            "members of tar archives", name.decode(errors="replace"))  # fmt: skip
                raise fail(errno.EPERM)

    def _check_real_entry(self, parent: int, name: bytes) -> None:
        """A name a request removes or moves: a member of a tar is read-only, a real entry
        of that name (even ``NAME.tar!X``, made before such names were reserved) is not."""
        if b"!" in name:
            with self.catalog.read() as txn:
                real = txn.lookup(parent, name) is not None
                if not real and self.members.names_member(txn, parent, name):
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
        return ino in self.lookups or ino in self.open_files.inodes

    def _drop_link(self, txn: Txn, inode: Inode) -> int | None:
        """After nlink reached 0: delete now (returns the inode for ``_purge``), or park it
        as orphan until the kernel forgets it. The object goes after the next snapshot."""
        if self._in_use(inode.ino):
            txn.add_to(b"orphans", inode.ino)
            return None
        txn.delete_inode(inode.ino)
        return inode.ino

    def _purge(self, deleted: int | None) -> None:
        """Remove the cache data of a deleted inode (off the trio thread; inode numbers are
        never reused, and recovery removes what a crash left behind)."""
        if deleted is not None:
            self.resident.discard(deleted)

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
        self._check_new_names((parent_ino, name))
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
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
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
            txn.delete_inode(ino)
        self._purge(ino)

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
        node = self._inode(ino)
        if node.is_dir:
            raise fail(errno.EISDIR)
        if not node.is_reg:
            raise fail(errno.EINVAL)
        opened = self.open_files.inodes.get(ino)
        if opened is not None:
            await opened.data.truncate(size, node.size)
        elif node.hsm_state == HsmState.RELEASED and size == 0:
            await self.resident.empty_released(ino)  # none of the old data is wanted
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
            self.resident.modified(node)
            txn.put_inode(node)
            if opened is None:
                self.migrator.schedule_in(txn, ino)  # with the change that made it dirty

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
            file = await self.resident.open(inode.ino, create=True)
            await self.resident.close(file)
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
        self._check_new_names((parent_inode, name))
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
        self._check_real_entry(parent_inode, name)
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
        self._check_real_entry(parent_inode, name)
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
        self._check_real_entry(parent_inode_old, name_old)
        self._check_new_names((parent_inode_new, name_new))
        if flags & pyfuse3.RENAME_EXCHANGE:  # the old name receives the other entry
            self._check_real_entry(parent_inode_new, name_new)
            self._check_new_names((parent_inode_old, name_old))
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
        self._check_new_names((new_parent_inode, new_name))
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
            fh = self.open_files.new_fh()
            await self.members.open(inode, flags, fh)
            return pyfuse3.FileInfo(fh=fh, keep_cache=True)
        return await self._open(inode, flags)

    async def _open(self, ino: int, flags: int) -> pyfuse3.FileInfo:
        node = self._inode(ino)
        if node.is_dir:
            raise fail(errno.EISDIR)
        if not node.is_reg:
            raise fail(errno.EINVAL)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        truncating = writable and flags & os.O_TRUNC
        if truncating and ino not in self.open_files.inodes:
            if node.hsm_state == HsmState.RELEASED:
                await self._truncate(ino, 0)  # none of the old data is wanted: no stage
                node = self._inode(ino)
        data = await self.resident.open(ino, create=node.size == 0)
        opened = self.open_files.inodes.get(ino)
        if opened is None:
            with self.catalog.read() as txn:  # a stage may have finished during the await
                node = txn.get_inode(ino) or node
            self.catalog.live[ino] = node
        else:
            node = opened.inode
        first_writer = writable and (opened is None or opened.writers == 0)
        fh, opened = self.open_files.add(node, data, writable)
        if first_writer and node.size == 0:
            data.hash_from_start()  # new or emptied: hash it as it is written
        if first_writer:
            with self.catalog.write() as txn:
                txn.add_to(b"open_writes", ino)
        if writable:
            try:
                await data.ready(node.size)  # a write needs all the old data
            except pyfuse3.FUSEError:
                await self.release(fh)
                raise
            if flags & os.O_TRUNC and node.size:
                await self._truncate(ino, 0)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    @fuse_op
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        inode = self._create_node(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode), ctx)
        attr = self._remember(inode)
        return await self._open(inode.ino, flags & ~os.O_TRUNC), attr

    @fuse_op  # pyfuse3 takes any buffer; its stub says bytes (a copy we do not make)
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        if fh in self.members.handles:
            return await self.members.read(fh, off, size)
        data = await self.open_files.of(fh).data.read(off, size)
        self.counters["reads"] += 1
        self.counters["read_bytes"] += len(data)
        return data

    @fuse_op
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        opened = self.open_files.of(fh)
        try:
            written = await opened.data.write(off, buf)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self.migrator.wake_release()  # what is archived may go now, not later
            raise
        inode = opened.inode
        inode.size = max(inode.size, off + written)
        inode.touch()
        self.resident.modified(inode)
        self.catalog.dirty.add(inode.ino)
        self.counters["writes"] += 1
        self.counters["written_bytes"] += written
        return written

    @fuse_op
    async def flush(self, fh: int) -> None:
        if fh in self.members.handles:
            return
        ino = self.open_files.handles[fh].ino
        if ino in self.catalog.dirty:
            with self.catalog.write() as txn:
                txn.put_inode(self.open_files.inodes[ino].inode)

    @fuse_op
    async def fsync(self, fh: int, datasync: bool) -> None:
        if fh in self.members.handles:
            return
        opened = self.open_files.of(fh)
        await opened.data.sync(datasync)
        with self.catalog.write() as txn:
            txn.put_inode(opened.inode)
        await self.sync()

    @fuse_op
    async def release(self, fh: int) -> None:
        if fh in self.members.handles:
            await self.members.release(fh)
            return
        handle, opened = self.open_files.remove(fh)
        ino = handle.ino
        last_writer = handle.writable and opened.writers == 0
        if last_writer or opened.handles == 0:
            dirty = last_writer and opened.inode.hsm_state == HsmState.DIRTY
            if dirty:
                opened.data.keep_checksums(opened.inode.size)
            with self.catalog.write() as txn:
                txn.put_inode(opened.inode)
                if last_writer:
                    txn.remove_from(b"open_writes", ino)
                if dirty:  # queued with the close: a crash keeps both or neither
                    self.migrator.schedule_in(txn, ino)
            if last_writer:
                with self.catalog.read() as txn:
                    if is_tar_name(txn.path_of(ino)):
                        self.spawn(self.members.index, ino)
        if opened.handles == 0:
            self.catalog.live.pop(ino, None)
        await self.resident.close(opened.data)
        if opened.handles == 0:
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
            await self.hsm_attributes.set(self._inode(inode), name, value)
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
        st = await trio.to_thread.run_sync(os.statvfs, self.resident.cache.root)
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
        await trio.to_thread.run_sync(self.catalog.sync, limiter=self.resident.io_limiter)

    def statistics(self) -> dict[str, Any]:
        with self.catalog.read() as txn:
            cat = txn.stats()
        return {
            "inodes": cat.inodes,
            "entries": cat.entries,
            "catalog_bytes": cat.used_bytes,
            **self.open_files.statistics(),
            "kernel_references": len(self.lookups),
            "unflushed_inodes": len(self.catalog.dirty),
            "orphans": cat.orphans,
            **self.resident.removals.statistics(),
            **self.counters,
        }
