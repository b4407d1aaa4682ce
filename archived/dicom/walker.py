"""Structure check of a data set while it arrives, and the few elements the index needs.

``DatasetWalker.feed`` takes the data set bytes (inflated, for the Deflate syntax) in
whatever pieces the network delivers and walks the element headers without decoding
values: nested sequences and items of defined and undefined length, encapsulated pixel
data, VR UN. Values are skipped, never buffered, except the top-level elements named in
``keep``, which are copied whole (header and value) into ``head``: those bytes form a
small data set of their own that pydicom decodes into the index's attributes. An
invalid VR, a missing delimiter, an item where none belongs, or an end in the middle of
an element raises MalformedDatasetError naming the byte where it went wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import Final

from archived.dicom.errors import MalformedDatasetError

UNDEFINED: Final = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}  # fmt: skip
SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO",
             b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}  # fmt: skip
MAX_DEPTH = 64
MAX_KEPT_VALUE = 1 << 16  # an indexed attribute longer than this is not one (LO is 64 chars)

READ, SKIP = 0, 1
EOF = b""  # sent to the walk for a READ at the very end of the data set
Request = tuple[int, int]
Walk = Generator[Request, bytes, None]


class DatasetWalker:
    """Feed bytes in order; ``finish()`` at the end; ``head`` holds the kept elements."""

    def __init__(self, implicit: bool, little_endian: bool, keep: frozenset[int]) -> None:
        order = "<" if little_endian else ">"
        self._tag_length = struct.Struct(order + "HHI")
        self._tag_vr_short = struct.Struct(order + "HH2sH")
        self._long_length = struct.Struct(order + "I")
        self._implicit = implicit
        self._keep = keep
        self.head = bytearray()
        self.position = 0  # bytes consumed by the walk so far
        self._pending = bytearray()
        self._walk = self._dataset()
        self._request: Request | None = next(self._walk)
        self._at_element_start = True

    # -- driving ------------------------------------------------------------------------

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._request is None:
                raise MalformedDatasetError(
                    f"{end - pos} stray bytes after the data set at byte {self.position}"
                )
            kind, need = self._request
            if kind == SKIP:
                take = min(need, end - pos)
                pos += take
                self.position += take
                if take < need:
                    self._request = (SKIP, need - take)
                    return
                self._advance(b"")
                continue
            take = min(need - len(self._pending), end - pos)
            self._pending += view[pos : pos + take]
            pos += take
            self.position += take
            if len(self._pending) < need:
                return
            chunk = bytes(self._pending)
            self._pending.clear()
            self._advance(chunk)

    def finish(self) -> None:
        """The data set has ended: raise unless it ended where an element may end."""
        if self._request is None:
            return
        kind, _ = self._request
        if kind == READ and not self._pending and self._at_element_start:
            self._advance(EOF)
            if self._request is None:
                return
        raise MalformedDatasetError(
            f"truncated: the data set ends inside an element at byte {self.position}"
        )

    def _advance(self, chunk: bytes) -> None:
        try:
            self._request = self._walk.send(chunk)
        except StopIteration:
            self._request = None

    def _fail(self, what: str) -> MalformedDatasetError:
        return MalformedDatasetError(f"{what} at byte {self.position} of the data set")

    # -- the walk -----------------------------------------------------------------------

    def _dataset(self) -> Walk:
        """Top level: elements until the end of the data set."""
        while True:
            self._at_element_start = True
            header = yield (READ, 8)
            self._at_element_start = False
            if header is EOF or not header:
                return
            yield from self._element(header, depth=0, implicit=self._implicit)

    def _element(self, header: bytes, depth: int, implicit: bool) -> Walk:
        group, element, length = self._tag_length.unpack(header)
        tag = (group << 16) | element
        if group == 0xFFFE:
            raise self._fail(f"unexpected delimiter ({group:04X},{element:04X})")
        vr = b""
        raw = header
        if not implicit:
            _, _, vr, short_length = self._tag_vr_short.unpack(header)
            if vr in LONG_VRS:
                extension = yield (READ, 4)
                (length,) = self._long_length.unpack(extension)
                raw = header + extension
            elif vr in SHORT_VRS:
                length = short_length
            else:
                raise self._fail(f"invalid VR {vr!r} in ({group:04X},{element:04X})")
        if length == UNDEFINED:
            yield from self._items(depth + 1, implicit or vr == b"UN")
            return
        if depth == 0 and tag in self._keep and length <= MAX_KEPT_VALUE:
            value = (yield (READ, length)) if length else b""
            self.head += raw
            self.head += value
        elif length:
            yield (SKIP, length)

    def _items(self, depth: int, implicit: bool) -> Walk:
        """The items of an undefined-length sequence (or of encapsulated pixel data)."""
        if depth > MAX_DEPTH:
            raise self._fail("sequences nested too deeply")
        while True:
            header = yield (READ, 8)
            group, element, length = self._tag_length.unpack(header)
            tag = (group << 16) | element
            if tag == SEQUENCE_END:
                return
            if tag != ITEM:
                raise self._fail(f"({group:04X},{element:04X}) where an item belongs")
            if length == UNDEFINED:
                yield from self._item_elements(depth, implicit)
            elif length:
                yield (SKIP, length)

    def _item_elements(self, depth: int, implicit: bool) -> Walk:
        """The elements of an undefined-length item, up to its delimiter."""
        while True:
            header = yield (READ, 8)
            group, element, _ = self._tag_length.unpack(header)
            if (group << 16) | element == ITEM_END:
                return
            yield from self._element(header, depth, implicit=implicit)
