"""Tar archives open as directories: ``NAME.tar!MEMBER`` paths, read-only members.

A tar is indexed (hsmfs.tarindex) when it is closed after writing; its members go into
the catalog with an ordinal each, and a member's inode number is ``member_ino(tar,
ordinal)`` - stable across mounts, and recognisable by its high bit. ``NAME.tar!`` is
the tar's root directory; ``NAME.tar!REST`` looks REST up in that root, so
``NAME.tar!DIR/FILE`` resolves through ordinary lookups.

Reads go through the resident-data layer (resident.py): a resident tar is read at the
member's offset; for a released tar the first read of a member fetches just that member
with a ranged GET (checked against its MD5 before any byte is served) and starts a
background stage of the whole tar, whose verified prefix then serves the following
members. Concurrent readers of a member share a fetch.

Symlink members read as relative targets that stay inside the tar wherever the mount
is: ``../`` once per directory between the link and the tar's real directory, then
``NAME.tar!TARGET``. Reached through the tar root (``NAME.tar!/DIR/LINK``) those ``..``
end at the root, where ``NAME.tar!TARGET`` is looked up as TARGET in the tar.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio

from .catalog import Catalog, HsmState, Inode, Txn, u64
from .config import FsSettings
from .resident import DataView, ResidentData
from .tarindex import (
    MemberKind,
    TarIndex,
    TarMember,
    children_prefix,
    decode_member,
    decode_name,
    encode_member,
    index_tar,
    lexical_join,
    member_key,
)

log = logging.getLogger(__name__)

MEMBER_BIT = 1 << 62
ORDINAL_BITS = 24  # up to 16 million members per tar
# The tar root as a child of itself (``NAME.tar!`` looked up in the root): a directory
# inode of its own, as the kernel refuses a directory that is its own child.
ROOT_ALIAS = (1 << ORDINAL_BITS) - 1
_ORD = struct.Struct(">I")


def member_ino(tar: int, ordinal: int) -> int:
    return MEMBER_BIT | (tar << ORDINAL_BITS) | ordinal


def is_member(ino: int) -> bool:
    return bool(ino & MEMBER_BIT)


def split_ino(ino: int) -> tuple[int, int]:
    return (ino & ~MEMBER_BIT) >> ORDINAL_BITS, ino & ((1 << ORDINAL_BITS) - 1)


def is_tar_name(name: bytes | str | None) -> bool:
    return name is not None and (
        name.endswith(b".tar") if isinstance(name, bytes) else name.endswith(".tar")
    )


def store_index(txn: Txn, tar: int, index: TarIndex) -> set[bytes]:
    """Replace the member records of ``tar`` by those of ``index`` (one transaction).

    Ordinals continue after those of a replaced index, so a member inode the kernel still
    knows from it never names another member (or shows its stale pages). Returns the
    replaced index's top-level names, whose ``NAME.tar!TOP`` entries the kernel may cache.
    """
    old = tar_info(txn, tar)
    replaced: set[bytes] = set()
    first = 1
    if old is not None:
        paths = txn.scan_prefix(b"member_paths", u64(tar))
        replaced = {path.split(b"/", 1)[0] for _, path in paths if path}
        first = old.get("next_ordinal", old["members"] + 1)
        if first + len(index) >= ROOT_ALIAS:
            first = 1
    txn.delete_prefix(b"members", u64(tar))
    txn.delete_prefix(b"member_paths", u64(tar))
    txn.put_raw(b"member_paths", u64(tar) + _ORD.pack(0), b"")
    for ordinal, member in enumerate(sorted(index, key=lambda m: m.path), start=first):
        txn.put_raw(
            b"members", member_key(tar, member.path), _ORD.pack(ordinal) + encode_member(member)
        )
        txn.put_raw(
            b"member_paths",
            u64(tar) + _ORD.pack(ordinal),
            member.path.encode("utf-8", "surrogateescape"),
        )
    info = {"members": len(index), "invalid": index.invalid, "next_ordinal": first + len(index)}
    txn.put_raw(b"tars", u64(tar), json.dumps(info).encode())
    return replaced


def tar_info(txn: Txn, tar: int) -> dict[str, Any] | None:
    raw = txn.get_raw(b"tars", u64(tar))
    return None if raw is None else json.loads(raw)


@dataclass
class MemberHandle:
    tar: int
    member: TarMember
    data: DataView


class TarMembers:
    """Lookups, attributes, listing and reads of members, for ``HsmFs`` to delegate to."""

    def __init__(
        self, catalog: Catalog, resident: ResidentData, settings: Callable[[], FsSettings]
    ) -> None:
        self.catalog = catalog
        self.resident = resident
        self.settings = settings  # the configuration's [fs] section (reloadable)
        self.handles: dict[int, MemberHandle] = {}
        self.counters = {"indexed": 0}

    # -- indexing -------------------------------------------------------------------------
    async def index(self, tar: int) -> None:
        """Index a tar that was closed after writing (in a worker thread)."""
        version = self.resident.version(tar)
        path = self.resident.cache.path(tar)

        def parse() -> TarIndex:
            with open(path, "rb") as f:
                return index_tar(f)

        try:
            index = await trio.to_thread.run_sync(parse, limiter=self.resident.io_limiter)
        except Exception as exc:
            log.error("cannot index tar inode %d: %s", tar, exc)
            return
        if self.resident.version(tar) != version:
            return  # written again meanwhile; that close indexes it anew
        with self.catalog.write() as txn:
            if txn.get_inode(tar) is None:
                return
            replaced = store_index(txn, tar, index)
            name = txn.path_of(tar)
            link = txn.first_link(tar)
        if replaced and link is not None:  # written again: drop the old index's names
            for top in (b"", *replaced):
                pyfuse3.invalidate_entry_async(link[0], link[1] + b"!" + top, ignore_enoent=True)
        self.counters["indexed"] += 1
        if index.invalid:
            log.error("tar %s is invalid: %s", name, index.invalid)
        else:
            log.info("indexed tar %s: %d members", name, len(index))

    # -- namespace ------------------------------------------------------------------------
    def _member(self, txn: Txn, tar: int, ordinal: int) -> TarMember:
        if ordinal == ROOT_ALIAS:
            ordinal = 0
        raw_path = txn.get_raw(b"member_paths", u64(tar) + _ORD.pack(ordinal))
        if raw_path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        path = decode_name(raw_path)
        if not path:
            tar_inode = self._tar_inode(txn, tar)
            return TarMember(
                "", MemberKind.DIR, -1, -1, 0, tar_inode.mode & 0o555, tar_inode.mtime_ns
            )
        record = txn.get_raw(b"members", member_key(tar, path))
        if record is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return decode_member(path, record[_ORD.size :])

    def _by_path(self, txn: Txn, tar: int, path: str) -> tuple[int, TarMember] | None:
        if not path:
            return 0, self._member(txn, tar, 0)
        for _ in range(8):  # a hard link names its target; follow a short chain only
            record = txn.get_raw(b"members", member_key(tar, path))
            if record is None:
                return None
            member = decode_member(path, record[_ORD.size :])
            if member.kind is not MemberKind.HARDLINK:
                return _ORD.unpack_from(record)[0], member
            path = member.linkname
        return None

    def _tar_inode(self, txn: Txn, tar: int) -> Inode:
        inode = txn.get_inode(tar)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return inode

    def attr(self, txn: Txn, tar: int, ordinal: int, member: TarMember) -> pyfuse3.EntryAttributes:
        tar_inode = self._tar_inode(txn, tar)
        kind = {MemberKind.DIR: stat.S_IFDIR, MemberKind.SYMLINK: stat.S_IFLNK}.get(
            member.kind, stat.S_IFREG
        )
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = member_ino(tar, ordinal)
        attr.entry_timeout = attr.attr_timeout = self.settings().attr_timeout
        attr.st_mode = kind | (
            member.mode & 0o7777 if member.kind is not MemberKind.SYMLINK else 0o777
        )
        attr.st_nlink = 2 if member.is_dir else 1
        attr.st_uid, attr.st_gid = tar_inode.uid, tar_inode.gid
        attr.st_size = (
            len(self._link_target(txn, tar, member).encode("utf-8", "surrogateescape"))
            if member.kind is MemberKind.SYMLINK
            else member.size
        )
        attr.st_blksize = 128 * 1024
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = member.mtime_ns
        return attr

    def member_attr(self, txn: Txn, ino: int) -> pyfuse3.EntryAttributes:
        tar, ordinal = split_ino(ino)
        return self.attr(txn, tar, ordinal, self._member(txn, tar, ordinal))

    def lookup_bang(self, txn: Txn, parent: int, name: bytes) -> pyfuse3.EntryAttributes | None:
        """``NAME.tar!`` or ``NAME.tar!REST`` in a real directory; None if not a tar path."""
        tar_name, _, rest = name.partition(b"!")
        tar = txn.lookup(parent, tar_name)
        if tar is None or tar_info(txn, tar) is None:
            return None
        found = (
            self._by_path(txn, tar, "") if not rest else self._by_path(txn, tar, decode_name(rest))
        )
        if found is None:
            return None
        return self.attr(txn, tar, *found)

    def names_member(self, txn: Txn, parent: int, name: bytes) -> bool:
        """Whether ``name`` in the real directory ``parent`` is ``NAME.tar!...`` of a tar there
        (indexed or not yet: a real entry of that name would shadow a member)."""
        tar_name, bang, _ = name.partition(b"!")
        return bool(bang) and is_tar_name(tar_name) and txn.lookup(parent, tar_name) is not None

    def lookup(self, txn: Txn, parent: int, name: bytes) -> pyfuse3.EntryAttributes | None:
        tar, ordinal = split_ino(parent)
        directory = self._member(txn, tar, ordinal)
        if name == b".":
            return self.attr(txn, tar, ordinal, directory)
        if name == b"..":
            if not directory.path:
                return None  # the caller answers with the real directory of the tar
            found = self._by_path(txn, tar, directory.parent)
        elif not directory.path and b"!" in name:
            found = self._in_root(txn, tar, ordinal, name)
        else:
            path = f"{directory.path}/{decode_name(name)}" if directory.path else decode_name(name)
            found = self._by_path(txn, tar, path)
        return None if found is None else self.attr(txn, tar, *found)

    def _in_root(self, txn: Txn, tar: int, root: int, name: bytes) -> tuple[int, TarMember] | None:
        """``NAME.tar!REST`` in the root of the tar NAME.tar: where a relative symlink
        target ends when the link was reached through the root (``NAME.tar!/DIR/LINK``)."""
        tar_name, _, rest = name.partition(b"!")
        link = txn.first_link(tar)
        if link is None or link[1] != tar_name:
            return self._by_path(txn, tar, decode_name(name))  # a member with a bang in it
        if not rest:
            alias = 0 if root == ROOT_ALIAS else ROOT_ALIAS
            return alias, self._member(txn, tar, 0)
        return self._by_path(txn, tar, decode_name(rest))

    def readdir(self, txn: Txn, ino: int, start_id: int, token: pyfuse3.ReaddirToken) -> list[int]:
        """List a member directory; returns the inodes handed to the kernel (lookups)."""
        tar, ordinal = split_ino(ino)
        directory = self._member(txn, tar, ordinal)
        if not directory.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        given: list[int] = []
        prefix = children_prefix(tar, directory.path)
        for position, (key, record) in enumerate(txn.scan_prefix(b"members", prefix), start=1):
            if position <= start_id:
                continue
            name = key[len(prefix) :]
            child_path = (
                f"{directory.path}/{decode_name(name)}" if directory.path else decode_name(name)
            )
            child = decode_member(child_path, record[_ORD.size :])
            child_ord = _ORD.unpack_from(record)[0]
            target = (
                self._by_path(txn, tar, child.linkname)
                if child.kind is MemberKind.HARDLINK
                else None
            )
            if target is not None:
                child_ord, child = target
            elif child.kind is MemberKind.HARDLINK:
                continue  # its target is not in the tar: lookup says ENOENT, so hide it
            if not pyfuse3.readdir_reply(
                token, name, self.attr(txn, tar, child_ord, child), position
            ):
                break
            given.append(member_ino(tar, child_ord))
        return given

    def _link_target(self, txn: Txn, tar: int, member: TarMember) -> str:
        """A relative target inside the tar: ``../`` for every directory between the link
        and the tar's real directory, then ``NAME.tar!TARGET`` (see the module docstring).

        The kernel resolves ``..`` through its own dentries, and ``NAME.tar!DIR`` is a
        child of the tar's real directory there, so the way up is one ``..`` for each
        component of the link's directory."""
        target = lexical_join(member.parent, member.linkname)
        link = txn.first_link(tar)
        tar_name = link[1].decode("utf-8", "surrogateescape") if link else ""
        depth = len([part for part in member.parent.split("/") if part])
        return "../" * depth + f"{tar_name}!{target}"

    def readlink(self, txn: Txn, ino: int) -> bytes:
        tar, ordinal = split_ino(ino)
        member = self._member(txn, tar, ordinal)
        if member.kind is not MemberKind.SYMLINK:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return self._link_target(txn, tar, member).encode("utf-8", "surrogateescape")

    def xattr(self, txn: Txn, ino: int, name: bytes) -> bytes:
        tar, ordinal = split_ino(ino)
        member = self._member(txn, tar, ordinal)
        if name == b"user.hsm.md5" and member.md5:
            return member.md5.encode()
        if name == b"user.hsm.state":
            return HsmState(self._tar_inode(txn, tar).hsm_state).name.lower().encode()
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    def tar_xattr(self, txn: Txn, tar: int) -> bytes:
        info = tar_info(txn, tar)
        if info is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        if info["invalid"]:
            return f"invalid: {info['invalid']}".encode()
        return f"valid: {info['members']} members".encode()

    # -- reads ----------------------------------------------------------------------------
    async def open(self, ino: int, flags: int, fh: int) -> None:
        if (flags & os.O_ACCMODE) != os.O_RDONLY:
            raise pyfuse3.FUSEError(errno.EROFS)
        tar, ordinal = split_ino(ino)
        with self.catalog.read() as txn:
            member = self._member(txn, tar, ordinal)
            key = txn.hsm_record(tar).get("key")
        if member.kind is not MemberKind.FILE:
            raise pyfuse3.FUSEError(errno.EISDIR if member.is_dir else errno.EINVAL)
        data = await self.resident.open_range(
            tar, key, member.data_offset, member.size, member.md5, f"member {member.path}"
        )
        self.handles[fh] = MemberHandle(tar, member, data)

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        handle = self.handles[fh]
        size = max(0, min(size, handle.member.size - off))
        return await handle.data.read(off, size)

    async def release(self, fh: int) -> None:
        await self.handles.pop(fh).data.close()

    def statistics(self) -> dict[str, Any]:
        return {"open_members": len(self.handles), **self.counters}
