"""The state directory lock: one daemon (or fsck) per state directory at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StateLocked


class StateLock:
    def __init__(self, state_dir: Path, purpose: str) -> None:
        self.path = state_dir / "lock"
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateLocked(
                f"state directory {self.path.parent} is in use by {holder}; "
                "unmount that file system first (hsmfs umount MOUNTPOINT)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.purpose})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
