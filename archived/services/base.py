"""What every lifecycle service has: the index, its settings and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from archived.conf import ArchiveDeviceExtension
from archived.index import Index


class Service:
    """A service the scheduler runs: ``name``, ``interval()`` and ``run(dry_run)``.

    ``settings`` is called on every run, so configuration changes apply at the next run;
    ``clock`` is injectable for tests of ages and intervals.
    """

    name = ""

    def __init__(
        self,
        index: Index,
        settings: Callable[[], ArchiveDeviceExtension],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.settings = settings
        self.clock = clock
