"""@retry: exponential backoff with jitter, bounded by attempts and deadline."""

from __future__ import annotations

import time

import pytest

from hsmfs.backends import (
    NoSuchObject,
    RetryPolicy,
    StoreOptions,
    TemporaryFailure,
    is_temp_failure,
    retry,
)
from hsmfs.backends.common import StoreStatistics


class Flaky:
    """Fails with `error` the first `failures` calls."""

    def __init__(self, failures: int, error: Exception, **options: float) -> None:
        self.options = StoreOptions.from_mapping({"retry_base_delay": 0.01, **options})
        self.stats = StoreStatistics()
        self.failures = failures
        self.error = error
        self.calls = 0

    @retry
    def fetch(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


def test_temporary_failures_are_retried_until_success() -> None:
    flaky = Flaky(3, TemporaryFailure("s3://b/k: unreachable"))
    assert flaky.fetch("ok") == "ok"
    assert flaky.calls == 4
    assert flaky.stats.snapshot()["retries"] == 3
    assert flaky.stats.snapshot()["last_error"] == "s3://b/k: unreachable"


def test_permanent_failures_are_not_retried() -> None:
    flaky = Flaky(3, NoSuchObject("s3://b/k: no such object"))
    with pytest.raises(NoSuchObject):
        flaky.fetch("ok")
    assert flaky.calls == 1


def test_attempts_bound_the_retries() -> None:
    flaky = Flaky(100, TemporaryFailure("down"), retry_attempts=4)
    with pytest.raises(TemporaryFailure, match="down"):
        flaky.fetch("ok")
    assert flaky.calls == 4


def test_deadline_bounds_the_time() -> None:
    flaky = Flaky(
        10**6,
        TemporaryFailure("down"),
        retry_attempts=10**6,
        retry_base_delay=0.05,
        retry_max_delay=0.1,
        retry_deadline=0.5,
    )
    started = time.monotonic()
    with pytest.raises(TemporaryFailure):
        flaky.fetch("ok")
    assert time.monotonic() - started <= 0.5 + 0.2  # no sleep starts past the deadline
    assert flaky.calls > 2


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0, deadline=60)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole interval


def test_classification() -> None:
    assert is_temp_failure(TemporaryFailure("x"))
    assert is_temp_failure(ConnectionRefusedError())
    assert is_temp_failure(TimeoutError())
    assert not is_temp_failure(NoSuchObject("x"))
    assert not is_temp_failure(ValueError("x"))
