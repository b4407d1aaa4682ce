"""One indexed tar member: where its header and data are, and what it is."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._names import parent_of


class MemberKind(enum.IntEnum):
    """Member types hsmfs serves; devices and FIFOs are never indexed."""

    FILE = 0
    DIR = 1
    SYMLINK = 2
    HARDLINK = 3


NO_OFFSET = -1  # header/data offset of an implicit directory (it has no header)


@dataclass(frozen=True, slots=True)
class TarMember:
    """A member of a tar, as indexed.

    path:          normalized path below the tar root ("" is the root itself)
    header_offset: byte offset of the member's first header block (its pax or GNU
                   long-name header when it has one); NO_OFFSET for implicit directories
    data_offset:   byte offset of the member's data; NO_OFFSET for implicit directories
    size:          data size in bytes (0 for everything but FILE)
    mode:          permission bits (setuid, setgid and sticky bits are dropped)
    mtime_ns:      modification time in nanoseconds since the epoch
    linkname:      SYMLINK: the target as stored; HARDLINK: normalized path of the target
    md5:           lower-case hex MD5 of the data (FILE only, "" otherwise or unverified)
    md5_checked:   the MD5 matched the tar's MD5SUM line for this member
    implicit:      a directory that has no entry of its own (a/b/c without a/b)
    """

    path: str
    kind: MemberKind
    header_offset: int
    data_offset: int
    size: int
    mode: int
    mtime_ns: int
    linkname: str = ""
    md5: str = ""
    md5_checked: bool = False
    implicit: bool = False

    @property
    def name(self) -> str:
        """The last path component."""
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> str:
        """The path of the directory that holds this member."""
        return parent_of(self.path)

    @property
    def is_dir(self) -> bool:
        return self.kind is MemberKind.DIR
