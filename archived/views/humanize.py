"""Numbers, times and UIDs as a person reads them: sizes, local times with relative
terms ("14:03:05, 3 s ago"), durations, counts with their noun, UIDs cut to their tail."""

from __future__ import annotations

import time
from collections.abc import Iterable

ELLIPSIS = "…"
UID_TAIL = 10  # characters of a UID's end shown by default: the part that differs


def size(n: float) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB as they are."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """A span in its largest two units: '45 s', '3 min 20 s', '2 h 5 min', '3 d 4 h'."""
    whole = round(abs(seconds))
    if whole < 60:
        return f"{whole} s"
    parts = []
    for name, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if whole >= length:
            parts.append(f"{whole // length} {name}")
            whole %= length
        if len(parts) == 2 or (parts and whole == 0):
            break
    return " ".join(parts)


def relative(when: float, now: float | None = None) -> str:
    """'3 s ago', 'in 2 min', 'now'."""
    delta = when - (time.time() if now is None else now)
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def local_time(when: float, now: float | None = None) -> str:
    """Local clock time; the date too when it is not today."""
    now = time.time() if now is None else now
    same_day = time.localtime(when)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", time.localtime(when))


def moment(when: float | None, now: float | None = None) -> str:
    """'14:03:05 (3 s ago)'; '-' for never."""
    if when is None:
        return "-"
    return f"{local_time(when, now)} ({relative(when, now)})"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """count(1, 'study', 'studies') -> '1 study'; count(2, 'file') -> '2 files'."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def short_uid(uid: str, tail: int = UID_TAIL) -> str:
    """The UID's last ``tail`` characters after an ellipsis, the whole UID if that is short."""
    return uid if len(uid) <= tail + 1 else ELLIPSIS + uid[-tail:]


def short_uids(uids: Iterable[str], tail: int = UID_TAIL) -> dict[str, str]:
    """Each UID cut to the shortest tail (at least ``tail``) that no other UID here ends in.

    Sorted by their reversed text, the UIDs that share the longest ending with one are its
    neighbours, so one pass over the sorted list finds every UID's tail.
    """
    ordered = sorted(set(uids), key=lambda uid: uid[::-1])
    shared = [0] * len(ordered)  # the longest ending each UID shares with another
    for i in range(1, len(ordered)):
        common = _common_ending(ordered[i - 1], ordered[i])
        shared[i - 1] = max(shared[i - 1], common)
        shared[i] = max(shared[i], common)
    return {uid: short_uid(uid, max(tail, n + 1)) for uid, n in zip(ordered, shared, strict=True)}


def _common_ending(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def uid_ending(text: str) -> str:
    """What a person typed for a UID: the whole UID or its end, with or without an ellipsis."""
    return text.strip().removeprefix(ELLIPSIS).removeprefix("...")
