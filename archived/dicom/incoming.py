"""One C-STORE data set on its way in: written once, hashed and checked as it arrives.

The DUL thread (archived.dicom.reactor) calls ``write`` with each data set fragment. The
fragment goes straight into a StagedFile on the ONLINE file system that will hold it
(after the archive's File Meta, written first), into the MD5, and through the structure
walker, which keeps the handful of top-level elements the index needs. Nothing of the
data set is held in memory beyond one PDU, and nothing goes to ``$TMPDIR``.

A failure (malformed structure, disk full, inflation past its bound) only marks the
instance refused: the rest of its fragments are read and dropped, and the C-STORE handler
answers with the status and comment recorded here. ``discard`` drops the file, whose
unnamed inode then disappears (archived.storage.StagedFile).
"""

from __future__ import annotations

import errno
import hashlib
import re
import struct
import time
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from archived.dicom.encoding import file_meta_bytes
from archived.dicom.errors import MalformedDatasetError
from archived.dicom.hashing import PipelinedMD5
from archived.dicom.walker import LONG_VRS, DatasetWalker
from archived.index import FileSystemRecord, InstanceAttributes, MissingAttributeError
from archived.index.attributes import FIELD_KEYWORDS, REQUIRED_KEYWORDS, attributes_of
from archived.storage import StagedFile

OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
INFLATE_CHUNK = 1 << 20
MAX_COMMENT = 64  # Error Comment is LO

KEPT_TAGS = frozenset(
    tag
    for keyword in (*REQUIRED_KEYWORDS, *FIELD_KEYWORDS.values(), "SpecificCharacterSet")
    if (tag := tag_for_keyword(keyword)) is not None
)
UID_TAGS = {
    keyword: tag for keyword in REQUIRED_KEYWORDS if (tag := tag_for_keyword(keyword)) is not None
}
# PS3.5 9.1: digits and dots, no empty component, no leading zero, at most 64 characters.
UID_SYNTAX = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` is not a valid UID (PS3.5 9.1), or None when it is."""
    if not uid:
        return "is empty"
    if len(uid) > 64:
        return f"has {len(uid)} characters (at most 64)"
    if not UID_SYNTAX.fullmatch(uid):
        return "is not digits separated by dots (PS3.5 9.1)"
    return None


@dataclass(frozen=True)
class Refusal:
    """Why an instance is not stored: the C-STORE status and its Error Comment."""

    status: int
    reason: str

    @property
    def comment(self) -> str:
        return self.reason[:MAX_COMMENT]


class StoreRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


@dataclass
class Timing:
    """Where one instance's time went, in seconds (the bench prints the shares)."""

    first_byte: float = 0.0
    last_byte: float = 0.0
    write: float = 0.0  # write(2), MD5 and the structure walk, in the DUL thread


class IncomingInstance:
    """The data set of one C-STORE-RQ, streamed into a StagedFile on ``filesystem``."""

    def __init__(
        self,
        filesystem: FileSystemRecord | None,
        *,
        sop_cuid: str,
        sop_iuid: str,
        tsuid: str,
        calling_aet: str,
        max_inflated: int,
        md5: PipelinedMD5 | None = None,
        refusal: Refusal | None = None,
        duplicate: bool = False,
    ) -> None:
        self.filesystem = filesystem
        self.sop_cuid = sop_cuid
        self.sop_iuid = sop_iuid
        self.tsuid = tsuid
        self.calling_aet = calling_aet
        self.refusal = refusal
        self.duplicate = duplicate
        self.received = 0  # data set bytes as they came over the network
        self.timing = Timing()
        self.staged: StagedFile | None = None
        self._md5: PipelinedMD5 | hashlib._Hash = md5 or hashlib.md5(usedforsecurity=False)
        syntax = UID(tsuid)
        self._deflated = syntax.is_deflated
        self._implicit = syntax.is_implicit_VR
        self._little = syntax.is_little_endian
        self._walker = DatasetWalker(self._implicit, self._little, KEPT_TAGS)
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if self._deflated else None
        self._inflated = 0
        self._max_inflated = max_inflated

    @property
    def accepting(self) -> bool:
        return self.refusal is None and not self.duplicate and self.filesystem is not None

    @property
    def md5(self) -> str:
        """The file's MD5 (waits for the hashing worker to catch up)."""
        return self._md5.hexdigest()

    # -- DUL thread ---------------------------------------------------------------------

    def write(self, fragment: memoryview) -> None:
        now = time.perf_counter()
        if not self.received:
            self.timing.first_byte = now
        self.received += len(fragment)
        if not self.accepting:
            return
        try:
            if self.staged is None:
                self._open()
            assert self.staged is not None
            self.staged.write(fragment)
            self._md5.update(bytes(fragment))  # a copy: the PDU buffer is reused
            self._walk(fragment)
        except _InflationLimit as exc:
            self._refuse(OUT_OF_RESOURCES, str(exc))
        except MalformedDatasetError as exc:
            self._refuse(CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            where = self.filesystem.path if self.filesystem else "?"
            self._refuse(
                OUT_OF_RESOURCES,
                f"ONLINE file system {where} is full"
                if full
                else f"cannot write to {where}: {exc}",
            )
        self.timing.write += time.perf_counter() - now

    def _open(self) -> None:
        assert self.filesystem is not None
        self.staged = StagedFile(self.filesystem.root)
        meta = file_meta_bytes(self.sop_cuid, self.sop_iuid, self.tsuid, self.calling_aet)
        self.staged.write(meta)
        self._md5.update(meta)

    def _walk(self, fragment: memoryview) -> None:
        if self._inflater is None:
            self._walker.feed(fragment)
            return
        data: bytes | memoryview = fragment
        while data:
            try:
                out = self._inflater.decompress(data, INFLATE_CHUNK)
            except zlib.error as exc:
                raise MalformedDatasetError(f"deflated data set does not inflate: {exc}") from exc
            self._count_inflated(len(out))
            self._walker.feed(out)
            data = self._inflater.unconsumed_tail

    def _count_inflated(self, n: int) -> None:
        self._inflated += n
        if self._inflated > self._max_inflated:
            raise _InflationLimit(self._max_inflated)

    def finish(self) -> None:
        """The last fragment is in: the data set must end where an element can end."""
        self.timing.last_byte = time.perf_counter()
        if not self.accepting:
            return
        if self.staged is None:
            self._refuse(CANNOT_UNDERSTAND, "the data set is empty")
            return
        try:
            if self._inflater is not None:
                tail = self._inflater.flush()
                self._count_inflated(len(tail))
                self._walker.feed(tail)
                if not self._inflater.eof:
                    raise MalformedDatasetError("the deflated data set is truncated")
            self._walker.finish()
        except _InflationLimit as exc:
            self._refuse(OUT_OF_RESOURCES, str(exc))
        except MalformedDatasetError as exc:
            self._refuse(CANNOT_UNDERSTAND, str(exc))

    def _refuse(self, status: int, reason: str) -> None:
        self.refusal = Refusal(status, reason)
        self.discard()

    def discard(self) -> None:
        staged, self.staged = self.staged, None
        if staged is not None:
            staged.close()

    # -- C-STORE handler ----------------------------------------------------------------

    def attributes(self) -> InstanceAttributes:
        """The index's attributes, checked against the C-STORE request; raises StoreRefused."""
        if self.refusal is not None:
            raise StoreRefused(self.refusal)
        head = bytes(self._walker.head)
        implicit = self._implicit and not self._deflated
        little = self._little or self._deflated
        # UIDs are checked on the raw values first: pydicom would only warn about them.
        raw = _raw_values(head, implicit, little)
        for label, keyword in (("SOP Instance UID", "SOPInstanceUID"),
                               ("SOP Class UID", "SOPClassUID"),
                               ("Series Instance UID", "SeriesInstanceUID"),
                               ("Study Instance UID", "StudyInstanceUID")):  # fmt: skip
            value = raw.get(UID_TAGS[keyword])
            if value is None:
                continue  # missing: attributes_of names it below
            uid = value.rstrip(b"\x00 ").decode("latin-1")
            problem = uid_problem(uid)
            if problem is not None:
                raise StoreRefused(Refusal(DATASET_MISMATCH, f"{label} {uid!r} {problem}"))
        try:
            attrs = attributes_of(read_dataset(BytesIO(head), implicit, little))
        except MissingAttributeError as exc:
            raise StoreRefused(Refusal(DATASET_MISMATCH, str(exc))) from exc
        except (InvalidDicomError, ValueError, KeyError, TypeError) as exc:
            refusal = Refusal(CANNOT_UNDERSTAND, f"data set cannot be decoded: {exc}")
            raise StoreRefused(refusal) from exc
        if attrs.sop_iuid != self.sop_iuid or attrs.sop_cuid != self.sop_cuid:
            raise StoreRefused(
                Refusal(
                    DATASET_MISMATCH,
                    f"data set is {attrs.sop_iuid} of class {attrs.sop_cuid}, the request "
                    f"says {self.sop_iuid} of {self.sop_cuid}",
                )
            )
        return attrs

    @property
    def root(self) -> Path:
        assert self.filesystem is not None
        return self.filesystem.root


def _raw_values(head: bytes, implicit: bool, little: bool) -> dict[int, bytes]:
    """Tag -> raw value of the kept elements (all short, none of undefined length)."""
    order = "<" if little else ">"
    values: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(head):
        group, element = struct.unpack_from(order + "HH", head, pos)
        if implicit:
            (length,) = struct.unpack_from(order + "I", head, pos + 4)
            start = pos + 8
        elif head[pos + 4 : pos + 6] in LONG_VRS:
            (length,) = struct.unpack_from(order + "I", head, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from(order + "H", head, pos + 6)
            start = pos + 8
        values[(group << 16) | element] = head[start : start + length]
        pos = start + length
    return values


class _InflationLimit(MalformedDatasetError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"inflates beyond MaxInflatedSize ({limit} bytes)")
        self.limit = limit
