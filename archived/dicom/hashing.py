"""MD5 of received instances on worker threads, so the DUL thread only reads and writes.

hashlib releases the GIL while it hashes, so a worker hashes one PDU while the DUL thread
receives the next: over one association MD5 (0.7 ms per 512 KiB here) then overlaps the
network instead of adding to it. Each instance is pinned to one worker, whose queue keeps
its fragments in order; a bounded queue holds the DUL back when hashing falls behind, so
a 2 GiB instance never piles up in memory.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import threading

QUEUE_FRAGMENTS = 16  # per worker: 2 MiB at a 128 KiB PDU

_Task = tuple["hashlib._Hash | None", "bytes | threading.Event"]


class PipelinedMD5:
    """An MD5 fed in order on a worker; ``hexdigest`` waits for what is queued."""

    def __init__(self, tasks: queue.Queue[_Task]) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._tasks = tasks

    def update(self, data: bytes) -> None:
        self._tasks.put((self._md5, data))

    def hexdigest(self) -> str:
        done = threading.Event()
        self._tasks.put((None, done))
        done.wait()
        return self._md5.hexdigest()


class HashWorkers:
    """A few hashing threads shared by every association (started on first use)."""

    def __init__(self, workers: int = 2) -> None:
        self._queues: list[queue.Queue[_Task]] = [
            queue.Queue(maxsize=QUEUE_FRAGMENTS) for _ in range(workers)
        ]
        self._next = itertools.cycle(range(workers))
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def md5(self) -> PipelinedMD5:
        with self._lock:
            if not self._threads:
                for n, tasks in enumerate(self._queues):
                    thread = threading.Thread(target=_work, args=(tasks,),
                                              name=f"archived-md5-{n}", daemon=True)  # fmt: skip
                    thread.start()
                    self._threads.append(thread)
            return PipelinedMD5(self._queues[next(self._next)])

    def stop(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for tasks in self._queues:
            if threads:
                tasks.put((None, _STOP))
        for thread in threads:
            thread.join(timeout=10)


_STOP = threading.Event()


def _work(tasks: queue.Queue[_Task]) -> None:
    while True:
        md5, item = tasks.get()
        if md5 is not None:
            md5.update(item)  # type: ignore[arg-type]
        elif item is _STOP:
            return
        else:
            item.set()  # type: ignore[union-attr]
