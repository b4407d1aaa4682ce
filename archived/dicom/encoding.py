"""Raw dataset bytes as received: locate them in pynetdicom's file, check their structure.

pynetdicom (STORE_RECV_CHUNKED_DATASET) writes a received dataset to a temporary file:
preamble, 'DICM', its own File Meta group, then the data set bytes exactly as received.
The archive keeps those bytes unchanged and puts its own File Meta in front.

``check_structure`` walks the element headers of the data set (nested sequences and
encapsulated pixel data included) without decoding values, so a truncated or garbled
dataset is refused before anything is written.
"""

from __future__ import annotations

import io
import mmap
import struct
import zlib
from typing import BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

from archived.dicom.errors import MalformedDatasetError

IMPLEMENTATION_VERSION_NAME = "ARCHIVED_1"
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}  # fmt: skip
SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO",
             b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}  # fmt: skip
MAX_DEPTH = 64


def dataset_offset(stream: BinaryIO) -> int:
    """Offset of the data set after the preamble and File Meta group of a Part 10 file."""
    stream.seek(0)
    head = stream.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
        raise MalformedDatasetError("no DICOM File Meta group at the start of the file")
    if head[136:138] != b"UL":
        raise MalformedDatasetError("File Meta group length is not encoded as UL")
    (group_length,) = struct.unpack_from("<I", head, 140)
    return 144 + group_length


def file_meta_bytes(sop_class: str, sop_instance: str, tsuid: str, source_aet: str) -> bytes:
    """Preamble, 'DICM' and the archive's File Meta Information for a stored instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(tsuid)
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if source_aet:
        meta.SourceApplicationEntityTitle = source_aet
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def check_structure(stream: BinaryIO, offset: int, tsuid: str) -> None:
    """Raise MalformedDatasetError unless the data set from ``offset`` is well formed."""
    syntax = UID(tsuid)
    size = stream.seek(0, io.SEEK_END)
    if size <= offset:
        raise MalformedDatasetError("the data set is empty")
    with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        if syntax.is_deflated:
            try:
                data: bytes | mmap.mmap = zlib.decompress(mapped[offset:], -zlib.MAX_WBITS)
            except zlib.error as exc:
                raise MalformedDatasetError(f"deflated data set does not inflate: {exc}") from exc
            start = 0
        else:
            data, start = mapped, offset
        walker = _Walker(data, syntax.is_implicit_VR, syntax.is_little_endian)
        end = walker.elements(start, len(data), depth=0, in_item=False)
        if end != len(data):
            raise MalformedDatasetError(f"{len(data) - end} stray bytes after the data set")
        del walker


class _Walker:
    """Element-header walk over a buffer; lengths checked against what is there."""

    def __init__(self, data: bytes | mmap.mmap, implicit: bool, little: bool) -> None:
        self.data = data
        self.implicit = implicit
        order = "<" if little else ">"
        self.tag_length = struct.Struct(order + "HHI")
        self.tag_vr_short = struct.Struct(order + "HH2sH")
        self.long_length = struct.Struct(order + "I")

    def _fail(self, pos: int, what: str) -> MalformedDatasetError:
        return MalformedDatasetError(f"{what} at byte {pos} of the data set")

    def elements(
        self, pos: int, end: int, depth: int, in_item: bool, implicit: bool | None = None
    ) -> int:
        implicit = self.implicit if implicit is None else implicit
        if depth > MAX_DEPTH:
            raise self._fail(pos, "sequences nested too deeply")
        while pos < end:
            if pos + 8 > end:
                raise self._fail(pos, "truncated element header")
            group, element, length = self.tag_length.unpack_from(self.data, pos)
            tag = (group << 16) | element
            if tag == ITEM_END:
                if not in_item:
                    raise self._fail(pos, "item delimiter outside an item")
                return pos + 8
            if group == 0xFFFE:
                raise self._fail(pos, f"unexpected delimiter ({group:04X},{element:04X})")
            vr = b""
            if implicit:
                pos += 8
            else:
                _, _, vr, short_length = self.tag_vr_short.unpack_from(self.data, pos)
                if vr in LONG_VRS:
                    if pos + 12 > end:
                        raise self._fail(pos, "truncated element header")
                    (length,) = self.long_length.unpack_from(self.data, pos + 8)
                    pos += 12
                elif vr in SHORT_VRS:
                    length = short_length
                    pos += 8
                else:
                    raise self._fail(pos, f"invalid VR {vr!r} in ({group:04X},{element:04X})")
            if length == UNDEFINED:
                pos = self.items(pos, end, depth + 1, implicit or vr == b"UN")
            elif pos + length > end:
                raise self._fail(pos, f"value of ({group:04X},{element:04X}) truncated")
            else:
                pos += length
        if in_item:
            raise self._fail(pos, "item without its delimiter (truncated)")
        return pos

    def items(self, pos: int, end: int, depth: int, implicit: bool) -> int:
        while True:
            if pos + 8 > end:
                raise self._fail(pos, "sequence without its delimiter (truncated)")
            group, element, length = self.tag_length.unpack_from(self.data, pos)
            tag = (group << 16) | element
            pos += 8
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                raise self._fail(pos - 8, f"({group:04X},{element:04X}) where an item belongs")
            if length == UNDEFINED:
                pos = self.elements(pos, end, depth, in_item=True, implicit=implicit)
            elif pos + length > end:
                raise self._fail(pos, "item truncated")
            else:
                pos += length
