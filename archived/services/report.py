"""What one run of a service did: actions, reasons for keeping things, errors, counters."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_LINES = 200  # lines kept per list; the counters stay exact


@dataclass
class RunReport:
    service: str
    dry_run: bool = False
    started: float = field(default_factory=time.time)
    finished: float | None = None
    actions: list[str] = field(default_factory=list)  # done, or would be done (dry run)
    kept: list[str] = field(default_factory=list)  # left alone, and why
    errors: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def action(self, line: str) -> None:
        _append(self.actions, line)

    def keep(self, line: str) -> None:
        _append(self.kept, line)

    def error(self, line: str) -> None:
        _append(self.errors, line)
        self.counts["errors"] += 1

    def finish(self) -> RunReport:
        self.finished = time.time()
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "dry_run": self.dry_run,
            "started": self.started,
            "finished": self.finished,
            "counts": dict(self.counts),
            "actions": self.actions,
            "kept": self.kept,
            "errors": self.errors,
        }


def _append(lines: list[str], line: str) -> None:
    if len(lines) < MAX_LINES:
        lines.append(line)
    elif len(lines) == MAX_LINES:
        lines.append("... (more left out)")
