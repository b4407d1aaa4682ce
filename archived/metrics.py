"""Prometheus metrics of archived, served over HTTP on a local port.

Three sources: DIMSE latencies, timed here from pynetdicom's notification events (request
received -> final response sent, on the archive's own associations); the service
counters the AE keeps (`ArchiveServer.statistics()`, the numbers `archivectl status`
shows); and files per file system group and status, counted in the index at scrape time
by one worker thread (the index keeps one connection per thread).

Threads and locks: pynetdicom calls the event handlers in association threads; the
start-time table is guarded by ``_lock``. Scrapes run in prometheus_client's server
threads; index queries are handed to the single ``_index_worker`` thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pynetdicom import evt
from pynetdicom.events import Event

from archived.dicom import ArchiveServer, ListenError
from archived.index import Index

LOG = logging.getLogger(__name__)

# Seconds from a request to its final response: a stored instance takes milliseconds, a
# retrieve that waits for hsmfs to stage a tar from S3 may take minutes.
DIMSE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
PENDING = (0xFF00, 0xFF01)
COMMANDS = {
    "C_STORE": "C-STORE",
    "C_MOVE": "C-MOVE",
    "C_GET": "C-GET",
    "C_FIND": "C-FIND",
    "C_ECHO": "C-ECHO",
    "N_ACTION": "N-ACTION",
}


def outcome(status: int) -> str:
    """The status class of a final DIMSE response (PS3.7 annex C)."""
    if status == 0x0000:
        return "success"
    if status == 0x0001 or status & 0xF000 == 0xB000:
        return "warning"
    if status == 0xFE00:
        return "cancel"
    return "failure"


class DimseTimer:
    """Times every request on the archive's associations, by command and outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "archived_dimse_duration_seconds",
            "Time from a DIMSE request to its final response, by command and outcome",
            ["command", "outcome"], buckets=DIMSE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.accepted = Counter(
            "archived_associations_accepted", "Associations accepted", registry=registry
        )
        self._started: dict[tuple[int, int], float] = {}  # (association, message id) -> time
        self._lock = threading.Lock()

    def handlers(self) -> list[tuple[Any, Callable[[Event], None]]]:
        return [
            (evt.EVT_ACCEPTED, self._accepted),
            (evt.EVT_DIMSE_RECV, self._received),
            (evt.EVT_DIMSE_SENT, self._sent),
        ]

    def _accepted(self, event: Event) -> None:
        self.accepted.inc()

    def _received(self, event: Event) -> None:
        name = type(event.message).__name__
        if name.endswith("_RQ") and name[:-3] in COMMANDS:
            key = (id(event.assoc), int(event.message.command_set.MessageID))
            with self._lock:
                self._started[key] = time.monotonic()

    def _sent(self, event: Event) -> None:
        name = type(event.message).__name__
        if not (name.endswith("_RSP") and name[:-4] in COMMANDS):
            return
        command = event.message.command_set
        status = int(getattr(command, "Status", 0))
        if status in PENDING:
            return
        key = (id(event.assoc), int(command.MessageIDBeingRespondedTo))
        with self._lock:
            started = self._started.pop(key, None)
        if started is not None:
            self.seconds.labels(COMMANDS[name[:-4]], outcome(status)).observe(
                time.monotonic() - started
            )


class ArchiveCollector(Collector):
    """Gauges and counters read at scrape time from the running server and the index."""

    def __init__(self, server: ArchiveServer, file_counts: Callable[[], dict]) -> None:
        self.server = server
        self.file_counts = file_counts

    def collect(self) -> Iterator[Metric]:
        stats = self.server.statistics()
        yield GaugeMetricFamily(
            "archived_associations", "Associations open now", value=stats["associations"]
        )
        yield GaugeMetricFamily(
            "archived_associations_max", "Associations allowed at once",
            value=stats["max_associations"],
        )  # fmt: skip
        events = CounterMetricFamily(
            "archived_service_events",
            "Service counters (stored, store_failed, move_instances, associations_rejected, "
            "...), as archivectl status shows them",
            labels=["event"],
        )
        for name, count in stats["counters"].items():
            events.add_metric([name], count)
        yield events
        files = GaugeMetricFamily(
            "archived_files", "Files in the index by file system group and status",
            labels=["group", "status"],
        )  # fmt: skip
        for (group, status), count in sorted(self.file_counts().items()):
            files.add_metric([group, status.name], count)
        yield files


class MetricsEndpoint:
    """The HTTP endpoint; bind ``timer.handlers()`` to the AE before it starts."""

    def __init__(self, address: str, port: int, index: Index) -> None:
        self.address = address
        self.requested_port = port
        self.index = index
        self.registry = CollectorRegistry()
        self.timer = DimseTimer(self.registry)
        self._index_worker = ThreadPoolExecutor(1, thread_name_prefix="metrics-index")
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def _file_counts(self) -> dict:
        return self._index_worker.submit(self.index.file_status_counts).result()

    def start(self, server: ArchiveServer) -> None:
        self.registry.register(ArchiveCollector(server, self._file_counts))
        try:
            self._server, self._thread = start_http_server(
                self.requested_port, self.address, self.registry
            )
        except OSError as exc:
            raise ListenError(
                f"archived cannot serve metrics on {self.address}:{self.requested_port}: "
                f"{exc.strerror}; free the port or change --metrics (ARCHIVED_METRICS)"
            ) from exc
        LOG.info("metrics on http://%s:%d/metrics", self.address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._index_worker.shutdown()


def parse_address(text: str) -> tuple[str, int]:
    """ "9731" or "127.0.0.1:9731" or "[::1]:9731" -> (address, port); local by default."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not a port or ADDRESS:PORT")
    return host, int(port)
