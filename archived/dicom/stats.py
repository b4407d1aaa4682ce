"""Counters of the DICOM service, readable by an operator (archivectl status)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any, Protocol


class _InstanceTiming(Protocol):
    first_byte: float
    last_byte: float
    write: float


class ServiceStatistics:
    """Thread-safe counters; ``snapshot()`` is what statistics() and the status file show."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


class StoreTimings:
    """Where stored instances' time went: network, write, fsync, index (seconds summed).

    network: first to last data set byte, less the write work done meanwhile; write:
    write(2), MD5 and structure walk; fsync: fdatasync and link of the file; index: the
    wait for its group (directory fsyncs and the index transaction).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: defaultdict[str, float] = defaultdict(float)

    def add(self, timing: _InstanceTiming, fsync: float, index: float, size: int) -> None:
        span = max(timing.last_byte - timing.first_byte, 0.0)
        with self._lock:
            self._sums["instances"] += 1
            self._sums["bytes"] += size
            self._sums["network"] += max(span - timing.write, 0.0)
            self._sums["write"] += timing.write
            self._sums["fsync"] += fsync
            self._sums["index"] += index

    def snapshot(self) -> dict[str, Any]:
        """Totals, and milliseconds per instance for each share."""
        with self._lock:
            sums = dict(self._sums)
        n = int(sums.get("instances", 0))
        result: dict[str, Any] = {"instances": n, "bytes": int(sums.get("bytes", 0))}
        for share in ("network", "write", "fsync", "index"):
            result[f"{share}_ms"] = round(1000 * sums.get(share, 0.0) / n, 3) if n else 0.0
        return result
