"""Counters of the DICOM service, readable by an operator (archivectl status)."""

from __future__ import annotations

import threading
from collections import Counter


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
