"""Runs FileCopy, SyncFileStatus and the deleter on their TaskIntervals inside `archived serve`.

Concurrency: one daemon thread per service (threads, like pynetdicom's, since the index
is a per-thread SQLite connection). A run holds the service's lock file (runlock), so a
scheduled run and `archivectl run` in another process never overlap. Each thread re-reads
its interval from the live configuration at least every POLL seconds, so enabling a
service or changing its interval takes effect without a restart. ``stop()`` sets one
event and joins the threads; a run in progress finishes first (runs are bounded by
LimitNumberOfFilesPerTask, the batch size and the quiet series found).
The only shared state is ``_last`` and ``_last_work`` (the last report per service, and
the last one that did or failed anything), guarded by ``_lock``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from archived.conf import ArchiveDeviceExtension, ConfigError, ConfigStore
from archived.index import ArchiveIndexError, Index
from archived.services.deleter import DeleterService
from archived.services.errors import ServiceError
from archived.services.filecopy import FileCopyService
from archived.services.intervals import TaskInterval
from archived.services.progress import ProgressCallback, no_progress
from archived.services.report import RunReport
from archived.services.runlock import run_lock
from archived.services.syncstatus import SyncFileStatusService

LOG = logging.getLogger("archived.services")
POLL = 5.0
SUMMARY_LINES = 10


class Service(Protocol):
    name: str

    def interval(self) -> TaskInterval | None: ...

    def run(
        self, dry_run: bool = False, *, force: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> RunReport: ...  # fmt: skip

    def statistics(self) -> dict[str, Any]: ...


def archive_settings(store: ConfigStore) -> Callable[[], ArchiveDeviceExtension]:
    """The live archive extension of the store's own device (defaults if it has none)."""

    def settings() -> ArchiveDeviceExtension:
        return store.own_device().archive or ArchiveDeviceExtension()

    return settings


def build_services(
    index: Index, settings: Callable[[], ArchiveDeviceExtension]
) -> dict[str, Service]:
    services: list[Service] = [
        FileCopyService(index, settings),
        SyncFileStatusService(index, settings),
        DeleterService(index, settings),
    ]
    return {service.name: service for service in services}


def run_service(
    service: Service, index_path: Path, dry_run: bool = False, *, force: bool = False,
    progress: ProgressCallback = no_progress,
) -> RunReport:  # fmt: skip
    """One run under the service's lock; ServiceError etc. propagate to the caller."""
    with run_lock(index_path, service.name):
        return service.run(dry_run=dry_run, force=force, progress=progress)


def summary(report: RunReport) -> dict[str, Any]:
    return {
        "started": report.started,
        "finished": report.finished,
        "dry_run": report.dry_run,
        "counts": dict(report.counts),
        "actions": report.actions[:SUMMARY_LINES],
        "errors": report.errors[:SUMMARY_LINES],
    }


class Scheduler:
    """The services' threads; ``statistics()`` is the services part of the status file."""

    def __init__(
        self, index: Index, settings: Callable[[], ArchiveDeviceExtension], index_path: Path
    ) -> None:
        self.services = build_services(index, settings)
        self.index_path = index_path
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last: dict[str, dict[str, Any]] = {}
        self._last_work: dict[str, dict[str, Any]] = {}
        self._next: dict[str, float | None] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name in self.services:
            thread = threading.Thread(
                target=self._loop, args=(name,), name=f"archived-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def run_once(self, name: str) -> None:
        """Run one service now, recording the outcome (what a scheduled run does)."""
        service = self.services[name]
        started = time.time()
        try:
            report = run_service(service, self.index_path)
        except (ServiceError, ConfigError, ArchiveIndexError, OSError) as exc:
            LOG.error("%s run failed: %s", name, exc)
            result = {"started": started, "finished": time.time(), "failed": str(exc)}
        except Exception as exc:  # a bug must not kill the thread (and the service)
            LOG.exception("%s run failed unexpectedly", name)
            result = {"started": started, "finished": time.time(), "failed": repr(exc)}
        else:
            result = summary(report)
        with self._lock:
            self._last[name] = result
            if result.get("failed") or result.get("counts") or result.get("errors"):
                self._last_work[name] = result

    def _loop(self, name: str) -> None:
        service = self.services[name]
        last_start: float | None = None
        while not self._stop.is_set():
            try:
                interval = service.interval()
            except (ConfigError, ServiceError) as exc:
                LOG.error("%s: %s", name, exc)
                interval = None
            if interval is None or interval.period is None:
                self._set_next(name, None)
                self._stop.wait(POLL)
                continue
            now = time.time()
            # First run: now, or when the quiet hours end; then one period after each start.
            since = now - interval.period.total_seconds() if last_start is None else last_start
            due_at = interval.next_run(datetime.fromtimestamp(since))
            assert due_at is not None  # a period is set
            due = due_at.timestamp()
            self._set_next(name, due)
            if due > now:
                self._stop.wait(min(POLL, due - now))
                continue
            last_start = now
            self.run_once(name)

    def _set_next(self, name: str, when: float | None) -> None:
        with self._lock:
            self._next[name] = when

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            last, upcoming, work = dict(self._last), dict(self._next), dict(self._last_work)
        result = {}
        for name, service in self.services.items():
            try:
                interval = service.interval()
            except (ConfigError, ServiceError):
                interval = None
            result[name] = {
                "interval": str(interval) if interval else "disabled",
                "next_run": upcoming.get(name),
                "last_run": last.get(name),
                "last_work": work.get(name),  # the last run that did (or failed) anything
                **service.statistics(),
            }
        return result
