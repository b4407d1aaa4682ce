"""Field types of the typed configuration: durations, byte thresholds, file status, AE titles,
and the markers that tell the store which fields are references or secrets."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import IntEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


class UuidRef:
    """Marks a field holding the uuid of another node; the integrity check resolves it."""

    def __repr__(self) -> str:
        return "UUID_REF"


class Secret:
    """Marks a write-only field: stored, never returned by any API or CLI."""

    def __repr__(self) -> str:
        return "SECRET"


UUID_REF = UuidRef()
SECRET = Secret()

Ref = Annotated[str, UUID_REF]
SecretValue = Annotated[str | None, SECRET]


class FileStatus(IntEnum):
    """dcm4chee 2.x file status codes; stored by name."""

    MIGRATION_FAILED = -5
    QUERY_HSM_FAILED = -4
    MD5_CHECK_FAILED = -3
    VERIFY_COMPRESS_FAILED = -2
    COMPRESS_FAILED = -1
    DEFAULT = 0
    TO_ARCHIVE = 1
    ARCHIVED = 2
    COMPRESSING = 3
    MIGRATED = 4


def _file_status(value: Any) -> Any:
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        try:
            return FileStatus[value]
        except KeyError:
            names = ", ".join(FileStatus.__members__)
            raise ValueError(f"unknown file status {value!r}; use one of {names}") from None
    return value


FileStatusField = Annotated[
    FileStatus,
    BeforeValidator(_file_status),
    PlainSerializer(lambda status: status.name, return_type=str),
]

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta | None:
    """dcm4chee 2.x syntax: 'NEVER' (or null) -> None; '90s', '10m', '1h30m', '14d' -> timedelta."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    text = str(value).strip()
    if text.upper() == "NEVER":
        return None
    if text == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"bad duration {text!r}; write e.g. '30s', '10m', '1h30m', '14d' or 'NEVER'"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta | None) -> str:
    if value is None:
        return "NEVER"
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
OptionalDuration = Annotated[
    timedelta | None,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

_SPACE = re.compile(r"(\d+(?:\.\d+)?)\s*(%|B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_SPACE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def _space(value: Any) -> Any:
    text = str(value).strip()
    if text.upper() == "NONE" or _SPACE.fullmatch(text):
        return text.upper() if text.upper() == "NONE" else text
    raise ValueError(f"bad space threshold {text!r}; write e.g. '50GB', '512MiB', '5%' or 'NONE'")


SpaceThreshold = Annotated[str, BeforeValidator(_space)]


def threshold_bytes(spec: str, total_bytes: int) -> int:
    """Bytes a threshold such as '5%' or '50GB' stands for on a volume of `total_bytes`."""
    match = _SPACE.fullmatch(spec.strip())
    if match is None:
        return 0
    amount, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%":
        return int(total_bytes * amount / 100)
    return int(amount * _SPACE_UNITS[unit])


def _ae_title(value: Any) -> Any:
    if isinstance(value, str):
        title = value.strip()
        if not 1 <= len(title) <= 16 or "\\" in title or not title.isprintable():
            raise ValueError(
                f"bad AE title {value!r}; use 1-16 printable characters without backslash"
            )
        return title
    return value


AETitle = Annotated[str, BeforeValidator(_ae_title)]
