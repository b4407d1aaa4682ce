"""How a lifecycle service reports the progress of a run: through a callback, never by
printing. `archivectl run` shows it (progressview); the scheduler of `archived serve`
passes none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` items of one run; sent once before the first item, then after
    each item."""

    service: str
    unit: str  # what an item is: "series", "tars", "studies"
    done: int
    total: int | None  # None: not known in advance (the deleter looks until it is done)
    item: str = ""  # the item just finished and how ("" before the first)


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The callback when nobody watches."""


class Tracker:
    """Counts the items of one run and tells the callback about each."""

    def __init__(
        self, callback: ProgressCallback, service: str, unit: str, total: int | None
    ) -> None:
        self.callback, self.service, self.unit, self.total = callback, service, unit, total
        self.done = 0
        callback(Progress(service, unit, 0, total))

    def step(self, item: str) -> None:
        self.done += 1
        self.callback(Progress(self.service, self.unit, self.done, self.total, item))
