"""Limits on tar metadata headers that tarfile would otherwise trust blindly.

tarfile reads a GNU long-name or pax header of any claimed size into memory, and before
Python 3.11.10 its pax record parser is quadratic on crafted input (CVE-2024-6232): a
100 KiB header could stall the daemon for minutes. These checks run before tarfile
parses such a header and turn an oversized or malformed one into HostileHeader.
"""

from __future__ import annotations

import re
import tarfile
from typing import Any, BinaryIO

from ._errors import TarIndexError

MAX_META_BYTES = 64 * 1024  # a long name is < 4 KiB; pax headers carry a few fields
MAX_DIGIT_RUN = 512  # tarfile's "\d+ hdrcharset=" search is quadratic in digit runs
_META_TYPES = {
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
}
_PAX_TYPES = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
_DIGITS = re.compile(rb"\d+")


class HostileHeader(TarIndexError):
    """A metadata header that is too large or malformed to hand to tarfile."""


class GuardedTarInfo(tarfile.TarInfo):
    """TarInfo that vets metadata headers first (tarfile documents this override point)."""

    def _proc_member(self, tarfile: Any) -> Any:  # tarfile's own signature is untyped
        if self.type in _META_TYPES:
            if not 0 <= self.size <= MAX_META_BYTES:
                raise HostileHeader(
                    f"metadata header at offset {self.offset} claims {self.size} bytes "
                    f"(at most {MAX_META_BYTES} are accepted)"
                )
            if self.type in _PAX_TYPES:
                check_pax_records(tarfile.fileobj, self.size, self.offset)
        return super()._proc_member(tarfile)  # type: ignore[misc]  # tarfile's private hook


def check_pax_records(fileobj: BinaryIO, size: int, offset: int) -> None:
    """Check that the pax data ahead is whole "LEN KEY=VALUE\\n" records, in linear time."""
    start = fileobj.tell()
    buf = fileobj.read(size)
    fileobj.seek(start)
    if any(len(run) > MAX_DIGIT_RUN for run in _DIGITS.findall(buf)):
        raise HostileHeader(f"pax header at offset {offset} has an absurdly long number")
    pos = 0
    while pos < len(buf):
        if buf[pos] == 0 and buf.count(b"\0", pos) == len(buf) - pos:
            return  # NUL padding after the last record
        space = buf.find(b" ", pos, pos + 21)
        digits = buf[pos:space] if space > pos else b""
        length = int(digits) if digits.isdigit() else 0
        end = pos + length
        # The shortest record is "LEN K=\n"; its "=" must follow a non-empty keyword.
        if (
            length < len(digits) + 4
            or end > len(buf)
            or buf[end - 1] != ord("\n")
            or buf[space + 1] == ord("=")
            or buf.find(b"=", space + 2, end - 1) < 0
        ):
            raise HostileHeader(f"pax header at offset {offset} has a malformed record")
        pos = end
