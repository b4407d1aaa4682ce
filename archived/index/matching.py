"""C-FIND matching of one key value as an SQL condition on the index (PS3.4 C.2.2.2).

Single value and wildcard matching (``*`` ``?``) as SQLite GLOB, case-sensitive, except
person names, which may match regardless of letter case (PS3.4 allows that for PN);
UID lists; date and time ranges (``A-B``, ``-B``, ``A-``); and, once the requestor has
negotiated it, the combined date-time range of a Date key and its Time key.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

Condition = tuple[str, list[str]]  # SQL and its arguments

_DATE = re.compile(r"\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")  # YYYYMMDD
_TIME = re.compile(r"([01]\d|2[0-3])([0-5]\d(([0-5]\d|60)(\.\d{1,6})?)?)?")  # HH[MM[SS[.F]]]
# Appended to a time's upper bound so that every time within its precision is <= it:
# '1015' -> '101599.999999' takes in 10:15:59.999999 (values compare as strings).
_TIME_CEILING = "99.999999"
# Case variants of the literal prefixes of a name key, each one index range: at most this many.
_MAX_PREFIX_VARIANTS = 64


class QueryError(ValueError):
    """The identifier cannot be processed (bad level or a malformed matching value)."""


@dataclass(frozen=True)
class MatchOptions:
    """How keys match where PS3.4 leaves the SCP a choice or the requestor negotiates."""

    # PN keys ignore letter case (PS3.4 C.2.2.2.1 permits it for PN only).
    case_insensitive_names: bool = True
    # A Date and Time range pair is one date-time range (extended negotiation, C.5.1.1.1).
    combined_datetime: bool = False


DEFAULT_MATCHING = MatchOptions()


# -- wildcards and names ------------------------------------------------------------------


def glob_pattern(value: str) -> str:
    """DICOM wildcard -> GLOB pattern (``[`` and ``]`` are literal in DICOM)."""
    return "".join("[[]" if c == "[" else "[]]" if c == "]" else c for c in value)


def _case_variants(char: str) -> list[str]:
    """``char`` and its other-case forms that are single characters, in code point order."""
    return sorted({char, *(v for v in (char.lower(), char.upper()) if len(v) == 1)})


def _like_pattern(value: str) -> str:
    """DICOM wildcard -> LIKE pattern with ``\\`` as escape (``%`` ``_`` are literal in DICOM)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _caseless_glob(value: str) -> str:
    """DICOM wildcard -> GLOB pattern with a character class for every cased character."""
    out = []
    for char in value:
        variants = _case_variants(char)
        if char in "*?":
            out.append(char)
        elif len(variants) > 1:
            out.append("[" + "".join(variants) + "]")
        else:
            out.append(glob_pattern(char))
    return "".join(out)


def _successor(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix``; None if none fits."""
    last = ord(prefix[-1]) + 1
    if last > 0x10FFFF or 0xD800 <= last <= 0xDFFF:
        return None
    return prefix[:-1] + chr(last)


def _prefix_variants(value: str, budget: int) -> list[str]:
    """Case variants of the literal prefix of ``value`` (before any wildcard), cut short
    where more would exceed ``budget``; [] if the value starts with a wildcard."""
    choices: list[list[str]] = []
    count = 1
    for char in itertools.takewhile(lambda c: c not in "*?", value):
        variants = _case_variants(char)
        if count * len(variants) > budget:
            break
        count *= len(variants)
        choices.append(variants)
    return ["".join(p) for p in itertools.product(*choices)] if choices else []


def caseless_name_condition(column: str, values: list[str], indexed_table: str) -> Condition:
    """``column`` matches one of ``values`` (wildcards allowed) regardless of letter case.

    SQLite's LIKE folds ASCII case only, so a value with other cased characters becomes a
    GLOB with character classes. Neither can use the column's (binary) index; when
    ``indexed_table`` names a table whose index on ``column`` may serve, the rows are first
    narrowed to index ranges of the case variants of each value's literal prefix.
    """
    tests, args = [], []
    for value in values:
        if value.isascii():
            tests.append(f"{column} LIKE ? ESCAPE '\\'")
            args.append(_like_pattern(value))
        else:
            tests.append(f"{column} GLOB ?")
            args.append(_caseless_glob(value))
    sql = "(" + " OR ".join(tests) + ")"
    if not indexed_table:
        return sql, args
    alias, _, bare = column.partition(".")
    ranges, range_args = [], []
    budget = max(1, _MAX_PREFIX_VARIANTS // len(values))
    for value in values:
        variants = _prefix_variants(value, budget)
        if not variants:
            return sql, args  # a leading wildcard: every row is a candidate
        for variant in variants:
            above = _successor(variant)
            if above is None:
                return sql, args
            ranges.append(f"({bare} >= ? AND {bare} < ?)")
            range_args += [variant, above]
    subquery = f"SELECT pk FROM {indexed_table} WHERE " + " OR ".join(ranges)
    return f"{alias}.pk IN ({subquery}) AND {sql}", [*range_args, *args]


# -- date and time ranges -----------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A range matching value: None for an open end."""

    low: str | None
    high: str | None

    @property
    def form(self) -> tuple[bool, bool]:
        return self.low is not None, self.high is not None


def is_range(value: str) -> bool:
    return "-" in value


def parse_range(keyword: str, kind: str, value: str) -> Range:
    """A date (``kind`` 'date') or time range, bounds normalised; QueryError if malformed."""
    low, _, high = (part.strip() for part in value.partition("-"))
    if "-" in high:
        raise QueryError(f"{keyword} {value!r} has more than one '-'; send one range, A-B")
    if kind == "date":
        return Range(_date(keyword, value, low) if low else None,
                     _date(keyword, value, high) if high else None)  # fmt: skip
    if low:
        low = _time(keyword, value, low)
        if "." in low:  # '101530.50' is '101530.5', which sorts before a stored '101530.5'
            low = low.rstrip("0").rstrip(".")
    return Range(low or None, _time(keyword, value, high) + _TIME_CEILING if high else None)


def _date(keyword: str, value: str, bound: str) -> str:
    bound = bound.replace(".", "") if len(bound) == 10 else bound  # ACR-NEMA YYYY.MM.DD
    if not _DATE.fullmatch(bound):
        raise QueryError(f"{keyword} range {value!r}: {bound!r} is not a date; "
                         "send YYYYMMDD bounds, e.g. 20240101-20240131")  # fmt: skip
    return bound


def _time(keyword: str, value: str, bound: str) -> str:
    bound = bound.replace(":", "")  # ACR-NEMA HH:MM:SS
    if not _TIME.fullmatch(bound):
        raise QueryError(f"{keyword} range {value!r}: {bound!r} is not a time; "
                         "send HH[MM[SS[.FFFFFF]]] bounds, e.g. 0800-1730")  # fmt: skip
    return bound


def range_condition(column: str, bounds: Range) -> Condition | None:
    """``column`` within ``bounds``; an empty value never falls in a range."""
    parts, args = [], []
    if bounds.low is not None:
        parts.append(f"{column} >= ?")
        args.append(bounds.low)
    if bounds.high is not None:
        parts.append(f"{column} <= ? AND {column} != ''")
        args.append(bounds.high)
    return (" AND ".join(parts), args) if parts else None


def datetime_condition(
    date_column: str, time_column: str, dates: Range, times: Range
) -> Condition | None:
    """A Date and Time range pair as one date-time range (PS3.4 C.2.2.2.5.4).

    Applies only when both ranges have the same form (both bounded below, above, or
    both); None otherwise, and each key then matches on its own. An empty time matches
    on the days strictly inside the range only: on a bounding day it is unknown whether
    it falls before or after the bounding time.
    """
    if dates.form != times.form:
        return None
    parts: list[str] = []
    args: list[str] = []
    # Same form: each time bound is there exactly when its date bound is.
    if dates.low is not None and times.low is not None:
        # The date index narrows the rows; the time decides on the first day only.
        parts.append(f"{date_column} >= ? AND ({date_column} > ? OR {time_column} >= ?)")
        args += [dates.low, dates.low, times.low]
    if dates.high is not None and times.high is not None:
        parts.append(
            f"{date_column} <= ? AND {date_column} != '' AND "
            f"({date_column} < ? OR ({time_column} <= ? AND {time_column} != ''))"
        )
        args += [dates.high, dates.high, times.high]
    return (" AND ".join(parts), args) if parts else None
