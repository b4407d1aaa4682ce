"""FileCopy's retry state of failed series, kept in the index (table filecopy_retry).

In the index rather than in memory so that a restart of archived, or `archivectl run` in
another process, sees the same back-off: each failure is one transaction that counts it
and stores when to try again. The row goes in the transaction that indexes the series'
copy (lifecycle.add_copies), so a crash can leave neither a copied series marked failed
nor a failure uncounted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archived.index.database import Index
from archived.index.errors import UnknownObjectError


@dataclass(frozen=True)
class CopyRetry:
    """A series whose copy failed: how often in a row, when to try again, why."""

    series_iuid: str
    failures: int
    next_attempt: float | None  # None: retries used up, the series waits for a forced run
    error: str
    failed_time: float


def copy_retries(index: Index) -> dict[str, CopyRetry]:
    """Every series with a failed copy, by Series Instance UID."""
    rows = index.read().execute(
        """SELECT se.series_iuid, r.failures, r.next_attempt, r.error, r.failed_time
           FROM filecopy_retry r JOIN series se ON se.pk = r.series_fk ORDER BY r.series_fk"""
    )
    return {row[0]: CopyRetry(*row) for row in rows}


def record_copy_failure(
    index: Index,
    series_iuid: str,
    error: str,
    now: float,
    next_attempt: Callable[[int], float | None],
) -> CopyRetry:
    """Count one more failure of the series; ``next_attempt(failures)`` says when to retry
    (None: never without a forced run). Read and write are one transaction."""
    with index.write() as conn:
        row = conn.execute(
            """SELECT se.pk, r.failures FROM series se
               LEFT JOIN filecopy_retry r ON r.series_fk = se.pk WHERE se.series_iuid = ?""",
            (series_iuid,),
        ).fetchone()
        if row is None:
            raise UnknownObjectError(f"series {series_iuid} is not in the index")
        failures = (row[1] or 0) + 1
        when = next_attempt(failures)
        conn.execute(
            """INSERT INTO filecopy_retry (series_fk, failures, next_attempt, error, failed_time)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (series_fk) DO UPDATE SET failures = excluded.failures,
                 next_attempt = excluded.next_attempt, error = excluded.error,
                 failed_time = excluded.failed_time""",
            (row[0], failures, when, error, now),
        )
    return CopyRetry(series_iuid, failures, when, error, now)
