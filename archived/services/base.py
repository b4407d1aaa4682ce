"""What every lifecycle service has: the index, its settings and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from archived.conf import ArchiveDeviceExtension
from archived.index import Index
from archived.services.progress import ProgressCallback, no_progress
from archived.services.report import RunReport


class Service:
    """A service the scheduler runs: ``name``, ``interval()``, ``run()`` and ``statistics()``.

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

    def run(
        self, dry_run: bool = False, *, force: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> RunReport:  # fmt: skip
        """One run. ``dry_run`` changes nothing and reports what would be done; ``force``
        ignores the back-off of earlier failures (only FileCopy has any); ``progress`` hears
        of every item the run finishes (archivectl run shows it)."""
        raise NotImplementedError
