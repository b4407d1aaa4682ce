"""Tar member index for hsmfs: parse a tar once into members, a tree and catalog records.

    index = index_tar(fileobj)              # TarIndex; index.invalid is None if all is well
    member = index.resolve("CF024730/000004A0")
    for key, value in index.records(tar_inode): ...   # LMDB, see member_key/encode_member

tarfile reads the headers (ustar, pax, GNU); this package adds what it lacks: safe names,
a tree with implicit directories, link resolution that never leaves the tar, the MD5 of
every member, the MD5SUM check, and strict end-of-archive checks so that a damaged tar is
reported instead of silently shortened.

Concurrency: index_tar blocks (file I/O and hashing) and shares no state; call it from a
worker thread (trio.to_thread.run_sync). A finished TarIndex is never mutated by this
package, so any number of threads may read it. `python -m hsmfs.tarindex TAR...` checks
tars from a shell.
"""

from ._errors import MemberLookupError, RecordFormatError, SourceReadError, TarIndexError
from ._md5sum import MD5SUM_NAME, Md5Sums, parse_md5sum
from ._member import NO_OFFSET, MemberKind, TarMember
from ._names import UnsafeName, decode_name, encode_name, lexical_join, normalize_member_path
from ._parse import Progress, index_tar
from ._record import (
    MEMBER_RECORD_VERSION,
    children_prefix,
    decode_member,
    encode_member,
    member_key,
    split_member_key,
)
from ._tree import MAX_LINK_HOPS, TarIndex

__all__ = [
    "MAX_LINK_HOPS",
    "MD5SUM_NAME",
    "MEMBER_RECORD_VERSION",
    "NO_OFFSET",
    "Md5Sums",
    "MemberKind",
    "MemberLookupError",
    "Progress",
    "RecordFormatError",
    "SourceReadError",
    "TarIndex",
    "TarIndexError",
    "TarMember",
    "UnsafeName",
    "children_prefix",
    "decode_member",
    "decode_name",
    "encode_member",
    "encode_name",
    "index_tar",
    "lexical_join",
    "member_key",
    "normalize_member_path",
    "parse_md5sum",
    "split_member_key",
]
