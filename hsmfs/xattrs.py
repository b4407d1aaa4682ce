"""Extended attributes: the limits of stored ones, and the virtual ``user.hsm.*`` ones of
regular files (computed when read, never stored; writing ``user.hsm.action`` or
``user.hsm.flags`` acts on the HSM).
"""

from __future__ import annotations

import errno
import json
import logging
import time
from typing import Any

import pyfuse3

from .catalog import ROOT_INO, Catalog, HsmFlag, HsmState, Inode
from .errnos import existing, fail
from .migrator import Migrator
from .resident import ReleaseRefused, ResidentData

log = logging.getLogger(__name__)

HSM_PREFIX = b"user.hsm."
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536


def check_storable(name: bytes, value: bytes) -> None:
    """An attribute that may be stored: not ``system.*``, a name of 1 to XATTR_NAME_MAX
    bytes, a value of at most XATTR_SIZE_MAX."""
    if name.startswith(b"system."):
        raise fail(errno.EOPNOTSUPP)  # POSIX ACLs are not supported
    if len(name) > XATTR_NAME_MAX or not name:
        raise fail(errno.ERANGE)
    if len(value) > XATTR_SIZE_MAX:
        raise fail(errno.E2BIG)


def format_flags(flags: int) -> str:
    return ",".join(flag.name.lower() for flag in HsmFlag if flags & flag)


def parse_flags(text: str) -> int:
    flags = 0
    for word in filter(None, (w.strip() for w in text.split(","))):
        try:
            flags |= HsmFlag[word.upper()]
        except KeyError:
            raise fail(errno.EINVAL) from None
    return flags


class HsmAttributes:
    """``user.hsm.*`` of the regular files of one mount."""

    def __init__(
        self,
        catalog: Catalog,
        migrator: Migrator,
        resident: ResidentData,
        daemon_info: dict[str, Any],
    ) -> None:
        self.catalog = catalog
        self.migrator = migrator
        self.resident = resident
        self.daemon_info = daemon_info  # what ``user.hsm.daemon`` of the root says

    def get(self, inode: Inode, name: bytes) -> bytes:
        """The virtual ``user.hsm.*`` attributes; computed, never stored."""
        if name == b"user.hsm.daemon" and inode.ino == ROOT_INO and self.daemon_info:
            return json.dumps(self.daemon_info).encode()
        if not inode.is_reg:
            raise fail(pyfuse3.ENOATTR)
        if name == b"user.hsm.state":
            return HsmState(inode.hsm_state).name.lower().encode()
        if name == b"user.hsm.flags":
            return format_flags(inode.hsm_flags).encode()
        field = {
            b"user.hsm.key": "key",
            b"user.hsm.md5": "md5",
            b"user.hsm.archived_at": "archived_at",
        }
        if name in field:
            with self.catalog.read() as txn:
                value = txn.hsm_record(inode.ino).get(field[name])
            # A lost file keeps its record: the key and MD5 are what an operator looks for.
            copied = (HsmState.ARCHIVED, HsmState.RELEASED, HsmState.LOST)
            if value is not None and inode.hsm_state in copied:
                if name == b"user.hsm.archived_at":
                    value = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
                return str(value).encode()
        raise fail(pyfuse3.ENOATTR)

    async def set(self, inode: Inode, name: bytes, value: bytes) -> None:
        """``user.hsm.action`` (archive, release, stage, recheck) and ``user.hsm.flags``.

        An action that cannot happen fails (EBUSY, EIO, EINVAL); a release answers once
        the cache data is gone."""
        if not inode.is_reg or name not in (b"user.hsm.action", b"user.hsm.flags"):
            raise fail(errno.EPERM)  # the rest of user.hsm.* is the HSM's own
        text = value.decode(errors="replace").strip().lower()
        if name == b"user.hsm.flags":
            flags = parse_flags(text)
            with self.catalog.write() as txn:
                node = existing(txn, inode.ino)
                node.hsm_flags = flags
                txn.put_inode(node)
            return
        if text == "archive":
            if inode.hsm_state == HsmState.DIRTY:
                self.migrator.schedule(inode.ino, delay=0)
        elif text == "release":
            try:
                await self.migrator.release(inode.ino)
            except ReleaseRefused as exc:
                log.info("release of inode %d refused: %s", inode.ino, exc)
                raise fail(errno.EBUSY) from None
            await self.resident.removed(inode.ino)
        elif text == "stage":
            if inode.hsm_state == HsmState.LOST:
                raise fail(errno.EIO)  # no valid copy to stage from
            if inode.hsm_state == HsmState.RELEASED:
                self.resident.stage(inode.ino)
        elif text == "recheck":
            problem = await self.migrator.recheck(inode.ino)
            if problem is not None:
                log.info("recheck of inode %d: %s", inode.ino, problem)
                raise fail(errno.EIO)
        else:
            raise fail(errno.EINVAL)
