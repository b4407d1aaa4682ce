"""Build tars for the tarindex tests: with tarfile, with GNU tar, and by hand."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hsmfs.tarindex import MemberKind, TarIndex, TarMember

BLOCK = 512


@dataclass(frozen=True)
class Entry:
    """One member to put in a tar: a file (data), a directory, or a link (target)."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    target: str = ""
    mode: int = 0o644
    mtime: int = 1_300_000_000


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5sum_text(files: dict[str, bytes]) -> bytes:
    """md5sum(1) output for `files` (name -> data)."""
    return "".join(f"{md5_hex(data)}  {name}\n" for name, data in files.items()).encode()


def build_tar(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar made by Python's tarfile in the given format."""
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.mode = entry.mode
            info.mtime = entry.mtime
            info.linkname = entry.target
            info.size = len(entry.data) if entry.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(entry.data) if info.size else None)
    return out.getvalue()


def build_dicom_like_tar(files: dict[str, bytes], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar as FileCopy writes it: MD5SUM first, then the files."""
    entries = [Entry("MD5SUM", md5sum_text(files))]
    entries += [Entry(name, data) for name, data in files.items()]
    return build_tar(entries, fmt)


def gnu_tar(directory: Path, names: list[str], *options: str) -> bytes:
    """A tar made by the `tar` command from `names` below `directory`."""
    result = subprocess.run(
        ["tar", "-c", "-f", "-", "-C", str(directory), *options, "--", *names],
        check=True,
        capture_output=True,
    )
    return result.stdout


def served_bytes(tar: bytes, index: TarIndex, member: TarMember) -> bytes:
    """What hsmfs would serve for a member: the bytes at its data offset."""
    target = index.resolve(member.path)
    return tar[target.data_offset : target.data_offset + target.size]


def file_contents(tar: bytes, index: TarIndex) -> dict[str, bytes]:
    """path -> served bytes for every file and hard-link member of the index."""
    return {
        m.path: served_bytes(tar, index, m)
        for m in index
        if m.kind in (MemberKind.FILE, MemberKind.HARDLINK)
    }


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def raw_header(
    name: bytes,
    *,
    size: int = 0,
    typeflag: bytes = b"0",
    linkname: bytes = b"",
    size_field: bytes | None = None,
    checksum_delta: int = 0,
) -> bytes:
    """One hand-made ustar header block; `size_field` overrides the encoded size."""
    header = bytearray(BLOCK)
    header[0:100] = name[:100].ljust(100, b"\0")
    header[100:108] = _octal(0o644, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = size_field if size_field is not None else _octal(size, 12)
    header[136:148] = _octal(1_300_000_000, 12)
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[157:257] = linkname[:100].ljust(100, b"\0")
    header[257:265] = b"ustar\x0000"
    checksum = sum(header) + checksum_delta
    header[148:156] = f"{checksum:06o}".encode() + b"\0 "
    return bytes(header)


def raw_member(name: bytes, data: bytes = b"", **fields: object) -> bytes:
    """A hand-made header plus its data, padded to whole blocks."""
    padding = b"\0" * (-len(data) % BLOCK)
    return raw_header(name, size=len(data), **fields) + data + padding  # type: ignore[arg-type]


def pax_record(keyword: str, value: bytes) -> bytes:
    body = b" " + keyword.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def raw_pax_member(records: bytes, typeflag: bytes = b"x") -> bytes:
    """A pax extended header block sequence carrying `records` as its data."""
    return raw_member(b"PaxHeader", records, typeflag=typeflag)


END = b"\0" * (2 * BLOCK)


def raw_tar(*members: bytes, end: bytes = END) -> bytes:
    return b"".join(members) + end
