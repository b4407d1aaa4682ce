"""SyncFileStatus: follow hsmfs's state of each tar and verify it once it is archived.

Each run takes at most LimitNumberOfFilesPerTask files of the monitored file system in
CheckFileStatus (default TO_ARCHIVE) older than MinimumFileAge, grouped by tar. Per tar,
``user.hsm.state``:

    dirty                 not in the object store yet: left as is, checked next run
    archived, released    verified (tarverify) when VerifyTar, then StatusMapping['archived']
                          (ARCHIVED); a bad tar gets ['invalid'], a bad or missing member
                          ['not_in_tar'] (both MD5_CHECK_FAILED unless configured)
    lost                  ['lost'] (QUERY_HSM_FAILED); a tar that became lost while it was
                          read in read mode failed its checksum: ['invalid']
    no state (an error)   ['query_failed'] (QUERY_HSM_FAILED)

A read error that leaves the tar's state alone (an outage) changes nothing: the next run
tries again. Nothing changes either when the mount is not a live hsmfs mount.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from archived.index import FileRecord, FileStatus, FileSystemRecord, UnknownFileSystemError
from archived.index.lifecycle import files_of_tar, files_to_check, set_status, tar_path_of
from archived.services.base import Service
from archived.services.errors import NotConfiguredError
from archived.services.intervals import TaskInterval
from archived.services.mountcheck import check_live_mount
from archived.services.progress import ProgressCallback, Tracker, no_progress
from archived.services.report import RunReport
from archived.services.tarverify import TarUnreadable, member_md5s, read_md5, verify

LOG = logging.getLogger("archived.services.syncstatus")

DEFAULT_MAPPING = {
    "archived": FileStatus.ARCHIVED,
    "lost": FileStatus.QUERY_HSM_FAILED,
    "invalid": FileStatus.MD5_CHECK_FAILED,
    "not_in_tar": FileStatus.MD5_CHECK_FAILED,
    "query_failed": FileStatus.QUERY_HSM_FAILED,
}
VERIFIED_STATES = ("archived", "released")


def hsm_state(path: Path) -> str:
    return os.getxattr(path, "user.hsm.state").decode().strip()


class SyncFileStatusService(Service):
    """Sets the status of nearline files from hsmfs's state and a verification."""

    name = "sync"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0  # files found not archived yet by the last run

    def interval(self) -> TaskInterval | None:
        cfg = self.settings().sync_file_status
        return cfg.task_interval if cfg.enabled else None

    def monitored(self) -> FileSystemRecord:
        cfg = self.settings().sync_file_status
        if cfg.monitored_file_system is None:
            raise NotConfiguredError(
                "SyncFileStatus has no MonitoredFileSystem; set it to the uuid of the "
                "nearline file system (`archivectl fs list`)"
            )
        try:
            return self.index.filesystem(cfg.monitored_file_system)
        except UnknownFileSystemError as exc:
            raise NotConfiguredError(str(exc)) from None

    def status_for(self, outcome: str) -> FileStatus:
        mapping = self.settings().sync_file_status.status_mapping
        return FileStatus(int(mapping.get(outcome, DEFAULT_MAPPING[outcome])))

    def run(
        self, dry_run: bool = False, *, force: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> RunReport:  # fmt: skip
        """Check the files found now; ``force`` changes nothing (there is no back-off)."""
        report = RunReport(self.name, dry_run)
        cfg = self.settings().sync_file_status
        fs = self.monitored()
        check_live_mount(fs.root)  # a dead mount says nothing about the files: change nothing
        files = files_to_check(
            self.index,
            fs.pk,
            FileStatus(int(cfg.check_file_status)),
            self.clock() - cfg.minimum_file_age.total_seconds(),
            cfg.files_per_task,
        )
        groups: dict[str, list[FileRecord]] = {}
        for record in files:
            groups.setdefault(tar_path_of(record) if fs.is_tar else record.filepath, []).append(
                record
            )
        self.waiting = 0
        tracker = Tracker(progress, self.name, "tars" if fs.is_tar else "files", len(groups))
        for rel, batch in groups.items():
            self._sync(fs, rel, batch, report)
            tracker.step(f"{fs.root / rel}: {len(batch)} file(s) checked")
        return report.finish()

    def _sync(
        self, fs: FileSystemRecord, rel: str, batch: list[FileRecord], report: RunReport
    ) -> None:
        path = fs.root / rel
        try:
            state = hsm_state(path)
        except OSError as exc:
            self._set(batch, "query_failed", f"{path}: no HSM state ({exc.strerror})", report)
            return
        if state == "dirty":
            self.waiting += len(batch)
            report.counts["not_archived_yet"] += len(batch)
            return
        if state == "lost":
            self._set(batch, "lost", f"{path}: hsmfs reports the copy lost", report)
            return
        if state not in VERIFIED_STATES:
            if state in self.settings().sync_file_status.status_mapping:
                self._set(batch, state, f"{path}: hsmfs state {state}", report)
            else:
                report.keep(f"{path}: unknown hsmfs state {state!r}, left as is")
            return
        if not self.settings().sync_file_status.verify:
            self._set(batch, "archived", f"{path}: {state}", report)
            return
        if fs.is_tar:
            self._verify_tar(fs, rel, batch, report)
        else:
            self._verify_file(path, batch, report)

    def _verify_tar(
        self, fs: FileSystemRecord, rel: str, batch: list[FileRecord], report: RunReport
    ) -> None:
        path = fs.root / rel
        by_reading = self.settings().sync_file_status.verify_by_reading
        try:
            validity = os.getxattr(path, "user.hsm.tar").decode()
        except OSError:
            validity = "not indexed yet"
        if validity.startswith("invalid"):
            rows = files_of_tar(self.index, fs.pk, rel)
            self._set(rows, "invalid", f"{path}: hsmfs says {validity}", report)
            return
        if not validity.startswith("valid"):
            report.keep(f"{path}: hsmfs has not indexed the tar yet")
            self.waiting += len(batch)
            return
        try:
            md5sum, members = member_md5s(path, by_reading)
        except TarUnreadable as exc:
            if by_reading and self._state_or_none(path) == "lost":
                rows = files_of_tar(self.index, fs.pk, rel)
                self._set(rows, "invalid", f"{path}: fails its checksum ({exc})", report)
            else:
                LOG.error("%s: cannot verify, will retry: %s", path, exc)
                report.error(f"{path}: cannot verify now, will retry: {exc}")
            return
        rows = files_of_tar(self.index, fs.pk, rel)
        verdict = verify(md5sum, members, {r.filepath.partition("!")[2]: r.md5 for r in rows})
        if verdict.invalid:
            self._set(rows, "invalid", f"{path}: {verdict.invalid}", report)
            return
        bad = [r for r in rows if r.filepath.partition("!")[2] in verdict.bad_members]
        for row in bad:
            member = row.filepath.partition("!")[2]
            self._set(
                [row], "not_in_tar", f"{path}!{member}: {verdict.bad_members[member]}", report
            )
        checked = self.settings().sync_file_status.check_file_status
        good = [r for r in rows if r.status == checked and r not in bad]
        self._set(good, "archived", f"{path}: verified ({len(members)} members)", report)

    def _verify_file(self, path: Path, batch: list[FileRecord], report: RunReport) -> None:
        """A plain file on the monitored file system (no tar): its MD5 against the index."""
        by_reading = self.settings().sync_file_status.verify_by_reading
        try:
            md5 = read_md5(path) if by_reading else os.getxattr(path, "user.hsm.md5").decode()
        except OSError as exc:
            report.error(f"{path}: cannot verify now, will retry: {exc.strerror}")
            return
        for row in batch:
            if row.md5.lower() == md5.lower():
                self._set([row], "archived", f"{path}: verified", report)
            else:
                self._set([row], "not_in_tar", f"{path}: MD5 {md5} differs from {row.md5}", report)

    @staticmethod
    def _state_or_none(path: Path) -> str | None:
        try:
            return hsm_state(path)
        except OSError:
            return None

    def _set(self, rows: list[FileRecord], outcome: str, why: str, report: RunReport) -> None:
        if not rows:
            return
        status = self.status_for(outcome)
        report.counts[status.name] += len(rows)
        line = f"{len(rows)} file(s) -> {status.name}: {why}"
        if report.dry_run:
            report.action(f"would set {line}")
            return
        checked = self.clock() if outcome == "archived" else None
        set_status(self.index, (r.pk for r in rows), status, checked)
        if outcome == "archived":
            LOG.info("%s", line)
            report.action(line)
        else:
            LOG.error("%s", line)
            report.error(line)

    def statistics(self) -> dict[str, Any]:
        return {"waiting_for_hsm": self.waiting}
