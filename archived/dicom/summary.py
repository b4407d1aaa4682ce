"""One INFO line per association when it ends: who, how it ended, what it did."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.events import Event

from archived.dicom.peer import describe_peer

LOG = logging.getLogger("archived.dicom.associations")


class AssociationSummary:
    """Counters of one association; handlers add to them from its threads."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.ending = "closed"
        self.logged = False
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def count(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def log_once(self, peer: str) -> None:
        with self._lock:
            if self.logged:
                return
            self.logged = True
        LOG.info(self.line(peer))

    def line(self, peer: str) -> str:
        with self._lock:
            c = dict(self._counts)
        seconds = time.monotonic() - self.started
        return (
            f"association with {peer} {self.ending} after {seconds:.1f} s: "
            f"{c.get('stored', 0)} instance(s) stored, {c.get('bytes', 0) / 1e6:.2f} MB "
            f"received, {c.get('failed', 0)} failed, {c.get('echo', 0)} echo(es)"
        )


def summary_of(assoc: Association) -> AssociationSummary:
    summary: AssociationSummary | None = getattr(assoc, "archive_summary", None)
    if summary is None:  # an association opened before the handlers were bound
        summary = AssociationSummary()
        assoc.archive_summary = summary  # type: ignore[attr-defined]
    return summary


def _opened(event: Event) -> None:
    event.assoc.archive_summary = AssociationSummary()  # type: ignore[attr-defined]


def _ended(how: str) -> Callable[[Event], None]:
    def handler(event: Event) -> None:
        summary = summary_of(event.assoc)
        summary.ending = how
        if event.assoc.is_acceptor:
            summary.log_once(describe_peer(event.assoc))

    return handler


def _closed(event: Event) -> None:
    assoc = event.assoc
    if assoc.is_acceptor:  # released and aborted ones have logged already
        summary_of(assoc).log_once(describe_peer(assoc))


SUMMARY_HANDLERS = [
    (evt.EVT_CONN_OPEN, _opened),
    (evt.EVT_RELEASED, _ended("released")),
    (evt.EVT_ABORTED, _ended("aborted")),
    (evt.EVT_CONN_CLOSE, _closed),
]
