"""Prometheus metrics of one hsmfs mount, served over HTTP on a local port.

Gauges and counters are read at scrape time from the statistics() views the daemon
already keeps (the same numbers `hsmctl status` shows), evaluated inside the trio loop so
they are consistent with each other. Stage latencies are the one series the daemon does
not keep: the stager reports each finished stage to ``observe_stage``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

import trio
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .backends import ObjectStore
from .errors import MountError
from .migrator import Migrator
from .resident import ResidentData

log = logging.getLogger(__name__)

# Seconds; a stage is one whole-file download, from a few ms (small, local) to minutes.
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

Statistics = dict[str, dict[str, Any]]


async def daemon_statistics(
    migrator: Migrator, resident: ResidentData, backend: ObjectStore
) -> Statistics:
    """What one scrape reads, in the trio loop (the cache's use in a worker thread)."""
    return {
        "cache": await trio.to_thread.run_sync(migrator.watermarks),
        "migration": migrator.statistics(),
        "staging": resident.statistics(),
        "backend": backend.statistics(),
    }


class HsmCollector(Collector):
    """Turns one statistics snapshot (see ``gather``) into metric families per scrape."""

    def __init__(self, gather: Callable[[], Statistics]) -> None:
        self.gather = gather

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self.gather()
        except trio.RunFinishedError:
            return  # the daemon is shutting down: serve no stale numbers
        cache, mig = stats["cache"], stats["migration"]
        stg, backend = stats["staging"], stats["backend"]
        yield gauge("hsmfs_cache_used_bytes", "Bytes of file data in the cache", cache["used"])
        yield gauge("hsmfs_cache_size_bytes", "Size of the cache file system", cache["total"])
        yield gauge(
            "hsmfs_cache_high_watermark_bytes", "Cache use that starts releasing", cache["high"]
        )
        yield gauge(
            "hsmfs_cache_low_watermark_bytes", "Cache use that releasing stops at", cache["low"]
        )
        yield gauge("hsmfs_dirty_bytes", "Bytes not yet in the object store", mig["dirty_bytes"])
        yield gauge("hsmfs_dirty_files", "Files not yet in the object store", mig["dirty_files"])
        yield gauge(
            "hsmfs_migrate_queue_length", "Files waiting for migration", mig["queue_length"]
        )
        yield gauge("hsmfs_uploads_in_flight", "Uploads running now", mig["uploads_in_flight"])
        yield gauge(
            "hsmfs_stage_queue_length", "Stages (whole-file downloads) running now",
            stg["stages_in_flight"],
        )  # fmt: skip
        yield counter("hsmfs_migrated_files", "Files migrated", mig.get("migrated", 0))
        yield counter("hsmfs_migrated_bytes", "Bytes migrated", mig.get("migrated_bytes", 0))
        yield counter("hsmfs_released_files", "Files released from the cache",
                      mig.get("released", 0))  # fmt: skip
        yield counter("hsmfs_upload_errors", "Failed uploads", mig.get("upload_errors", 0))
        stages = CounterMetricFamily(
            "hsmfs_stages", "Stages finished, by result", labels=["result"]
        )
        stages.add_metric(["completed"], stg["stages_completed"])
        stages.add_metric(["failed"], stg["stages_failed"])
        yield stages
        yield counter(
            "hsmfs_object_store_errors", "Object store requests that failed after retries",
            backend.get("errors", 0),
        )  # fmt: skip
        yield counter("hsmfs_object_store_retries", "Object store requests retried",
                      backend.get("retries", 0))  # fmt: skip
        for name in ("bytes_up", "bytes_down"):
            yield counter(f"hsmfs_object_store_{name}", f"Object store {name.replace('_', ' ')}",
                          backend.get(name, 0))  # fmt: skip


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class MetricsEndpoint:
    """The HTTP endpoint: a prometheus_client server thread with its own registry.

    Use as a context manager inside the trio loop; ``gather`` runs in that loop.
    """

    def __init__(
        self, address: str, port: int, gather: Callable[[], Awaitable[Statistics]]
    ) -> None:
        self.address = address
        self.requested_port = port
        self.registry = CollectorRegistry()
        token = trio.lowlevel.current_trio_token()
        self.registry.register(HsmCollector(lambda: trio.from_thread.run(gather, trio_token=token)))
        self.stage_seconds = Histogram(
            "hsmfs_stage_duration_seconds", "Time from the first read of a released file "
            "until it is staged", buckets=STAGE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def observe_stage(self, seconds: float) -> None:
        self.stage_seconds.observe(seconds)

    def __enter__(self) -> MetricsEndpoint:
        try:
            self._server, self._thread = start_http_server(
                self.requested_port, self.address, self.registry
            )
        except OSError as exc:
            raise MountError(
                f"cannot serve metrics on {self.address}:{self.requested_port}: "
                f"{exc.strerror}; change [metrics] port in the configuration or set it to 0"
            ) from None
        log.info("metrics on http://%s:%d/metrics", self.address, self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
