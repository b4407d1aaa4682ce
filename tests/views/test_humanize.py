"""How the views write numbers, times and UIDs, and how their tables fit a width."""

from __future__ import annotations

import time

import pytest
from pydicom.uid import generate_uid

from archived.views import humanize
from archived.views.output import Column, fit_widths


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB"),
     (3 * 2**50, "3072.0 TiB")],
)  # fmt: skip
def test_sizes(n: int, text: str) -> None:
    assert humanize.size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (45, "45 s"), (200, "3 min 20 s"), (3600, "1 h"), (7500, "2 h 5 min"),
     (3 * 86400 + 4 * 3600 + 59, "3 d 4 h")],
)  # fmt: skip
def test_durations_in_their_largest_two_units(seconds: float, text: str) -> None:
    assert humanize.duration(seconds) == text


def test_moments_are_local_clock_times_with_relative_words() -> None:
    now = time.mktime((2026, 3, 4, 12, 0, 0, 0, 0, -1))
    assert humanize.moment(now - 3, now) == "11:59:57 (3 s ago)"
    assert humanize.moment(now + 120, now) == "12:02:00 (in 2 min)"
    assert humanize.moment(now, now) == "12:00:00 (now)"
    yesterday = now - 86400 - 600
    assert humanize.moment(yesterday, now) == "2026-03-03 11:50 (1 d 10 min ago)"
    assert humanize.moment(None, now) == "-"


def test_counts_take_their_plural() -> None:
    assert humanize.count(1, "study", "studies") == "1 study"
    assert humanize.count(2, "study", "studies") == "2 studies"
    assert humanize.count(0, "file") == "0 files"


def test_short_uids_stay_apart_and_are_as_short_as_that_allows() -> None:
    uids = [str(generate_uid()) for _ in range(200)]
    uids += ["1.2.3.1.99887766554433221100", "1.2.3.2.99887766554433221100", "1.2.3"]
    short = humanize.short_uids(uids)
    assert len(set(short.values())) == len(set(uids))  # every one told apart
    for uid, text in short.items():
        assert uid.endswith(humanize.uid_ending(text))
        others = [o for o in uids if o != uid]
        assert not any(o.endswith(humanize.uid_ending(text)) for o in others), uid
    assert short["1.2.3.1.99887766554433221100"] == "…1.99887766554433221100"
    assert short["1.2.3"] == "1.2.3"  # short enough to show whole
    lone = uids[0]
    assert humanize.short_uids([lone])[lone] == "…" + lone[-humanize.UID_TAIL :]


def test_what_a_person_typed_for_a_uid() -> None:
    assert humanize.uid_ending("…1234567890") == "1234567890"
    assert humanize.uid_ending(" ...1234 ") == "1234"


def test_tables_leave_out_optional_columns_before_others_give_way() -> None:
    columns = [
        Column("id", ["…1234567890"]),  # 11, never shrinks
        Column("name", ["N" * 30], minimum=10, shrink=2),
        Column("what", ["W" * 20], minimum=10, shrink=1),
        Column("notes", ["X" * 40], minimum=12, shrink=3, optional=True),
    ]
    assert fit_widths(columns, 200) == [11, 30, 20, 40]  # room for all
    assert fit_widths(columns, 100) == [11, 30, 20, 33]  # notes give way first
    assert fit_widths(columns, 79) == [11, 30, 20, 12]  # down to its minimum
    assert fit_widths(columns, 70) == [11, 30, 20, None]  # rather than cut another: left out
    assert fit_widths(columns, 50) == [11, 15, 20, None]  # then name gives way
    assert fit_widths(columns, 40) == [11, 10, 15, None]
    assert fit_widths(columns, 10) == [11, 10, 10, None]  # too narrow: as narrow as allowed
