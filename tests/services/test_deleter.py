"""The deleter: every retention rule, the in-transaction re-check, free-space deletion
(least recently accessed first, on a real tmpfs) and the dry run."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from archived.index import NEARLINE_STORAGE, ONLINE_STORAGE, FileStatus, FileSystemSpec
from archived.index.lifecycle import CopyRule, delete_study_from_group, set_status
from archived.services.deleter import DeleterService
from archived.services.filecopy import FileCopyService
from tests.services.conftest import Bed

DAY = 86400.0


def copied(bed: Bed, status: FileStatus = FileStatus.ARCHIVED, **kw: int) -> str:
    """A study on ONLINE with a tar copy on NEARLINE in ``status``."""
    study = bed.store_study(**kw)
    assert FileCopyService(bed.index, bed.settings).run().errors == []
    copies = bed.index.files_of_study(study, NEARLINE_STORAGE)
    set_status(bed.index, [c.pk for c in copies], status)
    return study


def rules(bed: Bed, **values: object) -> None:
    online = bed.ext.group(ONLINE_STORAGE)
    assert online is not None
    for name, value in values.items():
        setattr(online.deletion_rules, name, value)


def online_files(bed: Bed, study: str) -> list[Path]:
    return [f.absolute_path for f in bed.index.files_of_study(study, ONLINE_STORAGE)]


def test_old_studies_with_archived_copies_leave_online(bed: Bed) -> None:
    old, recent = copied(bed, seed=1), copied(bed, seed=2)
    bed.index.touch_study(old, now=time.time() - 40 * DAY)
    paths = online_files(bed, old)
    rules(
        bed,
        delete_study_if_not_accessed_for="30d",
        delete_study_only_if_copy_on_file_system_of_file_system_group=NEARLINE_STORAGE,
        delete_study_only_if_copy_archived=True,
    )
    report = DeleterService(bed.index, bed.settings).run()
    assert report.counts["studies"] == 1 and report.counts["files"] == 3
    assert old in report.actions[0] and "not accessed for 40 days" in report.actions[0]
    assert bed.index.files_of_study(old, ONLINE_STORAGE) == []
    assert len(bed.index.files_of_study(old, NEARLINE_STORAGE)) == 3  # the copies stay
    assert not any(p.exists() for p in paths)
    assert not paths[0].parent.exists()  # emptied directories are pruned
    assert bed.online.is_dir()
    assert len(online_files(bed, recent)) == 3
    assert set(bed.index.study_access_times(old)) == {"fs-nearline"}


@pytest.mark.parametrize(
    ("rule", "copy_status", "reason"),
    [
        ({}, None, "3 of 3 instance(s) lack a copy outside ONLINE_STORAGE"),
        ({}, FileStatus.TO_ARCHIVE, "lack a copy outside ONLINE_STORAGE that is ARCHIVED"),
        (
            {"delete_study_only_if_copy_archived": True},
            FileStatus.TO_ARCHIVE,
            "lack a copy outside ONLINE_STORAGE that is ARCHIVED",
        ),
        ({}, FileStatus.MD5_CHECK_FAILED, "3 of 3 instance(s) lack a copy"),
        (
            {"delete_study_only_if_copy_on_file_system_of_file_system_group": "LOSSY_STORAGE"},
            FileStatus.ARCHIVED,
            "lack a copy outside ONLINE_STORAGE on LOSSY_STORAGE",
        ),
        (
            {"delete_study_only_if_copy_on_read_only_file_system": True},
            FileStatus.ARCHIVED,
            "on a read-only file system",
        ),
        (
            {"delete_study_only_if_copy_on_media": True},
            FileStatus.ARCHIVED,
            "DeleteStudyOnlyIfCopyOnMedia",
        ),
    ],
)
def test_studies_without_a_qualifying_copy_stay(
    bed: Bed, rule: dict[str, object], copy_status: FileStatus | None, reason: str
) -> None:
    study = copied(bed, copy_status) if copy_status is not None else bed.store_study()
    bed.index.touch_study(study, now=time.time() - 40 * DAY)
    rules(bed, delete_study_if_not_accessed_for="30d", **rule)
    report = DeleterService(bed.index, bed.settings).run()
    assert report.counts["studies"] == 0
    assert any(reason in line for line in report.kept), report.kept
    assert len(online_files(bed, study)) == 3 and all(p.exists() for p in online_files(bed, study))


def test_one_instance_without_a_copy_keeps_the_whole_study(bed: Bed) -> None:
    study = copied(bed)
    lone = bed.index.files_of_study(study, NEARLINE_STORAGE)[0]
    bed.index.delete_file(lone.pk)
    bed.index.touch_study(study, now=time.time() - 40 * DAY)
    rules(bed, delete_study_if_not_accessed_for="30d")
    report = DeleterService(bed.index, bed.settings).run()
    assert "1 of 3 instance(s) lack" in report.kept[0]
    assert len(online_files(bed, study)) == 3


def test_read_only_copies_qualify_once_the_file_system_is_read_only(bed: Bed) -> None:
    study = copied(bed)
    bed.index.touch_study(study, now=time.time() - 40 * DAY)
    rules(
        bed,
        delete_study_if_not_accessed_for="30d",
        delete_study_only_if_copy_on_read_only_file_system=True,
    )
    assert DeleterService(bed.index, bed.settings).run().counts["studies"] == 0
    bed.index.mirror_filesystems(
        [
            FileSystemSpec("fs-online", ONLINE_STORAGE, str(bed.online)),
            FileSystemSpec("fs-nearline", NEARLINE_STORAGE, f"tar:{bed.nearline}", "RO"),
        ]
    )
    assert DeleterService(bed.index, bed.settings).run().counts["studies"] == 1


def test_storage_committed_studies_stay_when_the_rule_says_so(bed: Bed) -> None:
    study = copied(bed)
    one = bed.index.files_of_study(study, ONLINE_STORAGE)[0]
    bed.index.commit_instances("1.2.3", "MODALITY", [(one.sop_cuid, one.sop_iuid)])
    bed.index.touch_study(study, now=time.time() - 40 * DAY)
    rules(
        bed, delete_study_if_not_accessed_for="30d", delete_study_only_if_storage_not_committed=True
    )
    report = DeleterService(bed.index, bed.settings).run()
    assert "1 instance(s) storage-committed" in report.kept[0]
    rules(bed, delete_study_only_if_storage_not_committed=False)
    assert DeleterService(bed.index, bed.settings).run().counts["studies"] == 1


def test_the_transaction_that_deletes_checks_again(bed: Bed) -> None:
    """A copy that failed after the candidates were chosen stops the deletion."""
    study = copied(bed)
    study_pk = (
        bed.index.read()
        .execute("SELECT pk FROM study WHERE study_iuid = ?", (study,))
        .fetchone()[0]
    )
    rule = CopyRule(archived=True)
    copy = bed.index.files_of_study(study, NEARLINE_STORAGE)[2]
    bed.index.update_file_status(copy.pk, FileStatus.MD5_CHECK_FAILED)  # meanwhile, Sync ran
    outcome = delete_study_from_group(bed.index, study_pk, ONLINE_STORAGE, rule, False)
    assert not isinstance(outcome, list) and outcome.without_copy == 1
    assert len(online_files(bed, study)) == 3


def test_dry_run_says_what_and_why(bed: Bed) -> None:
    gone, kept = copied(bed, seed=1), copied(bed, FileStatus.TO_ARCHIVE, seed=2)
    fresh = copied(bed, seed=3)
    for study in (gone, kept):
        bed.index.touch_study(study, now=time.time() - 40 * DAY)
    rules(bed, delete_study_if_not_accessed_for="30d", delete_study_only_if_copy_archived=True)
    report = DeleterService(bed.index, bed.settings).run(dry_run=True)
    assert [line.split(" from ")[0] for line in report.actions] == [f"would delete study {gone}"]
    kept_lines = "\n".join(report.kept)
    assert f"study {kept}: 3 of 3 instance(s) lack" in kept_lines
    assert f"study {fresh}: accessed 0:00:0" in kept_lines
    for study in (gone, kept, fresh):
        assert len(online_files(bed, study)) == 3


@pytest.fixture
def small_online(bed: Bed) -> Iterator[Bed]:
    """The bed with its ONLINE directory on a 1 MiB tmpfs of its own (exact free space)."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(bed.online)], check=True)
    yield bed
    subprocess.run(["umount", "-l", str(bed.online)], check=False)


def test_free_space_deletes_least_recently_accessed_first(small_online: Bed) -> None:
    bed = small_online
    studies = [copied(bed, seed=n) for n in range(3)]
    for age, study in zip((3, 2, 1), studies, strict=True):
        bed.index.touch_study(study, now=time.time() - age * 3600)
    size = sum(f.size for f in bed.index.files_of_study(studies[0], ONLINE_STORAGE))
    free = shutil.disk_usage(bed.online).free
    # Room for all but about 1.2 studies: the two least recently accessed ones must go.
    rules(
        bed,
        minimum_free_disk_space=f"{free + int(size * 1.2)}B",
        delete_study_only_if_not_accessed_for="30m",
    )
    report = DeleterService(bed.index, bed.settings).run()
    assert report.counts["studies"] == 2, report
    assert all("free space below" in line for line in report.actions)
    assert [bool(online_files(bed, s)) for s in studies] == [False, False, True]
    assert shutil.disk_usage(bed.online).free > free
