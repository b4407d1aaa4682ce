"""ONLINE file layout and durable writes: dcm4chee 2.x paths, temp file + fsync + link, MD5.

An instance lands at ``yyyy/M/d/H/<study8>/<series8>/<sop8>`` below a file system's
directory, where each ``*8`` is Java's ``String.hashCode`` of the UID as 8 upper-case hex
digits. When that name is taken, the hash is incremented until a free name is found (as
dcm4chee 2.x does), so an existing dcm4chee layout can be adopted unchanged.

Durability order: write a temporary file in the target directory while hashing, fsync it,
hard-link it to the final name (fails atomically if the name exists, so two writers never
clobber each other), unlink the temporary name, fsync the directory (and the parents of
any directory created on the way).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

COPY_CHUNK = 1 << 20
MAX_NAME_PROBES = 1000


class StorageError(Exception):
    """Writing an instance to an ONLINE file system failed."""


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: 31*h + c over UTF-16 code units, 32-bit signed overflow."""
    data = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def hash_name(value: int | str) -> str:
    """8 upper-case hex digits of a (Java) hash code, as dcm4chee names files and dirs."""
    code = java_string_hash(value) if isinstance(value, str) else value
    return f"{code & 0xFFFFFFFF:08X}"


def date_dir(when: float) -> str:
    """``yyyy/M/d/H`` of local time, without zero padding (dcm4chee's default pattern)."""
    t = time.localtime(when)
    return f"{t.tm_year}/{t.tm_mon}/{t.tm_mday}/{t.tm_hour}"


def instance_dir(study_iuid: str, series_iuid: str, when: float) -> str:
    """Directory of an instance relative to the file system root."""
    return f"{date_dir(when)}/{hash_name(study_iuid)}/{hash_name(series_iuid)}"


@dataclass(frozen=True)
class StoredFile:
    """A file made durable on a file system: its relative path, size and MD5."""

    filepath: str
    size: int
    md5: str


def _makedirs_durably(root: Path, relative_dir: str) -> Path:
    """Create ``root/relative_dir``; fsync the parent of every directory created."""
    target = root / relative_dir
    if target.is_dir():
        return target
    missing: list[Path] = []
    probe = target
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # another association created it; its parent was synced by that one
        fsync_dir(directory.parent)
    return target


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_free_name(tmp: Path, directory: Path, hash_code: int) -> str:
    """Hard-link tmp to the first free name from hash_code upwards; return the name."""
    code = hash_code
    for _ in range(MAX_NAME_PROBES):
        name = hash_name(code)
        try:
            os.link(tmp, directory / name)
        except FileExistsError:
            code = ((code + 1 + (1 << 31)) % (1 << 32)) - (1 << 31)
            continue
        return name
    raise StorageError(f"{directory}: no free file name after {MAX_NAME_PROBES} probes")


def write_instance(
    root: Path,
    relative_dir: str,
    sop_iuid: str,
    chunks: Iterable[bytes],
) -> StoredFile:
    """Write ``chunks`` durably as the instance's file below ``root``; MD5 while writing.

    Returns the path relative to ``root``. Nothing is left behind on failure.
    """
    try:
        directory = _makedirs_durably(root, relative_dir)
        tmp = directory / f".{uuid.uuid4().hex}.part"
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with open(tmp, "xb", buffering=0) as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                os.fsync(out.fileno())
            name = _link_free_name(tmp, directory, java_string_hash(sop_iuid))
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(directory)
    except OSError as exc:
        raise StorageError(f"{root / relative_dir}: cannot store {sop_iuid}: {exc}") from exc
    return StoredFile(f"{relative_dir}/{name}", size, digest.hexdigest())


def read_chunks(stream: BinaryIO, start: int = 0, chunk: int = COPY_CHUNK) -> Iterable[bytes]:
    """Yield the bytes of ``stream`` from ``start`` to its end."""
    stream.seek(start)
    while block := stream.read(chunk):
        yield block


def remove_file(root: Path, filepath: str, on_error: Callable[[OSError], None]) -> None:
    """Unlink one stored file; report (not raise) a failure, since the index is the truth."""
    try:
        (root / filepath).unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        on_error(exc)
