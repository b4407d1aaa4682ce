"""Tar archives open as directories: ``NAME.tar!MEMBER`` paths, read-only members.

A tar is indexed (hsmfs.tarindex) when it is closed after writing; its members go into
the catalog with an ordinal each, and a member's inode number is ``member_ino(tar,
ordinal)`` - stable across mounts, and recognisable by its high bit. ``NAME.tar!`` is
the tar's root directory; ``NAME.tar!REST`` looks REST up in that root, so
``NAME.tar!DIR/FILE`` resolves through ordinary lookups.

Reads: a resident tar is read at the member's offset; for a released tar the first read
of a member fetches just that member with a ranged GET (checked against its MD5 before
any byte is served) and starts a background stage of the whole tar, whose verified
prefix then serves the following members. Concurrent readers of a member share a fetch.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyfuse3
import trio

from .backends import ChecksumMismatch, ObjectStore
from .cache import pread_into, pread_nowait
from .catalog import Catalog, HsmState, Inode, Txn, u64
from .stager import Stage
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

if TYPE_CHECKING:
    from .fs import HsmFs

log = logging.getLogger(__name__)

MEMBER_BIT = 1 << 62
ORDINAL_BITS = 24  # up to 16 million members per tar
_ORD = struct.Struct(">I")
PREFETCH_WINDOW = 64 << 20  # a member this close ahead of a running stage waits for it


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
        if first + len(index) >= 1 << ORDINAL_BITS:
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
class Fetch:
    """One ranged GET of one member, shared by every reader of it."""

    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: str | None = None


@dataclass
class MemberHandle:
    tar: int
    member: TarMember
    data: bytes | None = None  # the member, fetched alone from the object store
    fd: int | None = None  # the tar's cache (or part) file
    stage: Stage | None = None


class TarMembers:
    """Lookups, attributes, listing and reads of members, for ``HsmFs`` to delegate to."""

    def __init__(self, fs: HsmFs) -> None:
        self.fs = fs
        self.catalog: Catalog = fs.catalog
        self.handles: dict[int, MemberHandle] = {}
        self.open_tars: Counter[int] = Counter()
        self.fetches: dict[tuple[int, int], Fetch] = {}
        self.backend: ObjectStore | None = None
        self.counters = {"indexed": 0, "member_fetches": 0, "member_fetch_bytes": 0}

    # -- indexing -------------------------------------------------------------------------
    async def index(self, tar: int) -> None:
        """Index a tar that was closed after writing (in a worker thread)."""
        version = self.fs.data_versions.get(tar, 0)
        path = self.fs.cache.path(tar)

        def parse() -> TarIndex:
            with open(path, "rb") as f:
                return index_tar(f)

        try:
            index = await trio.to_thread.run_sync(parse, limiter=self.fs.io_limiter)
        except Exception as exc:
            log.error("cannot index tar inode %d: %s", tar, exc)
            return
        if self.fs.data_versions.get(tar, 0) != version:
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
        attr.entry_timeout = attr.attr_timeout = self.fs.config.fs.attr_timeout
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
        else:
            path = f"{directory.path}/{decode_name(name)}" if directory.path else decode_name(name)
            found = self._by_path(txn, tar, path)
        return None if found is None else self.attr(txn, tar, *found)

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
        """An absolute target inside the tar: ``MOUNTPOINT/TAR PATH!TARGET``.

        No relative target can stay inside: the kernel resolves ``..`` through its own
        dentries, and ``NAME.tar!DIR`` is a child of the tar's real directory there, so
        ``..`` from ``NAME.tar!DIR/LINK`` would leave the tar."""
        target = lexical_join(member.parent, member.linkname)
        mountpoint = self.fs.daemon_info.get("mountpoint", "").rstrip("/")
        return f"{mountpoint}/{txn.path_of(tar) or ''}!{target}"

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
            tar_inode = self._tar_inode(txn, tar)
            key = txn.hsm_record(tar).get("key")
        if member.kind is not MemberKind.FILE:
            raise pyfuse3.FUSEError(errno.EISDIR if member.is_dir else errno.EINVAL)
        state = HsmState(tar_inode.hsm_state)
        if state == HsmState.LOST:
            raise pyfuse3.FUSEError(errno.EIO)
        handle = MemberHandle(tar, member)
        self.open_tars[tar] += 1
        try:
            await self._attach_data(handle, ordinal, state, key)
        except BaseException:
            self._forget_tar(tar)
            raise
        self.handles[fh] = handle

    async def _attach_data(
        self, handle: MemberHandle, ordinal: int, state: HsmState, key: str | None
    ) -> None:
        tar, member = handle.tar, handle.member
        stager = self.fs.stager
        stage = stager.stages.get(tar) if stager is not None else None
        if stage is not None and stage.error is None and not stage.done:
            if member.data_offset + member.size <= stage.received + PREFETCH_WINDOW:
                await stage.wait_part()
                try:
                    handle.fd = await trio.to_thread.run_sync(
                        os.open, stage.part, os.O_RDONLY | os.O_CLOEXEC
                    )
                except FileNotFoundError:  # the stage is ending: renamed, or failed
                    await stage.wait_ended()  # then the catalog says which
                    with self.catalog.read() as txn:
                        state = HsmState(self._tar_inode(txn, tar).hsm_state)
                    if state == HsmState.LOST:
                        raise pyfuse3.FUSEError(errno.EIO) from None
                    return await self._attach_data(handle, ordinal, state, key)
                handle.stage = stage
                return
        elif state != HsmState.RELEASED:
            handle.fd = await trio.to_thread.run_sync(
                self.fs.cache.open, tar, limiter=self.fs.io_limiter
            )
            return
        if key is None or self.backend is None:
            raise pyfuse3.FUSEError(errno.EIO)
        if stager is not None and stage is None and self.fs.config.hsm.member_prefetch == "whole":
            stager.start(tar)  # the rest of the series will be read soon: fetch it all
        handle.data = await self._fetch(tar, ordinal, key, member)

    async def _fetch(self, tar: int, ordinal: int, key: str, member: TarMember) -> bytes:
        fetch = self.fetches.get((tar, ordinal))
        if fetch is None:
            fetch = self.fetches[(tar, ordinal)] = Fetch()
            try:
                with trio.fail_after(self.fs.config.hsm.stage_timeout):
                    fetch.data = await trio.to_thread.run_sync(
                        self._fetch_member, key, member, abandon_on_cancel=True
                    )
                self.counters["member_fetches"] += 1
                self.counters["member_fetch_bytes"] += member.size
            except ChecksumMismatch as exc:
                fetch.error = str(exc)
                self._mark_lost(tar, exc)
            except Exception as exc:
                fetch.error = str(exc) or "timed out"
                log.error("fetching member %s of %s failed: %s", member.path, key, fetch.error)
            finally:
                fetch.done.set()
                del self.fetches[(tar, ordinal)]
        else:
            await fetch.done.wait()
        if fetch.data is None:
            raise pyfuse3.FUSEError(errno.EIO)
        return fetch.data

    def _fetch_member(self, key: str, member: TarMember) -> bytes:
        assert self.backend is not None
        end = member.data_offset + member.size
        with self.backend.open_range(key, member.data_offset, end) as reader:
            data = reader.read()
        if len(data) != member.size or (member.md5 and hashlib.md5(data).hexdigest() != member.md5):
            raise ChecksumMismatch(
                f"{key}: member {member.path} does not match its MD5 {member.md5} "
                f"({len(data)} of {member.size} bytes fetched)"
            )
        return data

    def _mark_lost(self, tar: int, exc: Exception) -> None:
        log.error("tar inode %d is lost: %s", tar, exc)
        with self.catalog.write() as txn:
            inode = txn.get_inode(tar)
            if inode is not None:
                inode.hsm_state = HsmState.LOST
                txn.put_inode(inode)

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        handle = self.handles[fh]
        member = handle.member
        size = max(0, min(size, member.size - off))
        if handle.data is not None:
            return memoryview(handle.data)[off : off + size]
        if handle.stage is not None and not handle.stage.done:
            await handle.stage.wait_for(
                member.data_offset + off + size, self.fs.config.hsm.stage_timeout
            )
        assert handle.fd is not None
        buf = bytearray(size)
        n = pread_nowait(handle.fd, buf, member.data_offset + off)
        if n is None:
            n = await trio.to_thread.run_sync(
                pread_into, handle.fd, buf, member.data_offset + off, limiter=self.fs.io_limiter
            )
        return memoryview(buf)[:n]

    def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle.fd is not None:
            os.close(handle.fd)
        self._forget_tar(handle.tar)

    def _forget_tar(self, tar: int) -> None:
        self.open_tars[tar] -= 1
        if self.open_tars[tar] <= 0:
            del self.open_tars[tar]

    def statistics(self) -> dict[str, Any]:
        return {
            "open_members": len(self.handles),
            "member_fetches_in_flight": len(self.fetches),
            **self.counters,
        }
