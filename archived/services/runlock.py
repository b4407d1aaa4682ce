"""One run of a service at a time across processes (`archived serve` and `archivectl run`)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from archived.services.errors import BusyError


@contextmanager
def run_lock(index_path: Path, service: str) -> Iterator[None]:
    """Hold ``<index>.<service>.lock``; BusyError if another process holds it now."""
    path = index_path.with_name(f"{index_path.name}.{service}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise BusyError(
                f"{service} is running in another process (pid {holder}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
