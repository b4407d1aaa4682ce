"""TaskInterval and retry intervals in dcm4chee 2.x syntax, and as configuration fields."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from archived.conf import ArchiveDeviceExtension
from archived.services.intervals import RetryIntervals, TaskInterval


def test_task_interval_never_and_plain_periods() -> None:
    assert TaskInterval.parse("NEVER").next_run(datetime(2024, 1, 1)) is None
    assert TaskInterval.parse("10m").next_run(datetime(2024, 1, 1, 8)) == datetime(
        2024, 1, 1, 8, 10
    )
    assert str(TaskInterval.parse("90s")) == "1m30s"


def test_task_interval_skips_its_quiet_hours() -> None:
    every_hour_but_office = TaskInterval.parse("1h!9-17")
    assert str(every_hour_but_office) == "1h!9-17"
    assert every_hour_but_office.next_run(datetime(2024, 1, 1, 7)) == datetime(2024, 1, 1, 8)
    # 8:00 + 1 h is 9:00, inside 9-17: the next run is at 17:00.
    assert every_hour_but_office.next_run(datetime(2024, 1, 1, 8)) == datetime(2024, 1, 1, 17)
    assert every_hour_but_office.is_quiet(datetime(2024, 1, 1, 16, 59))
    assert not every_hour_but_office.is_quiet(datetime(2024, 1, 1, 17))


def test_task_interval_quiet_hours_may_wrap_midnight() -> None:
    nights_off = TaskInterval.parse("30m!22-6")
    assert nights_off.is_quiet(datetime(2024, 1, 1, 23)) and nights_off.is_quiet(
        datetime(2024, 1, 2, 5)
    )
    assert nights_off.next_run(datetime(2024, 1, 1, 21, 45)) == datetime(2024, 1, 2, 6)


@pytest.mark.parametrize("text", ["soon", "10", "1h!9", "1h!25-3", "1h!9-9", "0m", ""])
def test_bad_task_intervals_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. '10m', '1h!9-17'"):
        TaskInterval.parse(text)


def test_retry_intervals_count_the_retries_then_give_up() -> None:
    retries = RetryIntervals.parse("5x1m,12x5m,24x1h,7x1d")
    assert retries.total == 48
    assert [retries.delay(n) for n in (1, 5, 6, 17, 18, 41, 42, 48)] == [
        timedelta(minutes=1),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(hours=1),
        timedelta(days=1),
        timedelta(days=1),
    ]
    assert retries.delay(49) is None
    assert str(retries) == "5x1m,12x5m,24x1h,7x1d"
    assert RetryIntervals.parse("NEVER").delay(1) is None


def test_bad_retry_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="bad duration 'soon'"):
        RetryIntervals.parse("5x1m,soon")
    with pytest.raises(ValueError, match="bad retry step"):
        RetryIntervals.parse("0x1m")


def test_configuration_fields_accept_both_syntaxes_and_round_trip() -> None:
    ext = ArchiveDeviceExtension.model_validate(
        {
            "FileCopy": {"RetryIntervals": "5x1m,2x1h", "TaskInterval": "NEVER"},
            "SyncFileStatus": {"TaskInterval": "1h!9-17"},
        }
    )
    assert ext.file_copy.retry_intervals.delay(6) == timedelta(hours=1)
    assert ext.file_copy.task_interval.period is None
    assert ext.sync_file_status.task_interval.quiet == (9, 17)
    node = ext.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert node["FileCopy"] == {"RetryIntervals": ["5x1m", "2x1h"], "TaskInterval": "NEVER"}
    assert node["SyncFileStatus"] == {"TaskInterval": "1h!9-17"}
    again = ArchiveDeviceExtension.model_validate(node)
    assert again.file_copy.retry_intervals == ext.file_copy.retry_intervals
    with pytest.raises(ValidationError, match="bad quiet hours"):
        ArchiveDeviceExtension.model_validate({"SyncFileStatus": {"TaskInterval": "1h!x"}})
