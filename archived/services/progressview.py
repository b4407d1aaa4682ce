"""archivectl run's view of a run's progress, on stderr: a rich progress bar on a terminal
(gone once the run ends), plain lines otherwise (a pipe, a log file, cron)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as Bar
from rich.table import Column

from archived.services.progress import Progress


def plain_line(step: Progress) -> str:
    total = "?" if step.total is None else step.total
    line = f"{step.service}: {step.done}/{total} {step.unit}"
    return f"{line}: {step.item}" if step.item else line


BAR_WIDTH = 30
FIXED_WIDTH = 66  # description, bar, done/total and elapsed time, with their padding


class ProgressView:
    """A progress callback (call it with each Progress) for the duration of a ``with``."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self._bar: Bar | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            # The item gets what is left of the line, so it never squeezes the bar.
            item = Column(no_wrap=True, overflow="ellipsis",
                          max_width=max(1, self.console.width - FIXED_WIDTH))  # fmt: skip
            self._bar = Bar(
                TextColumn("{task.description}"), BarColumn(bar_width=BAR_WIDTH),
                MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[item]}", markup=False, table_column=item),  # '[' in paths
                console=self.console, transient=True,
            )  # fmt: skip
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, step: Progress) -> None:
        if self._bar is None:
            self.console.print(plain_line(step), markup=False, highlight=False, soft_wrap=True)
            return
        if self._task is None:
            description = f"{step.service} ({step.unit})"
            self._task = self._bar.add_task(description, total=step.total, item="")
        self._bar.update(self._task, completed=step.done, total=step.total, item=step.item)
