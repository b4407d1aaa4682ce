"""Exceptions of hsmfs.tarindex: one base class, one subclass per kind of failure."""

from __future__ import annotations

import errno as errno_codes


class TarIndexError(Exception):
    """Base class of every error raised by hsmfs.tarindex."""


class SourceReadError(TarIndexError):
    """Reading the tar file itself failed (an I/O error, not a problem of its content)."""


class RecordFormatError(TarIndexError):
    """A stored member record cannot be decoded (wrong version or damaged bytes)."""


class MemberLookupError(TarIndexError):
    """A path inside a tar does not resolve; `errno` says how (ENOENT, ENOTDIR, ELOOP)."""

    def __init__(self, path: str, errno: int, detail: str) -> None:
        super().__init__(f"{path!r} in the tar: {detail}")
        self.path = path
        self.errno = errno

    @classmethod
    def not_found(cls, path: str) -> MemberLookupError:
        return cls(path, errno_codes.ENOENT, "no such member")

    @classmethod
    def not_a_directory(cls, path: str) -> MemberLookupError:
        return cls(path, errno_codes.ENOTDIR, "a path component is not a directory")

    @classmethod
    def too_many_links(cls, path: str) -> MemberLookupError:
        return cls(path, errno_codes.ELOOP, "too many levels of links (a link loop?)")
