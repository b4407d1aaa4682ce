"""The deleter: remove studies from a file system group (ONLINE_STORAGE) by its DeletionRules.

Which studies: those not accessed for DeleteStudyIfNotAccessedFor, and, while a file
system of the group has less free space than MinimumFreeDiskSpace, the least recently
accessed ones not accessed for DeleteStudyOnlyIfNotAccessedFor; at most
ScheduleStudiesForDeletionBatchSize per group and run.

A study goes only if every instance has a qualifying copy outside the group: a status
that is no failure, and as the rules ask, on a file system of
DeleteStudyOnlyIfCopyOnFileSystemOfFileSystemGroup, on a read-only file system
(...CopyOnReadOnlyFileSystem), ARCHIVED (...CopyArchived); with
DeleteStudyOnlyIfStorageNotCommitted no instance may be storage-committed;
DeleteStudyOnlyIfCopyOnMedia keeps everything (archived writes no media). The check is
repeated inside the transaction that removes the group's rows (index.lifecycle); the
bytes are unlinked after the commit. The study's other copies (NEARLINE rows) stay.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from archived.conf import DeletionRules, FileSystemGroup
from archived.conf.fields import threshold_bytes
from archived.index import FileRecord
from archived.index.lifecycle import (
    CopyRule,
    StudyCheck,
    StudyOnGroup,
    delete_study_from_group,
    studies_by_access,
    study_check,
)
from archived.services.base import Service
from archived.services.intervals import TaskInterval
from archived.services.progress import ProgressCallback, Tracker, no_progress
from archived.services.report import RunReport

LOG = logging.getLogger("archived.services.deleter")


def copy_rule(rules: DeletionRules) -> CopyRule:
    return CopyRule(
        group=rules.delete_study_only_if_copy_on_file_system_of_file_system_group,
        read_only=rules.delete_study_only_if_copy_on_read_only_file_system,
        archived=rules.delete_study_only_if_copy_archived,
    )


def describe_rule(group: str, rule: CopyRule) -> str:
    words = [f"a copy outside {group}"]
    if rule.group:
        words.append(f"on {rule.group}")
    if rule.read_only:
        words.append("on a read-only file system")
    if rule.archived:
        words.append("that is ARCHIVED")
    return " ".join(words)


def _ago(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class DeleterService(Service):
    """Applies the deletion rules of every group that has any."""

    name = "deleter"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deficits: dict[str, int] = {}  # group -> bytes still to free after the last run

    def interval(self) -> TaskInterval | None:
        periods = [
            g.deletion_rules.schedule_studies_for_deletion_interval
            for g in self.settings().file_system_groups
        ]
        active = [p for p in periods if p is not None]
        return TaskInterval(min(active)) if active else None

    def run(
        self, dry_run: bool = False, *, force: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> RunReport:  # fmt: skip
        """Apply the rules once; ``force`` changes nothing (there is no back-off)."""
        report = RunReport(self.name, dry_run)
        tracker = Tracker(progress, self.name, "studies", None)  # found while it goes
        for group in self.settings().file_system_groups:
            rules = group.deletion_rules
            if rules.delete_study_if_not_accessed_for is None and (
                rules.minimum_free_disk_space == "NONE"
            ):
                continue
            if any(fs.tarred for fs in group.file_systems):
                report.keep(f"{group.group_id}: holds tars; the deleter leaves tars alone")
                continue
            self._run_group(group, rules, report, tracker)
        return report.finish()

    def free_space_deficit(self, group: FileSystemGroup) -> int:
        """Bytes to free so that every file system of the group meets MinimumFreeDiskSpace."""
        spec = group.deletion_rules.minimum_free_disk_space
        if spec == "NONE":
            return 0
        deficit = 0
        for fs in group.file_systems:
            try:
                usage = shutil.disk_usage(fs.directory)
            except OSError as exc:
                LOG.warning("%s: free space unknown: %s", fs.directory, exc.strerror)
                continue
            deficit = max(deficit, threshold_bytes(spec, usage.total) - usage.free)
        return deficit

    def _run_group(
        self, group: FileSystemGroup, rules: DeletionRules, report: RunReport, tracker: Tracker
    ) -> None:
        gid, now = group.group_id, self.clock()
        rule = copy_rule(rules)
        budget = rules.schedule_studies_for_deletion_batch_size
        considered: set[int] = set()
        if rules.delete_study_if_not_accessed_for is not None:
            limit = rules.delete_study_if_not_accessed_for
            for study in studies_by_access(self.index, gid, now - limit.total_seconds(), budget):
                considered.add(study.pk)
                reason = f"not accessed for {_ago(now - study.access_time)} (rule: {limit})"
                deleted = self._delete(gid, rules, rule, study, reason, report)
                tracker.step(_outcome(study, gid, deleted, report.dry_run))
                if deleted:
                    budget -= 1
        deficit = self.free_space_deficit(group)
        if deficit > 0:
            least = rules.delete_study_only_if_not_accessed_for.total_seconds()
            for study in studies_by_access(self.index, gid, now - least, 10 * budget + 100):
                if deficit <= 0 or budget <= 0:
                    break
                if study.pk in considered:
                    continue
                considered.add(study.pk)
                reason = (
                    f"free space below {rules.minimum_free_disk_space} "
                    f"({deficit} bytes to free), least recently accessed"
                )
                deleted = self._delete(gid, rules, rule, study, reason, report)
                tracker.step(_outcome(study, gid, deleted, report.dry_run))
                if deleted:
                    budget -= 1
                    deficit -= study.size
            if deficit > 0:
                LOG.warning(
                    "%s: %d bytes still to free below MinimumFreeDiskSpace %s, no study qualifies",
                    gid,
                    deficit,
                    rules.minimum_free_disk_space,
                )
                report.counts["bytes_still_to_free"] += deficit
        self.deficits[gid] = max(deficit, 0)
        if report.dry_run:
            for study in studies_by_access(self.index, gid, now, budget + len(considered)):
                if study.pk not in considered:
                    report.keep(
                        f"study {study.study_iuid}: accessed {_ago(now - study.access_time)}"
                        " ago, within the rules and no space is needed"
                    )

    def _delete(
        self,
        gid: str,
        rules: DeletionRules,
        rule: CopyRule,
        study: StudyOnGroup,
        reason: str,
        report: RunReport,
    ) -> bool:
        label = f"study {study.study_iuid}"
        if rules.delete_study_only_if_copy_on_media:
            report.keep(
                f"{label}: DeleteStudyOnlyIfCopyOnMedia is set and archived writes no media"
            )
            return False
        keep_committed = rules.delete_study_only_if_storage_not_committed
        if report.dry_run:
            check = study_check(self.index, study.pk, gid, rule)
            if self._kept(gid, rule, keep_committed, label, check, report):
                return False
            report.action(
                f"would delete {label} from {gid} ({check.files} files, "
                f"{study.size} bytes): {reason}"
            )
            report.counts["studies"] += 1
            return True
        outcome = delete_study_from_group(self.index, study.pk, gid, rule, keep_committed)
        if isinstance(outcome, StudyCheck):
            self._kept(gid, rule, keep_committed, label, outcome, report)
            return False
        self._unlink(outcome, report)
        LOG.info("%s deleted from %s (%d files): %s", label, gid, len(outcome), reason)
        report.action(f"deleted {label} from {gid} ({len(outcome)} files): {reason}")
        report.counts["studies"] += 1
        report.counts["files"] += len(outcome)
        return True

    @staticmethod
    def _kept(
        gid: str,
        rule: CopyRule,
        keep_committed: bool,
        label: str,
        check: StudyCheck,
        report: RunReport,
    ) -> bool:
        if not check.has_copies:
            report.keep(
                f"{label}: {check.without_copy} of {check.instances} instance(s) lack "
                f"{describe_rule(gid, rule)}"
            )
        elif keep_committed and check.committed:
            report.keep(
                f"{label}: {check.committed} instance(s) storage-committed "
                "(DeleteStudyOnlyIfStorageNotCommitted)"
            )
        else:
            return False
        report.counts["studies_kept"] += 1
        return True

    @staticmethod
    def _unlink(files: list[FileRecord], report: RunReport) -> None:
        """Remove the bytes of deleted rows, then directories left empty (up to the root)."""
        for record in files:
            path = record.absolute_path
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                LOG.error("%s: cannot remove (its row is gone): %s", path, exc.strerror)
                report.error(f"{path}: cannot remove: {exc.strerror}")
                continue
            _prune(path.parent, record.filesystem.root)

    def statistics(self) -> dict[str, Any]:
        return {"bytes_to_free": dict(self.deficits)}


def _outcome(study: StudyOnGroup, gid: str, deleted: bool, dry_run: bool) -> str:
    if not deleted:
        return f"study {study.study_iuid}: kept on {gid}"
    return f"study {study.study_iuid}: {'would be ' if dry_run else ''}deleted from {gid}"


def _prune(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty (or already gone): stop here
        directory = directory.parent
