"""FileCopy: pack the instances of each quiet series into one tar on the nearline mount.

A series is copied once it received no instance for DelayAfterSeriesStored; the instances
without an equal copy (same MD5 and size) on the destination go into
``<study dir>/<series8>-<ms into the hour>.tar``: MD5SUM first, then
``<series8>/<source file pk as 8 upper-case hex>``. Only after the tar is on disk (fsync'd)
are its members indexed, one row per instance with ``filepath = tar!member`` and the
configured status. Before every tar the destination must be a live hsmfs mount.

A failed series is retried on RetryIntervals (``5x1m,12x5m,...``). Its failures, next
attempt and last error are kept in the index (archived.index.copyretry), so a restart of
archived keeps the back-off and `archivectl run` sees it too. After the last retry the
series is left until a forced run (`archivectl run filecopy`, which always forces); its
copy being indexed clears the state in the same transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from archived.index import (
    FileRecord,
    FileStatus,
    FileSystemRecord,
    UnknownFileSystemError,
)
from archived.index.copyretry import CopyRetry, copy_retries, record_copy_failure
from archived.index.lifecycle import NewCopy, add_copies, files_to_copy
from archived.services.base import Service
from archived.services.errors import NotConfiguredError, NotMountedError, ServiceError
from archived.services.intervals import TaskInterval
from archived.services.mountcheck import check_live_mount
from archived.services.progress import ProgressCallback, Tracker, no_progress
from archived.services.report import RunReport
from archived.services.tarwriter import TarMember, write_tar

LOG = logging.getLogger("archived.services.filecopy")
HOUR_MS = 3_600_000


def tar_name(series8: str, now: float, offset: int = 0) -> str:
    """``<series8>-<milliseconds into the current hour>.tar`` (``offset`` avoids a clash)."""
    return f"{series8}-{(int(now * 1000) + offset) % HOUR_MS}.tar"


def member_name(series8: str, file_pk: int) -> str:
    return f"{series8}/{file_pk & 0xFFFFFFFF:08X}"


class FileCopyService(Service):
    """Copies series from the source group into tars on the destination file system."""

    name = "filecopy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending_series = 0  # quiet series found by the last run

    @property
    def retries(self) -> dict[str, CopyRetry]:
        """Series whose copy failed, by UID (from the index: shared and restart-proof)."""
        return copy_retries(self.index)

    def interval(self) -> TaskInterval | None:
        cfg = self.settings().file_copy
        return cfg.task_interval if cfg.enabled else None

    def destination(self) -> FileSystemRecord:
        cfg = self.settings().file_copy
        if cfg.destination_file_system is None:
            raise NotConfiguredError(
                "FileCopy has no DestinationFileSystem; set it to the uuid of the nearline "
                "file system (`archivectl fs list`)"
            )
        try:
            fs = self.index.filesystem(cfg.destination_file_system)
        except UnknownFileSystemError as exc:
            raise NotConfiguredError(str(exc)) from None
        if not fs.is_tar:
            raise NotConfiguredError(
                f"FileCopy destination {fs.path} holds no tars; register the hsmfs mount as "
                "`archivectl fs add --group NEARLINE_STORAGE tar:MOUNT`"
            )
        return fs

    def run(
        self, dry_run: bool = False, *, force: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> RunReport:  # fmt: skip
        """Copy every quiet series once; ``force`` ignores retry back-off."""
        report = RunReport(self.name, dry_run)
        cfg = self.settings().file_copy
        dest = self.destination()
        now = self.clock()
        pending = files_to_copy(
            self.index,
            cfg.source_file_system_group_id,
            dest.pk,
            now - cfg.delay_after_series_stored.total_seconds(),
        )
        by_series: dict[str, list[FileRecord]] = {}
        for record in pending:
            by_series.setdefault(record.series_iuid, []).append(record)
        self.pending_series = len(by_series)
        retries = self.retries
        tracker = Tracker(progress, self.name, "series", len(by_series))
        for series_iuid, files in by_series.items():
            retry = retries.get(series_iuid)
            if retry and not force and (retry.next_attempt is None or retry.next_attempt > now):
                report.counts["series_waiting_for_retry"] += 1
                tracker.step(f"series {series_iuid}: waits for its retry")
                continue
            if dry_run:
                report.action(
                    f"would copy {len(files)} instance(s) of series {series_iuid} "
                    f"to {dest.root / self._tar_dir(files[0])}"
                )
                report.counts["series"] += 1
                tracker.step(f"series {series_iuid}: would copy {len(files)} instance(s)")
                continue
            try:
                tar_path = self.copy_series(dest, files, cfg.file_status)
            except NotMountedError as exc:
                self._failed(series_iuid, str(exc), report)
                tracker.step(f"series {series_iuid}: failed")
                break  # every other series would fail the same way
            except (ServiceError, OSError) as exc:
                self._failed(series_iuid, str(exc), report)
                tracker.step(f"series {series_iuid}: failed")
                continue
            report.action(f"{tar_path}: {len(files)} instance(s) of series {series_iuid}")
            report.counts["series"] += 1
            report.counts["instances"] += len(files)
            tracker.step(f"series {series_iuid}: {len(files)} instance(s) copied")
        return report.finish()

    @staticmethod
    def _tar_dir(first: FileRecord) -> PurePosixPath:
        return PurePosixPath(first.filepath).parent.parent

    def copy_series(
        self, dest: FileSystemRecord, files: list[FileRecord], status: FileStatus
    ) -> Path:
        """Write one tar of ``files`` into ``dest`` and index its members; return its path."""
        check_live_mount(dest.root)  # before every tar: never write under an unmounted point
        first = PurePosixPath(files[0].filepath)
        series8 = first.parent.name
        study_dir = first.parent.parent
        members = [
            TarMember(member_name(series8, f.pk), f.absolute_path, f.md5, f.size) for f in files
        ]
        now = self.clock()
        for offset in range(1000):
            rel = study_dir / tar_name(series8, now, offset)
            if not (dest.root / rel).exists():
                break
        write_tar(dest.root / rel, members)  # O_EXCL: never overwrites another tar
        copies = [
            NewCopy(f.sop_iuid, f"{rel}!{m.name}", f.tsuid, f.md5, f.size)
            for f, m in zip(files, members, strict=True)
        ]
        try:
            add_copies(self.index, dest.pk, copies, FileStatus(status))
        except BaseException:
            (dest.root / rel).unlink(missing_ok=True)  # an unindexed tar would only waste space
            raise
        LOG.info(
            "%s: %d instance(s) of series %s copied",
            dest.root / rel,
            len(files),
            files[0].series_iuid,
        )
        return dest.root / rel

    def _failed(self, series_iuid: str, error: str, report: RunReport) -> None:
        intervals = self.settings().file_copy.retry_intervals
        now = self.clock()

        def next_attempt(failures: int) -> float | None:
            delay = intervals.delay(failures)
            return None if delay is None else now + delay.total_seconds()

        retry = record_copy_failure(self.index, series_iuid, error, now, next_attempt)
        if retry.next_attempt is None:
            when = "gave up; `archivectl run filecopy` tries again"
        else:
            when = f"retry in {intervals.delay(retry.failures)}"
        LOG.error(
            "FileCopy of series %s failed (%d time(s), %s): %s",
            series_iuid, retry.failures, when, error,
        )  # fmt: skip
        report.error(f"series {series_iuid}: {error} ({when})")

    def statistics(self) -> dict[str, Any]:
        retries = self.retries
        return {
            "pending_series": self.pending_series,
            "retrying": {
                uid: {"failures": r.failures, "next_attempt": r.next_attempt, "error": r.error}
                for uid, r in retries.items()
                if r.next_attempt is not None
            },
            "gave_up": {uid: r.error for uid, r in retries.items() if r.next_attempt is None},
        }
