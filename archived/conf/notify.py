"""Change notifications: subscribers, and the watcher thread that notices commits of other
processes.

Mechanism: every commit bumps a generation counter in the store (a key in LMDB; the file's
mtime/inode/size for json:///). The watcher polls it every `poll_interval` seconds (default
0.1 s; one LMDB read transaction costs microseconds) and, when it moved, reloads the changed
shards and tells subscribers which paths changed. Latency across processes: at most one poll
interval plus the reload (about 0.1 s); in the committing process, subscribers are called
right after the commit, on the committing thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class ChangeEvent:
    """Paths (JSON Pointer) changed by one committed transaction or one remote refresh."""

    paths: tuple[str, ...]
    origin: Literal["local", "remote"]

    def touches(self, prefix: str) -> bool:
        """Whether anything at or below `prefix` changed (or a parent of it was replaced)."""
        prefix = prefix.rstrip("/")
        return any(
            p == prefix or p.startswith(prefix + "/") or prefix.startswith(p + "/")
            for p in self.paths
        )


Callback = Callable[[ChangeEvent], None]


class Subscription:
    """Returned by ConfigStore.subscribe(); cancel() stops the callbacks."""

    def __init__(self, owner: Subscribers, callback: Callback) -> None:
        self._owner = owner
        self.callback = callback

    def cancel(self) -> None:
        self._owner.remove(self)


class Subscribers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Subscription] = []

    def add(self, callback: Callback) -> Subscription:
        sub = Subscription(self, callback)
        with self._lock:
            self._items.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._items:
                self._items.remove(sub)

    def __len__(self) -> int:
        return len(self._items)

    def dispatch(self, event: ChangeEvent) -> None:
        if not event.paths:
            return
        with self._lock:
            items = list(self._items)
        for sub in items:
            try:
                sub.callback(event)
            except Exception:
                log.exception("configuration change subscriber %r failed", sub.callback)


class Watcher:
    """A daemon thread calling `poll()` every `interval` seconds until stopped."""

    def __init__(self, poll: Callable[[], None], interval: float) -> None:
        self._poll = poll
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conf-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception:
                log.exception("refreshing the configuration view failed; retrying")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
