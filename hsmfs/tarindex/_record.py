"""Versioned byte encoding of a member record, and LMDB keys, for the hsmfs catalog.

Key:   tar inode (8 bytes, big-endian) + parent path + NUL + member name. NUL never occurs
       in names, so the keys of one directory's children are exactly the keys that start
       with `children_prefix(inode, directory)`, in byte order of the names.
Value: MEMBER_RECORD_VERSION (1 byte), then the fields of _FIXED, then the link name.

Version history:
  1  first version.
"""

from __future__ import annotations

import struct

from ._errors import RecordFormatError
from ._member import MemberKind, TarMember
from ._names import decode_name, encode_name, parent_of

MEMBER_RECORD_VERSION = 1

# version, kind, flags, mode, header_offset, data_offset, size, mtime_ns, md5 digest
_FIXED = struct.Struct("<BBBHqqQq16s")
_INODE = struct.Struct(">Q")
_FLAG_MD5_CHECKED = 1
_FLAG_IMPLICIT = 2
_FLAG_HAS_MD5 = 4
_NO_MD5 = bytes(16)


def encode_member(member: TarMember) -> bytes:
    """The record stored as the value under `member_key(inode, member.path)`."""
    flags = (
        (_FLAG_MD5_CHECKED if member.md5_checked else 0)
        | (_FLAG_IMPLICIT if member.implicit else 0)
        | (_FLAG_HAS_MD5 if member.md5 else 0)
    )
    fixed = _FIXED.pack(
        MEMBER_RECORD_VERSION,
        member.kind,
        flags,
        member.mode,
        member.header_offset,
        member.data_offset,
        member.size,
        member.mtime_ns,
        bytes.fromhex(member.md5) if member.md5 else _NO_MD5,
    )
    return fixed + encode_name(member.linkname)


def decode_member(path: str, record: bytes) -> TarMember:
    """The member stored in `record` for `path`; RecordFormatError if it is not one."""
    if len(record) < _FIXED.size or record[0] != MEMBER_RECORD_VERSION:
        version = record[0] if record else None
        raise RecordFormatError(
            f"member record for {path!r} has format version {version}, expected "
            f"{MEMBER_RECORD_VERSION} in {_FIXED.size}+ bytes: re-index the tar"
        )
    _, kind, flags, mode, header, data, size, mtime_ns, digest = _FIXED.unpack_from(record)
    try:
        member_kind = MemberKind(kind)
    except ValueError:
        raise RecordFormatError(f"member record for {path!r} has unknown kind {kind}") from None
    return TarMember(
        path=path,
        kind=member_kind,
        header_offset=header,
        data_offset=data,
        size=size,
        mode=mode,
        mtime_ns=mtime_ns,
        linkname=decode_name(record[_FIXED.size :]),
        md5=digest.hex() if flags & _FLAG_HAS_MD5 else "",
        md5_checked=bool(flags & _FLAG_MD5_CHECKED),
        implicit=bool(flags & _FLAG_IMPLICIT),
    )


def children_prefix(tar_inode: int, directory: str) -> bytes:
    """The key prefix shared by all children of `directory` ("" is the tar root)."""
    return _INODE.pack(tar_inode) + encode_name(directory) + b"\0"


def member_key(tar_inode: int, path: str) -> bytes:
    """The key of the member at `path` (not "") of the tar with inode `tar_inode`."""
    return children_prefix(tar_inode, parent_of(path)) + encode_name(path.rpartition("/")[2])


def split_member_key(key: bytes) -> tuple[int, str]:
    """The (tar inode, member path) a key was made from."""
    (inode,) = _INODE.unpack_from(key)
    parent, _, name = key[_INODE.size :].partition(b"\0")
    return inode, decode_name(parent + b"/" + name if parent else name)
