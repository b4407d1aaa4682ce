"""Bookkeeping of a parallel ranged download: which bytes are in the file, in order.

Worker threads each fetch one range and write it at its offset (pwrite), reporting every
write with `advance()`. The downloading thread waits in `wait_beyond()` for the
contiguous prefix to grow, hashes it and reports it, so hashing overlaps the transfer
and a reader may use a prefix long before the whole object has arrived.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash as Hasher

    from .common import DataCallback

HASH_BLOCK = 1024 * 1024  # read back in pieces this size: a consumer sees the prefix early


class RangeTracker:
    """Bytes written so far of each range of [start, size)."""

    def __init__(self, start: int, size: int, range_size: int) -> None:
        self.ranges = [(o, min(o + range_size, size)) for o in range(start, size, range_size)]
        self._written = [0] * len(self.ranges)
        self._first_incomplete = 0
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self.cancelled = threading.Event()

    def position(self, index: int) -> int:
        """Where range `index` continues (a retried range resumes, it does not restart)."""
        with self._changed:
            return self.ranges[index][0] + self._written[index]

    def end(self, index: int) -> int:
        return self.ranges[index][1]

    def advance(self, index: int, written: int) -> None:
        with self._changed:
            self._written[index] += written
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        """A range gave up: wake the downloading thread to raise `error`."""
        with self._changed:
            if self._error is None:
                self._error = error
            self.cancelled.set()
            self._changed.notify_all()

    def _contiguous_end(self) -> int:
        while self._first_incomplete < len(self.ranges):
            offset, stop = self.ranges[self._first_incomplete]
            if offset + self._written[self._first_incomplete] < stop:
                return offset + self._written[self._first_incomplete]
            self._first_incomplete += 1
        return self.ranges[-1][1] if self.ranges else 0

    def wait_beyond(self, offset: int) -> int:
        """Block until the contiguous prefix ends after `offset`; return its end."""
        with self._changed:
            while True:
                if self._error is not None:
                    raise self._error
                end = self._contiguous_end()
                if end > offset:
                    return end
                self._changed.wait()


def hash_region(
    fd: int, offset: int, stop: int, md5: Hasher, on_data: DataCallback | None = None
) -> None:
    """Feed bytes [offset, stop) of `fd` to `md5` and `on_data` (from the page cache, just
    written): one read of the bytes serves both."""
    position = offset
    while position < stop:
        data = os.pread(fd, min(HASH_BLOCK, stop - position), position)
        if not data:
            break
        md5.update(data)
        if on_data is not None:
            on_data(memoryview(data))
        position += len(data)
