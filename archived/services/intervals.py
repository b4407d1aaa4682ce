"""Schedules in dcm4chee 2.x syntax: TaskInterval (`10m`, `1h!9-17`, `NEVER`) and retry
intervals (`5x1m,12x5m,24x1h,7x1d`).

The configuration model (archived.conf.model) uses these as field types, so this module
imports nothing of archived (no import cycle).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_QUIET = re.compile(r"(\d{1,2})-(\d{1,2})")
_STEP = re.compile(r"(?:(\d+)x)?(.+)")


def _duration(text: str, example: str) -> timedelta:
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or seconds <= 0:
        raise ValueError(f"bad duration {text!r}; write e.g. {example}")
    return timedelta(seconds=seconds)


def _format(value: timedelta) -> str:
    millis = round(value.total_seconds() * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class TaskInterval:
    """How often a service runs: every `period`, except from hour `quiet[0]` to `quiet[1]`.

    `period` None means NEVER (the service only runs when asked: `archivectl run`).
    """

    period: timedelta | None
    quiet: tuple[int, int] | None = None

    EXAMPLE = "'10m', '1h!9-17' (every hour except 9:00 to 17:00) or 'NEVER'"

    @classmethod
    def parse(cls, value: Any) -> TaskInterval:
        if isinstance(value, TaskInterval):
            return value
        if isinstance(value, timedelta):
            return cls(value)
        text = str(value).strip()
        if text.upper() == "NEVER":
            return cls(None)
        period_text, _, quiet_text = text.partition("!")
        period = _duration(period_text, cls.EXAMPLE)
        if not quiet_text:
            return cls(period)
        match = _QUIET.fullmatch(quiet_text)
        if not match or int(match[1]) > 23 or int(match[2]) > 24 or match[1] == match[2]:
            raise ValueError(
                f"bad quiet hours {quiet_text!r} in {text!r}; write e.g. {cls.EXAMPLE}"
            )
        return cls(period, (int(match[1]), int(match[2])))

    def __str__(self) -> str:
        if self.period is None:
            return "NEVER"
        quiet = f"!{self.quiet[0]}-{self.quiet[1]}" if self.quiet else ""
        return _format(self.period) + quiet

    def is_quiet(self, when: datetime) -> bool:
        """Whether `when` falls into the hours the service must not run."""
        if self.quiet is None:
            return False
        start, end = self.quiet
        if start < end:
            return start <= when.hour < end
        return when.hour >= start or when.hour < end  # e.g. 22-6 wraps over midnight

    def next_run(self, after: datetime) -> datetime | None:
        """When the service runs next, given that it last started at `after`."""
        if self.period is None:
            return None
        when = after + self.period
        if self.is_quiet(when):
            assert self.quiet is not None
            end = when.replace(hour=self.quiet[1] % 24, minute=0, second=0, microsecond=0)
            if end <= when:
                end += timedelta(days=1)
            when = end
        return when


@dataclass(frozen=True)
class RetryIntervals:
    """Retries of a failed operation: `steps` of (count, delay), in order; then give up."""

    steps: tuple[tuple[int, timedelta], ...]

    EXAMPLE = "'5x1m,12x5m,24x1h,7x1d' (5 retries 1 minute apart, then 12 5 minutes apart, ...)"

    @classmethod
    def parse(cls, value: Any) -> RetryIntervals:
        if isinstance(value, RetryIntervals):
            return value
        items = value.split(",") if isinstance(value, str) else list(value)
        steps = []
        for item in items:
            if isinstance(item, timedelta):
                steps.append((1, item))
                continue
            text = str(item).strip()
            if text.upper() == "NEVER" and len(items) == 1:
                return cls(())
            match = _STEP.fullmatch(text)
            assert match is not None  # `.+` matches any non-empty text
            count = int(match[1]) if match[1] else 1
            if count < 1:
                raise ValueError(f"bad retry step {text!r}; write e.g. {cls.EXAMPLE}")
            steps.append((count, _duration(match[2], cls.EXAMPLE)))
        return cls(tuple(steps))

    def as_list(self) -> list[str]:
        return [
            _format(delay) if count == 1 else f"{count}x{_format(delay)}"
            for count, delay in self.steps
        ]

    def __str__(self) -> str:
        return ",".join(self.as_list()) or "NEVER"

    @property
    def total(self) -> int:
        """How many retries there are before giving up."""
        return sum(count for count, _ in self.steps)

    def delay(self, failures: int) -> timedelta | None:
        """The wait before the next attempt after `failures` failed ones; None: give up."""
        remaining = failures
        for count, delay in self.steps:
            if remaining <= count:
                return delay
            remaining -= count
        return None


TaskIntervalField = Annotated[
    TaskInterval,
    BeforeValidator(TaskInterval.parse),
    PlainSerializer(str, return_type=str),
]
RetryIntervalsField = Annotated[
    RetryIntervals,
    BeforeValidator(RetryIntervals.parse),
    PlainSerializer(RetryIntervals.as_list, return_type=list[str]),
]
