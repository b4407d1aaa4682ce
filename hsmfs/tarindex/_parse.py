"""Index a tar in one pass: tarfile reads the headers, we hash the data and check MD5SUM."""

from __future__ import annotations

import hashlib
import math
import os
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from ._errors import MemberLookupError, SourceReadError, TarIndexError
from ._guard import GuardedTarInfo, HostileHeader
from ._md5sum import MAX_MD5SUM_BYTES, MD5SUM_NAME, Md5Sums, parse_md5sum
from ._member import MemberKind, TarMember
from ._names import MAX_PATH_BYTES, UnsafeName, encode_name, normalize_member_path
from ._tree import TarIndex, TreeBuilder

Progress = Callable[[int, int], None]
"""Called as progress(bytes_done, tar_size) while indexing."""

CHUNK_BYTES = 1 << 20
BLOCK = tarfile.BLOCKSIZE
MAX_PROBLEMS = 100  # enough to diagnose; a garbage tar must not grow a huge list
PERMISSION_BITS = 0o777  # never serve setuid/setgid bits out of an archive
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_KINDS = {
    tarfile.REGTYPE: MemberKind.FILE,
    tarfile.AREGTYPE: MemberKind.FILE,
    tarfile.CONTTYPE: MemberKind.FILE,
    tarfile.DIRTYPE: MemberKind.DIR,
    b"D": MemberKind.DIR,  # GNU incremental dump directory
    tarfile.SYMTYPE: MemberKind.SYMLINK,
    tarfile.LNKTYPE: MemberKind.HARDLINK,
}
_SKIPPED_TYPES = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    b"V": "volume label",
}


class _Stop(TarIndexError):
    """Parsing cannot go on; the message is the reason."""


class _Source:
    """The tar's file object as tarfile sees it: I/O errors become SourceReadError."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._file = fileobj
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._file.read(size)
        except OSError as error:
            raise SourceReadError(f"cannot read the tar: {error}") from error
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._file.seek(offset, whence)
        except OSError as error:
            raise SourceReadError(f"cannot seek in the tar: {error}") from error

    def tell(self) -> int:
        return self._file.tell()


def index_tar(
    fileobj: BinaryIO, *, verify: bool = True, progress: Progress | None = None
) -> TarIndex:
    """Index the tar in `fileobj` (read from offset 0; needs read, seek and tell).

    verify=True reads every byte once: each file member's MD5 is computed and, when the
    first member is MD5SUM, checked against it. verify=False reads headers only (no MD5).
    A damaged or hostile tar gives an index with `invalid` set; only a failing file
    object raises (SourceReadError).
    """
    source = _Source(fileobj)
    tar_size = source.seek(0, os.SEEK_END)
    source.seek(0)
    return _Indexer(source, tar_size, verify, progress).run()


def _mtime_ns(mtime: float) -> int:
    if isinstance(mtime, float) and not math.isfinite(mtime):
        return 0
    return max(_INT64_MIN, min(_INT64_MAX, int(mtime * 1_000_000_000)))


class _Indexer:
    def __init__(
        self, source: _Source, tar_size: int, verify: bool, progress: Progress | None
    ) -> None:
        self.source = source
        self.tar_size = tar_size
        self.verify = verify
        self.progress = progress
        self.tree = TreeBuilder()
        self.problems: list[str] = []
        self.skipped: list[str] = []
        self.has_md5sum = False
        self.md5sums: Md5Sums | None = None
        self.checked_by_md5sum: set[str] = set()

    def problem(self, reason: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(reason)

    def run(self) -> TarIndex:
        try:
            self._check_end(self._read_members())
        except _Stop as stop:
            self.problem(str(stop))
        if self.progress:
            self.progress(self.tar_size, self.tar_size)
        return self._finish()

    def _read_members(self) -> int:
        """Index every member; return the offset where tarfile found the end."""
        try:
            tar = tarfile.TarFile(
                fileobj=self.source,  # type: ignore[arg-type]  # duck-typed file object
                mode="r",
                tarinfo=GuardedTarInfo,
                encoding="utf-8",
                errors="surrogateescape",
            )
        except SourceReadError:
            raise
        except HostileHeader as error:
            raise _Stop(str(error)) from None
        except Exception as error:  # tarfile raises assorted errors on garbage
            raise _Stop(f"not a tar archive: {error}") from None
        previous_header = -1
        while True:
            try:
                info = tar.next()
            except SourceReadError:
                raise
            except HostileHeader as error:
                raise _Stop(str(error)) from None
            except Exception as error:  # tarfile raises assorted errors on hostile headers
                raise _Stop(f"unreadable header at offset {tar.offset}: {error}") from None
            if info is None:
                return tar.offset
            tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every TarInfo; we keep our own records
            if info.offset <= previous_header or tar.offset < info.offset_data:
                raise _Stop(f"header at offset {info.offset} has an impossible size field")
            first = previous_header < 0
            previous_header = info.offset
            self._index_member(info, data_end=tar.offset, first=first)
            if self.progress:
                self.progress(tar.offset, self.tar_size)

    def _index_member(self, info: tarfile.TarInfo, *, data_end: int, first: bool) -> None:
        if data_end > self.tar_size:
            raise _Stop(
                f"member {info.name!r} is truncated: its data ends at offset {data_end} "
                f"but the tar has only {self.tar_size} bytes"
            )
        try:
            path = normalize_member_path(info.name)
        except UnsafeName as reason:
            self.problem(f"member {info.name!r} at offset {info.offset} {reason}")
            return
        if info.issparse():
            self.problem(f"member {path} is a sparse file, which hsmfs cannot serve")
            return
        kind = _KINDS.get(info.type)
        if kind is None:
            self._refuse(info, path)
            return
        if kind is MemberKind.FILE and info.size < 0:
            raise _Stop(f"member {path} has a negative size")
        linkname = self._linkname(info, kind, path)
        if linkname is None:
            return
        is_md5sum = first and path == MD5SUM_NAME and kind is MemberKind.FILE
        self.has_md5sum |= is_md5sum
        digest = ""
        if kind is MemberKind.FILE and self.verify:
            digest = self._hash_data(info, data_end, keep=is_md5sum)
        member = TarMember(
            path=path,
            kind=kind,
            header_offset=info.offset,
            data_offset=info.offset_data,
            size=info.size if kind is MemberKind.FILE else 0,
            mode=info.mode & PERMISSION_BITS,
            mtime_ns=_mtime_ns(info.mtime),
            linkname=linkname,
            md5=digest,
            md5_checked=self._check_md5(path, digest) if digest and not is_md5sum else False,
        )
        refused = self.tree.add(member)
        if refused:
            self.problem(refused)

    def _refuse(self, info: tarfile.TarInfo, path: str) -> None:
        what = _SKIPPED_TYPES.get(info.type)
        if what:
            self.skipped.append(f"{path} ({what})")
        else:
            self.problem(f"member {path} has unsupported type {info.type!r}")

    def _linkname(self, info: tarfile.TarInfo, kind: MemberKind, path: str) -> str | None:
        """The link target to record ("" for non-links), or None if the member is refused."""
        if kind is MemberKind.HARDLINK:
            try:
                return normalize_member_path(info.linkname) or None
            except UnsafeName:
                pass
        elif kind is MemberKind.SYMLINK:
            target = info.linkname
            try:
                if "\0" not in target and len(encode_name(target)) <= MAX_PATH_BYTES:
                    return target
            except UnicodeEncodeError:
                pass
        else:
            return ""
        self.problem(f"{kind.name.lower()} {path} has an unusable target {info.linkname!r}")
        return None

    def _hash_data(self, info: tarfile.TarInfo, data_end: int, *, keep: bool) -> str:
        """Read the member's data blocks, padding included, and return the data's MD5."""
        if self.source.tell() != info.offset_data:
            self.source.seek(info.offset_data)
        md5 = hashlib.md5(usedforsecurity=False)
        kept: list[bytes] = []
        kept_bytes = 0
        unhashed = info.size
        remaining = data_end - info.offset_data
        while remaining:
            chunk = self.source.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                raise _Stop(f"member {info.name!r} is truncated")
            remaining -= len(chunk)
            data = chunk[:unhashed] if unhashed < len(chunk) else chunk
            unhashed -= len(data)
            md5.update(data)
            if keep and kept_bytes <= MAX_MD5SUM_BYTES:
                kept.append(data)
                kept_bytes += len(data)
        if keep:
            self._load_md5sum(b"".join(kept), info.size)
        return md5.hexdigest()

    def _load_md5sum(self, content: bytes, size: int) -> None:
        if size > MAX_MD5SUM_BYTES:
            self.problem(f"{MD5SUM_NAME} is larger than {MAX_MD5SUM_BYTES} bytes; not checked")
            self.md5sums = Md5Sums()
            return
        self.md5sums = parse_md5sum(content)
        for reason in self.md5sums.problems:
            self.problem(reason)

    def _check_md5(self, path: str, digest: str) -> bool:
        if self.md5sums is None:
            return False
        expected = self.md5sums.expected.get(path)
        if expected is None:
            self.problem(f"member {path} has no line in {MD5SUM_NAME}")
            return False
        self.checked_by_md5sum.add(path)
        if expected != digest:
            self.problem(f"MD5 mismatch for {path}")
            return False
        return True

    def _check_end(self, offset: int) -> None:
        """Everything after the last member must be zeros, at least one zero block."""
        self.source.seek(offset)
        zeros = 0
        while chunk := self.source.read(CHUNK_BYTES):
            rest = chunk.lstrip(b"\0")
            if rest:
                garbage_at = offset + zeros + len(chunk) - len(rest)
                raise _Stop(
                    f"unreadable data at offset {garbage_at} where a member header or the "
                    "end of the archive should be (corrupt or truncated tar)"
                )
            zeros += len(chunk)
        if zeros < BLOCK:
            raise _Stop(
                f"the tar ends at offset {offset + zeros} without an end-of-archive marker "
                "(truncated?)"
            )

    def _finish(self) -> TarIndex:
        index = self.tree.build()
        for member in index:
            if member.kind is MemberKind.HARDLINK:
                self._check_hardlink(index, member)
        if self.md5sums is not None:
            for path, expected in self.md5sums.expected.items():
                if path not in self.checked_by_md5sum:
                    self._check_unmatched_line(index, path, expected)
        index.problems = self.problems
        index.skipped = self.skipped
        index.has_md5sum = self.has_md5sum
        index.md5_computed = self.verify
        index.tar_size = self.tar_size
        return index

    def _check_hardlink(self, index: TarIndex, member: TarMember) -> None:
        try:
            target = index.resolve(member.path)
        except MemberLookupError:
            target = None
        if target is None or target.kind is not MemberKind.FILE:
            self.problem(
                f"hard link {member.path} points to {member.linkname}, "
                "which is not a file in the tar"
            )

    def _check_unmatched_line(self, index: TarIndex, path: str, expected: str) -> None:
        """A line that no file member used: a link to a file may satisfy it."""
        if index.lookup(path) is None:
            self.problem(f"{MD5SUM_NAME} names {path}, which is not in the tar")
            return
        try:
            target = index.resolve(path)
        except MemberLookupError:
            target = None
        if target is None or target.kind is not MemberKind.FILE:
            self.problem(f"{MD5SUM_NAME} has a line for {path}, which is not a file")
        elif target.md5 != expected:
            self.problem(f"MD5 mismatch for {path}")
