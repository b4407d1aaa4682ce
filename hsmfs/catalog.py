"""The LMDB catalog: inodes, directory entries, extended attributes and HSM bookkeeping.

Schema (format version ``CATALOG_VERSION``); every key that holds an inode number is
8 bytes big-endian, so LMDB's byte order is numeric order:

===============  ============================  ==========================================
sub-database     key                           value
===============  ============================  ==========================================
``meta``         ``version`` ``next_ino``      ascii integers; ``clean`` is b"1" while
                 ``next_cookie`` ``clean``     no daemon has the catalog open
``inodes``       ino                           ``Inode`` packed with ``_INODE``
``dentries``     parent ino + name             child ino + cookie
``cookies``      parent ino + cookie           name; readdir walks this in cookie order,
                                               so offsets stay valid while entries come
                                               and go
``xattrs``       ino + name                    value (``user.hsm.*`` never stored here)
``symlinks``     ino                           target
``orphans``      ino                           b"" - unlinked while still open or known
                                               to the kernel; removed at the next mount
``open_writes``  ino                           b"" - open for writing; after a crash the
                                               size is taken from the cache file
``names``        ino                           parent ino + name of one link (the first,
                                               until it is removed), so a file's path
                                               (its object key) is known
``other_links``  ino + parent ino + name       b"" - every other link of a hard-linked
                                               file; when the ``names`` link goes, the
                                               first of these takes its place
``staging``      ino                           b"" - being staged; a partial cache file
                                               (``.part``) is discarded at the next mount
``hsm``          ino                           JSON: object key, md5, size, etag, block
                                               CRCs, archived_at
``keys``         object key (utf-8)            ino whose ``hsm`` record holds that key:
                                               no upload may overwrite another file's copy
``deletions``    object key (utf-8)            b"" - an object no record holds any more,
                                               deleted once a snapshot without it is
                                               stored (so no snapshot names a deleted
                                               object)
``queue``        ino                           due time (ns) + idle-since time (ns):
                                               migration queue, survives restarts. With an
                                               idle-since time (the file's last close), the
                                               due time is that + ``migrate_after`` and
                                               moves with it; without (0, or format 2's
                                               8-byte value) it is fixed: a retry, an
                                               explicit archive
``tars``         tar ino                       JSON: member count, "invalid" reason
``members``      tarindex.member_key           ordinal (4 bytes) + tarindex member record
``member_paths`` tar ino + ordinal (4 bytes)   member path; ordinal 0 is the tar's root.
                                               A member's inode is members.member_ino()
===============  ============================  ==========================================

Change log:

1. first format.
2. ``other_links``, so a hard-linked file keeps a name (and an object key) when its first
   link is removed.
3. ``queue`` values carry the idle-since time, so a new ``migrate_after`` moves the due
   times of queued files (older 8-byte values stay valid, as fixed due times).
4. ``keys`` and ``deletions``: an upload never takes another file's object key (a file
   renamed after migration keeps its object under the old name), and objects of deleted
   or re-keyed files are deleted only after a snapshot that no longer names them.

An older catalog is upgraded in place when it is opened for writing (``upgrade``).

Every public method of ``Txn`` does a few dictionary-sized operations; callers group the
operations of one file system request into one ``Catalog.write()`` transaction and never
``await`` inside it, so a request is atomic.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import lmdb

from .errors import CatalogError

log = logging.getLogger(__name__)

CATALOG_VERSION = 4
ROOT_INO = 1
FIRST_COOKIE = 3  # 1 and 2 are "." and ".."
NAME_MAX = 255

_U64 = struct.Struct(">Q")
_U64_PAIR = struct.Struct(">QQ")
_INODE = struct.Struct("<IIIIQQqqqQBB")
_SUB_DBS = (
    b"meta",
    b"inodes",
    b"dentries",
    b"cookies",
    b"xattrs",
    b"symlinks",
    b"orphans",
    b"open_writes",
    b"hsm",
    b"queue",
    b"names",
    b"other_links",
    b"staging",
    b"tars",
    b"members",
    b"member_paths",
    b"keys",
    b"deletions",
)


class HsmState(IntEnum):
    """The HSM state of a regular file (Lustre HSM's model)."""

    NONE = 0  # not a regular file
    DIRTY = 1  # local data not yet in the object store
    ARCHIVED = 2  # resident, with a verified copy in the object store
    RELEASED = 3  # only in the object store
    LOST = 4  # the copy is missing or fails its checksum


class HsmFlag(IntEnum):
    NORELEASE = 1
    NOARCHIVE = 2


def u64(value: int) -> bytes:
    return _U64.pack(value)


def now_ns() -> int:
    return time.time_ns()


@dataclass(slots=True)
class Inode:
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int = 0
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    parent: int = 0  # directories only: the inode of "..", kept for lookups of ".."
    hsm_state: int = HsmState.NONE
    hsm_flags: int = 0

    def pack(self) -> bytes:
        return _INODE.pack(
            self.mode,
            self.nlink,
            self.uid,
            self.gid,
            self.rdev,
            self.size,
            self.atime_ns,
            self.mtime_ns,
            self.ctime_ns,
            self.parent,
            self.hsm_state,
            self.hsm_flags,
        )

    @classmethod
    def unpack(cls, ino: int, data: bytes) -> Inode:
        return cls(ino, *_INODE.unpack(data))

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    def touch(self, *, mtime: bool = True, ctime: bool = True) -> None:
        t = now_ns()
        if mtime:
            self.mtime_ns = t
        if ctime:
            self.ctime_ns = t


@dataclass(slots=True)
class Entry:
    name: bytes
    ino: int
    cookie: int


@dataclass
class CatalogStats:
    inodes: int
    entries: int
    xattrs: int
    orphans: int
    open_writes: int
    queued: int
    map_bytes: int
    used_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


class Txn:
    """One LMDB transaction with typed accessors; see the module docstring for the schema."""

    def __init__(self, catalog: Catalog, txn: lmdb.Transaction) -> None:
        self._c = catalog
        self._t = txn

    # -- meta ---------------------------------------------------------------------------
    def meta(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = self._t.get(key, db=self._c.db[b"meta"])
        return default if value is None else bytes(value)

    def set_meta(self, key: bytes, value: bytes) -> None:
        self._t.put(key, value, db=self._c.db[b"meta"])

    def _counter(self, key: bytes) -> int:
        value = int(self.meta(key) or b"0")
        self.set_meta(key, str(value + 1).encode())
        return value

    # -- inodes -------------------------------------------------------------------------
    def get_inode(self, ino: int) -> Inode | None:
        live = self._c.live.get(ino)
        if live is not None:
            return live
        data = self._t.get(u64(ino), db=self._c.db[b"inodes"])
        return None if data is None else Inode.unpack(ino, bytes(data))

    def put_inode(self, inode: Inode) -> None:
        self._t.put(u64(inode.ino), inode.pack(), db=self._c.db[b"inodes"])
        self._c.dirty.discard(inode.ino)

    def set_hsm_state(
        self, ino: int, state: HsmState, *, only_from: HsmState | None = None
    ) -> bool:
        """Move a file to ``state`` (only if it is in ``only_from``, when given); False if
        it is gone or was in another state."""
        inode = self.get_inode(ino)
        if inode is None or (only_from is not None and inode.hsm_state != only_from):
            return False
        inode.hsm_state = state
        self.put_inode(inode)
        return True

    def new_inode(self, mode: int, uid: int, gid: int, rdev: int = 0, parent: int = 0) -> Inode:
        t = now_ns()
        inode = Inode(
            ino=self._counter(b"next_ino"),
            mode=mode,
            nlink=2 if stat.S_ISDIR(mode) else 1,
            uid=uid,
            gid=gid,
            rdev=rdev,
            atime_ns=t,
            mtime_ns=t,
            ctime_ns=t,
            parent=parent,
            hsm_state=HsmState.DIRTY if stat.S_ISREG(mode) else HsmState.NONE,
        )
        self.put_inode(inode)
        return inode

    def delete_inode(self, ino: int) -> None:
        """Remove an inode and everything hanging off it (not its directory entries); its
        object in the store is deleted after the next snapshot (``deletions``)."""
        self._release_key(ino, self.hsm_record(ino).get("key"))
        key = u64(ino)
        for name in [b"inodes", b"symlinks", b"orphans", b"open_writes", b"hsm", b"queue",
                     b"names", b"staging"]:  # fmt: skip
            self._t.delete(key, db=self._c.db[name])
        for name, _ in list(self.xattrs(ino)):
            self._t.delete(key + name, db=self._c.db[b"xattrs"])
        self.delete_prefix(b"other_links", key)
        self.delete_prefix(b"members", key)
        self.delete_prefix(b"member_paths", key)
        self._t.delete(key, db=self._c.db[b"tars"])
        self._c.dirty.discard(ino)

    def delete_prefix(self, db_name: bytes, prefix: bytes) -> None:
        with self._t.cursor(db=self._c.db[db_name]) as cur:
            if not cur.set_range(prefix):
                return
            while cur.key()[: len(prefix)] == prefix:
                if not cur.delete():
                    return

    def scan_prefix(self, db_name: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._t.cursor(db=self._c.db[db_name]) as cur:
            if not cur.set_range(prefix):
                return
            for key, value in cur:
                if key[: len(prefix)] != prefix:
                    return
                yield bytes(key), bytes(value)

    def get_raw(self, db_name: bytes, key: bytes) -> bytes | None:
        value = self._t.get(key, db=self._c.db[db_name])
        return None if value is None else bytes(value)

    def put_raw(self, db_name: bytes, key: bytes, value: bytes) -> None:
        self._t.put(key, value, db=self._c.db[db_name])

    def delete_raw(self, db_name: bytes, key: bytes) -> None:
        self._t.delete(key, db=self._c.db[db_name])

    def inodes(self) -> Iterator[Inode]:
        with self._t.cursor(db=self._c.db[b"inodes"]) as cur:
            for key, value in cur:
                yield Inode.unpack(_U64.unpack(key)[0], bytes(value))

    # -- directory entries --------------------------------------------------------------
    def lookup(self, parent: int, name: bytes) -> int | None:
        value = self._t.get(u64(parent) + name, db=self._c.db[b"dentries"])
        return None if value is None else _U64_PAIR.unpack(value)[0]

    def add_entry(self, parent: int, name: bytes, ino: int) -> None:
        cookie = self._counter(b"next_cookie")
        self._t.put(u64(parent) + name, _U64_PAIR.pack(ino, cookie), db=self._c.db[b"dentries"])
        self._t.put(_U64_PAIR.pack(parent, cookie), name, db=self._c.db[b"cookies"])
        self.record_link(ino, u64(parent) + name)

    def remove_entry(self, parent: int, name: bytes) -> int:
        key = u64(parent) + name
        value = self._t.pop(key, db=self._c.db[b"dentries"])
        if value is None:
            raise KeyError(name)
        ino, cookie = _U64_PAIR.unpack(value)
        self._t.delete(_U64_PAIR.pack(parent, cookie), db=self._c.db[b"cookies"])
        self._remove_link(ino, key)
        return ino

    def record_link(self, ino: int, link: bytes) -> None:
        """Record ``link`` (parent ino + name) of ``ino``: its name if it has none yet."""
        names = self._c.db[b"names"]
        if not self._t.put(u64(ino), link, db=names, overwrite=False):
            if self._t.get(u64(ino), db=names) != link:
                self._t.put(u64(ino) + link, b"", db=self._c.db[b"other_links"])

    def _remove_link(self, ino: int, link: bytes) -> None:
        """Forget ``link``; if it was the inode's name, another of its links takes over."""
        prefix = u64(ino)
        if self._t.get(prefix, db=self._c.db[b"names"]) != link:
            self._t.delete(prefix + link, db=self._c.db[b"other_links"])
            return
        self._t.delete(prefix, db=self._c.db[b"names"])
        with self._t.cursor(db=self._c.db[b"other_links"]) as cur:
            if cur.set_range(prefix) and cur.key()[:8] == prefix:
                successor = bytes(cur.key()[8:])
                cur.delete()
                self._t.put(prefix, successor, db=self._c.db[b"names"])

    def first_link(self, ino: int) -> tuple[int, bytes] | None:
        """(parent, name) of the link that names an inode (its first link, or the one that
        took over when that was removed), or None if it has no link."""
        value = self._t.get(u64(ino), db=self._c.db[b"names"])
        return None if value is None else (_U64.unpack(value[:8])[0], bytes(value[8:]))

    def path_of(self, ino: int) -> str | None:
        """The path of an inode's ``first_link`` below the root, or None if it has none."""
        parts: list[bytes] = []
        while ino != ROOT_INO:
            link = self.first_link(ino)
            if link is None or len(parts) > 4096:
                return None
            ino = link[0]
            parts.append(link[1])
        return b"/".join(reversed(parts)).decode("utf-8", "surrogateescape")

    def entries(self, parent: int, after_cookie: int = 0) -> Iterator[Entry]:
        """Entries of a directory in cookie order, starting after ``after_cookie``."""
        prefix = u64(parent)
        with self._t.cursor(db=self._c.db[b"cookies"]) as cur:
            if not cur.set_range(_U64_PAIR.pack(parent, after_cookie + 1)):
                return
            for key, name in cur:
                if key[:8] != prefix:
                    return
                cookie = _U64_PAIR.unpack(key)[1]
                ino = self.lookup(parent, bytes(name))
                if ino is not None:
                    yield Entry(bytes(name), ino, cookie)

    def has_entries(self, parent: int) -> bool:
        return next(self.entries(parent), None) is not None

    def all_entries(self) -> Iterator[tuple[int, Entry]]:
        with self._t.cursor(db=self._c.db[b"dentries"]) as cur:
            for key, value in cur:
                ino, cookie = _U64_PAIR.unpack(value)
                yield _U64.unpack(key[:8])[0], Entry(bytes(key[8:]), ino, cookie)

    def all_cookies(self) -> Iterator[tuple[int, int, bytes]]:
        with self._t.cursor(db=self._c.db[b"cookies"]) as cur:
            for key, name in cur:
                parent, cookie = _U64_PAIR.unpack(key)
                yield parent, cookie, bytes(name)

    def delete_cookie(self, parent: int, cookie: int) -> None:
        self._t.delete(_U64_PAIR.pack(parent, cookie), db=self._c.db[b"cookies"])

    def delete_dentry(self, parent: int, name: bytes) -> None:
        self._t.delete(u64(parent) + name, db=self._c.db[b"dentries"])

    # -- symlinks and xattrs ------------------------------------------------------------
    def readlink(self, ino: int) -> bytes | None:
        value = self._t.get(u64(ino), db=self._c.db[b"symlinks"])
        return None if value is None else bytes(value)

    def set_symlink(self, ino: int, target: bytes) -> None:
        self._t.put(u64(ino), target, db=self._c.db[b"symlinks"])

    def get_xattr(self, ino: int, name: bytes) -> bytes | None:
        value = self._t.get(u64(ino) + name, db=self._c.db[b"xattrs"])
        return None if value is None else bytes(value)

    def set_xattr(self, ino: int, name: bytes, value: bytes) -> None:
        self._t.put(u64(ino) + name, value, db=self._c.db[b"xattrs"])

    def remove_xattr(self, ino: int, name: bytes) -> bool:
        return bool(self._t.delete(u64(ino) + name, db=self._c.db[b"xattrs"]))

    def xattrs(self, ino: int) -> Iterator[tuple[bytes, bytes]]:
        prefix = u64(ino)
        with self._t.cursor(db=self._c.db[b"xattrs"]) as cur:
            if not cur.set_range(prefix):
                return
            for key, value in cur:
                if key[:8] != prefix:
                    return
                yield bytes(key[8:]), bytes(value)

    # -- sets of inodes: orphans, open for writing --------------------------------------
    def add_to(self, set_name: bytes, ino: int) -> None:
        self._t.put(u64(ino), b"", db=self._c.db[set_name])

    def remove_from(self, set_name: bytes, ino: int) -> None:
        self._t.delete(u64(ino), db=self._c.db[set_name])

    def members(self, set_name: bytes) -> list[int]:
        with self._t.cursor(db=self._c.db[set_name]) as cur:
            return [_U64.unpack(key)[0] for key in cur.iternext(keys=True, values=False)]

    # -- migration queue ------------------------------------------------------------------
    def enqueue(self, ino: int, due_ns: int, idle_since_ns: int = 0) -> None:
        """Queue a migration at ``due_ns``; with ``idle_since_ns`` (when the file was last
        closed) the due time is that + migrate_after, and ``reschedule_idle`` moves it."""
        self._t.put(u64(ino), _U64_PAIR.pack(due_ns, idle_since_ns), db=self._c.db[b"queue"])

    def dequeue(self, ino: int) -> None:
        self._t.delete(u64(ino), db=self._c.db[b"queue"])

    def queue(self) -> list[tuple[int, int]]:
        """(ino, due time in ns) of every queued migration."""
        with self._t.cursor(db=self._c.db[b"queue"]) as cur:
            return [(_U64.unpack(k)[0], _U64.unpack(v[:8])[0]) for k, v in cur]

    def reschedule_idle(self, delay_ns: int) -> int:
        """Make the due time of every file queued for being idle its idle-since time +
        ``delay_ns`` (a new migrate_after); fixed due times stay. Returns how many moved."""
        moved = []
        with self._t.cursor(db=self._c.db[b"queue"]) as cur:
            for key, value in cur:
                if len(value) != _U64_PAIR.size:
                    continue  # format 2: a fixed due time
                due, idle_since = _U64_PAIR.unpack(value)
                if idle_since and due != idle_since + delay_ns:
                    moved.append((bytes(key), _U64_PAIR.pack(idle_since + delay_ns, idle_since)))
        for key, value in moved:
            self._t.put(key, value, db=self._c.db[b"queue"])
        return len(moved)

    # -- HSM records --------------------------------------------------------------------
    def hsm_record(self, ino: int) -> dict[str, Any]:
        value = self._t.get(u64(ino), db=self._c.db[b"hsm"])
        return {} if value is None else json.loads(bytes(value))

    def set_hsm_record(self, ino: int, record: dict[str, Any]) -> None:
        """Record the copy of ``ino``; its object key becomes the file's own (``keys``),
        and a different key it had before goes to ``deletions``."""
        old = self.hsm_record(ino).get("key")
        new = record.get("key")
        if old != new:
            self._release_key(ino, old)
        if new:
            self._t.put(new.encode(), u64(ino), db=self._c.db[b"keys"])
            self.forget_delete(new)  # the object under it is this file's copy now
        self._t.put(u64(ino), json.dumps(record, sort_keys=True).encode(), db=self._c.db[b"hsm"])

    def _release_key(self, ino: int, key: str | None) -> None:
        """``ino`` no longer holds ``key``: its object goes after the next snapshot."""
        if key and self.key_owner(key) == ino:
            self._t.delete(key.encode(), db=self._c.db[b"keys"])
            self.defer_delete(key)

    def key_owner(self, key: str) -> int | None:
        """The inode whose copy is the object under ``key``, if any."""
        value = self._t.get(key.encode(), db=self._c.db[b"keys"])
        return None if value is None else _U64.unpack(value)[0]

    def defer_delete(self, key: str) -> None:
        self._t.put(key.encode(), b"", db=self._c.db[b"deletions"])

    def forget_delete(self, key: str) -> None:
        self._t.delete(key.encode(), db=self._c.db[b"deletions"])

    def is_deferred(self, key: str) -> bool:
        return self._t.get(key.encode(), db=self._c.db[b"deletions"]) is not None

    def deferred_deletes(self) -> list[str]:
        """Object keys waiting for a snapshot that no longer names them."""
        with self._t.cursor(db=self._c.db[b"deletions"]) as cur:
            return [bytes(k).decode() for k in cur.iternext(keys=True, values=False)]

    def stats(self) -> CatalogStats:
        def count(name: bytes) -> int:
            return int(self._t.stat(self._c.db[name])["entries"])

        info = self._c.env.info()
        st = self._c.env.stat()
        return CatalogStats(
            inodes=count(b"inodes"),
            entries=count(b"dentries"),
            xattrs=count(b"xattrs"),
            orphans=count(b"orphans"),
            open_writes=count(b"open_writes"),
            queued=count(b"queue"),
            map_bytes=int(info["map_size"]),
            used_bytes=int((info["last_pgno"] + 1) * st["psize"]),
        )

    @property
    def raw(self) -> lmdb.Transaction:
        return self._t

    def db(self, name: bytes) -> Any:
        return self._c.db[name]


class Catalog:
    """The LMDB environment of one hsmfs state directory.

    Commits are not fsync'd (``sync=False``): they reach the kernel's page cache, which a
    killed daemon cannot lose, and ``sync()`` makes them durable where POSIX asks for it
    (fsync, fsyncdir, unmount, and a periodic timer).

    ``live`` holds the in-memory ``Inode`` of every open file; ``get_inode`` returns that
    object so that writes can update size and times without a transaction each, and
    ``dirty`` names the live inodes whose changes are not yet committed.
    """

    def __init__(self, path: Path, *, map_size: int = 1 << 40, readonly: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self.env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(_SUB_DBS) + 4,
                sync=False,
                metasync=False,
                readahead=False,
                readonly=readonly,
                max_spare_txns=4,
            )
        except lmdb.Error as exc:
            raise CatalogError(
                f"cannot open the catalog in {path}: {exc}; check the path and permissions"
            ) from exc
        self.db = {name: self.env.open_db(name, create=not readonly) for name in _SUB_DBS}
        self.live: dict[int, Inode] = {}
        self.dirty: set[int] = set()
        if not readonly:
            self._format_if_new()

    def _format_if_new(self) -> None:
        with self.write() as txn:
            version = txn.meta(b"version")
            if version is None:
                txn.set_meta(b"version", str(CATALOG_VERSION).encode())
                txn.set_meta(b"next_ino", str(ROOT_INO).encode())
                txn.set_meta(b"next_cookie", str(FIRST_COOKIE).encode())
                txn.set_meta(b"clean", b"1")
                root = txn.new_inode(stat.S_IFDIR | 0o755, os.getuid(), os.getgid())
                root.parent = ROOT_INO
                txn.put_inode(root)
            elif int(version) < CATALOG_VERSION:
                upgrade(txn, int(version))
                log.info("catalog in %s upgraded from format version %d to %d",
                         self.path, int(version), CATALOG_VERSION)  # fmt: skip
            elif int(version) != CATALOG_VERSION:
                raise CatalogError(
                    f"the catalog in {self.path} has format version {int(version)}, this hsmfs "
                    f"reads version {CATALOG_VERSION}; use the matching hsmfs release"
                )
        self.sync()

    @contextmanager
    def write(self) -> Iterator[Txn]:
        with self.env.begin(write=True) as txn:
            yield Txn(self, txn)

    @contextmanager
    def read(self) -> Iterator[Txn]:
        with self.env.begin(buffers=False) as txn:
            yield Txn(self, txn)

    def flush_dirty(self) -> int:
        """Commit every live inode with uncommitted changes; returns how many."""
        if not self.dirty:
            return 0
        with self.write() as txn:
            todo = [self.live[ino] for ino in self.dirty if ino in self.live]
            for inode in todo:
                txn.put_inode(inode)
            self.dirty.clear()
        return len(todo)

    def sync(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        self.env.close()


def upgrade(txn: Txn, version: int) -> None:
    """Bring a catalog of format ``version`` to ``CATALOG_VERSION``, step by step."""
    if version < 2:
        # Index every link of hard-linked files; a file whose first link was removed under
        # format 1 had no name left, and one of its links becomes it.
        for parent, entry in list(txn.all_entries()):
            txn.record_link(entry.ino, u64(parent) + entry.name)
    # 3 only adds a longer form of queue values; the old form stays valid.
    if version < 4:
        # Index the object key of every copy. Two files holding one key (a file renamed
        # after migration, another migrated under its old name) share one object, which
        # the later upload overwrote: the first keeps it, the other is lost to the store.
        with txn.raw.cursor(db=txn.db(b"hsm")) as cur:
            records = [(_U64.unpack(k)[0], json.loads(bytes(v))) for k, v in cur]
        for ino, record in records:
            key = record.get("key")
            if not key:
                continue
            owner = txn.key_owner(key)
            if owner is None:
                txn.raw.put(key.encode(), u64(ino), db=txn.db(b"keys"))
            else:
                log.warning(
                    "inodes %d and %d both hold object %s; run `hsmctl recheck` on "
                    "the files, one of them no longer has its copy",
                    owner,
                    ino,
                    key,
                )
    txn.set_meta(b"version", str(CATALOG_VERSION).encode())
