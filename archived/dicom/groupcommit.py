"""Group commit: one directory-fsync round and one SQLite transaction per group of instances.

Every instance whose file is complete, fdatasynced and linked into its directory is handed
to the committer thread (``commit``), and its C-STORE handler waits. The thread takes all
instances queued at that moment (from every association, up to ``max_group``), fsyncs each
distinct directory once, indexes them all in one WAL transaction (synchronous=FULL),
and then releases every handler of the group. No timer: the window of a group is the
time the previous group's round took, so a lone association pays no wait and many
associations share the fsyncs (CONCURRENCY.md explains the order and every crash point).

Opt-in early Success (``StoreEarlySuccess``): the handler indexes without a WAL sync and
answers at once; the committer then fdatasyncs the group's files, fsyncs the
directories and the WAL, and marks the instances durable. Storage commitment waits for
that (``wait_durable``) before it reports an instance as committed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archived.index import Index, NewInstance, StoreOutcome
from archived.storage import StagedFile, fsync_dir

LOG = logging.getLogger("archived.dicom.groupcommit")


@dataclass(eq=False)
class PendingInstance:
    """An instance waiting for its group: indexed by the group (``instance`` set), or
    already indexed and only to be made durable (``staged`` set, early Success)."""

    sop_iuid: str
    directory: Path
    instance: NewInstance | None = None
    staged: StagedFile | None = None
    outcome: StoreOutcome | None = None
    error: BaseException | None = None
    group_size: int = 0
    fsync_seconds: float = 0.0
    index_seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


class GroupCommitter:
    """The committer thread; ``commit`` and ``make_durable`` are called by handlers."""

    def __init__(self, index: Index, max_group: int = 64, queue_size: int = 256) -> None:
        self.index = index
        self.max_group = max_group
        self._queue: queue.Queue[PendingInstance | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._fsync_pool = ThreadPoolExecutor(1, thread_name_prefix="archived-groupfsync")
        self._not_durable: dict[str, int] = {}  # early-Success SOP Instance UIDs -> count
        self._durable = threading.Condition()
        self._stats_lock = threading.Lock()
        self._groups = 0
        self._instances = 0
        self._largest = 0
        self._committing = 0  # instances in the group being made durable now
        self._fsync_seconds = 0.0
        self._index_seconds = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="archived-groupcommit",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish every queued group, then end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
        self._fsync_pool.shutdown(wait=True)

    # -- handler side -------------------------------------------------------------------

    def commit(self, pending: PendingInstance) -> StoreOutcome:
        """Index ``pending`` with its group; return once the group is durable."""
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def make_durable(self, pending: PendingInstance) -> None:
        """Early Success: ``pending`` is indexed already; sync it in the next group."""
        with self._durable:
            self._not_durable[pending.sop_iuid] = self._not_durable.get(pending.sop_iuid, 0) + 1
        self._queue.put(pending)

    def wait_durable(self, sop_iuids: Iterable[str], timeout: float) -> bool:
        """Wait until none of ``sop_iuids`` waits for its group any more."""
        wanted = set(sop_iuids)
        with self._durable:
            return self._durable.wait_for(
                lambda: not wanted.intersection(self._not_durable), timeout
            )

    # -- committer thread ---------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
            with self._stats_lock:
                self._committing = len(group)
            self._round(group)

    def _round(self, group: list[PendingInstance]) -> None:
        started = time.perf_counter()
        error: BaseException | None = None
        # The fsyncs run on a helper thread while this one prepares the index rows; the
        # transaction commits only after they have all returned (before_commit).
        syncing = self._fsync_pool.submit(_sync_files_and_directories, group)
        to_index = [p for p in group if p.instance is not None]
        try:
            if to_index:
                results = self.index.store_instances(
                    [p.instance for p in to_index if p.instance is not None],
                    before_commit=syncing.result,
                )
                for pending, result in zip(to_index, results, strict=True):
                    if isinstance(result, Exception):
                        pending.error = result
                    else:
                        pending.outcome = result
            else:
                syncing.result()
            if len(to_index) < len(group):
                self.index.sync_wal()
        except Exception as exc:  # fsync or the index transaction: the whole group fails
            LOG.error("group of %d instance(s) not committed: %s", len(group), exc)
            error = exc
        synced = syncing.result() if error is None else started
        finished = time.perf_counter()
        self._record(group, synced - started, finished - synced)
        self._release(group, error)

    def _record(self, group: list[PendingInstance], fsync: float, index: float) -> None:
        for pending in group:
            pending.group_size = len(group)
            pending.fsync_seconds = fsync
            pending.index_seconds = index
        with self._stats_lock:
            self._groups += 1
            self._committing = 0
            self._instances += len(group)
            self._largest = max(self._largest, len(group))
            self._fsync_seconds += fsync
            self._index_seconds += index

    def _release(self, group: list[PendingInstance], error: BaseException | None) -> None:
        early = [p for p in group if p.instance is None]
        for pending in early:
            if pending.staged is not None:
                pending.staged.close()
            if error is not None:
                LOG.error("instance %s was answered with Success but could not be made "
                          "durable: %s", pending.sop_iuid, error)  # fmt: skip
        if early:
            with self._durable:
                for pending in early:
                    left = self._not_durable.get(pending.sop_iuid, 1) - 1
                    if left:
                        self._not_durable[pending.sop_iuid] = left
                    else:
                        self._not_durable.pop(pending.sop_iuid, None)
                self._durable.notify_all()
        for pending in group:
            if error is not None and pending.error is None:
                pending.error = error
            pending.done.set()

    def statistics(self) -> dict[str, Any]:
        with self._stats_lock:
            groups = self._groups
            return {
                "groups": groups,
                "instances": self._instances,
                "largest_group": self._largest,
                "mean_group": round(self._instances / groups, 2) if groups else 0.0,
                "fsync_ms_per_group": round(1000 * self._fsync_seconds / groups, 3)
                if groups
                else 0.0,
                "index_ms_per_group": round(1000 * self._index_seconds / groups, 3)
                if groups
                else 0.0,
                "queued": self._queue.qsize(),
                "committing": self._committing,
            }


def _sync_files_and_directories(group: list[PendingInstance]) -> float:
    """fdatasync early-Success files, then fsync each directory once; return the time."""
    for pending in group:
        if pending.staged is not None:
            pending.staged.datasync()
    for directory in {p.directory for p in group}:
        fsync_dir(directory)
    return time.perf_counter()
