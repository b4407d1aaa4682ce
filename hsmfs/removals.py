"""Cache files removed off the trio thread, in order with whatever puts data back.

A release (or an unlink) commits first and removes the cache file afterwards, in a worker
thread under the io limiter, so a slow cache disk stalls no request. Until that removal
is done, the same path must not receive new data: a stage's finished part file or a
truncated released file put there first would be removed with it. Whoever puts data
into the cache file of an inode that may have been released awaits ``removed`` first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from .cache import CacheDir

log = logging.getLogger(__name__)


class CacheRemovals:
    def __init__(
        self, cache: CacheDir, io_limiter: trio.CapacityLimiter, spawn: Callable[..., None]
    ) -> None:
        self.cache = cache
        self.io_limiter = io_limiter
        self.spawn = spawn  # starts a background task (the mount's nursery)
        self.pending: dict[int, trio.Event] = {}  # ino -> set once its last removal is done
        self.errors = 0

    def start(self, ino: int) -> None:
        """Remove the cache file of ``ino`` in the background (not async, so a caller's
        catalog change and the start of its removal happen in one step)."""
        previous = self.pending.get(ino)
        done = self.pending[ino] = trio.Event()
        self.spawn(self._remove, ino, previous, done)

    async def _remove(self, ino: int, previous: trio.Event | None, done: trio.Event) -> None:
        try:
            with trio.CancelScope(shield=True):  # an unmount waits for it: no leftovers
                if previous is not None:
                    await previous.wait()  # one removal per path at a time, in order
                await trio.to_thread.run_sync(self.cache.remove, ino, limiter=self.io_limiter)
        except OSError as exc:
            self.errors += 1
            log.error("cannot remove the cache file of inode %d: %s", ino, exc)
        finally:
            if self.pending.get(ino) is done:
                del self.pending[ino]
            done.set()

    async def removed(self, ino: int) -> None:
        """Return once no removal of ``ino``'s cache file is pending or running."""
        done = self.pending.get(ino)
        if done is not None:
            await done.wait()

    def statistics(self) -> dict[str, Any]:
        return {"cache_removals_pending": len(self.pending), "cache_removal_errors": self.errors}
