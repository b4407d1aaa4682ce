"""SyncFileStatus on a real hsmfs mount: states, verification by member MD5s and by
reading, every failure code, limits and the dead-mount guard."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from archived.index import NEARLINE_STORAGE, FileStatus
from archived.index.lifecycle import NewCopy, add_copies
from archived.services.errors import NotMountedError
from archived.services.filecopy import FileCopyService
from archived.services.syncstatus import SyncFileStatusService
from tests.hsm.support import Store, wait_state
from tests.mounts import wait_for
from tests.services.conftest import Bed


def copy_study(bed: Bed, instances: int = 3, seed: int = 1) -> tuple[str, Path]:
    """Store a study, copy it into one tar; wait until hsmfs archived and indexed the tar."""
    study = bed.store_study(instances=instances, seed=seed)
    report = FileCopyService(bed.index, bed.settings).run()
    assert report.errors == []
    tar = bed.nearline / report.actions[0].split(":")[0].removeprefix(f"{bed.nearline}/")
    wait_state(tar, "archived")
    wait_for(lambda: tar_attr(tar).startswith("valid"), what=f"{tar} to be indexed")
    return study, tar


def tar_attr(tar: Path) -> str:
    try:
        return os.getxattr(tar, "user.hsm.tar").decode()
    except OSError:
        return ""


def statuses(bed: Bed, study: str) -> list[FileStatus]:
    return [f.status for f in bed.index.files_of_study(study, NEARLINE_STORAGE)]


def test_archived_tar_is_verified_with_member_md5s(bed: Bed) -> None:
    study, tar = copy_study(bed)
    report = SyncFileStatusService(bed.index, bed.settings).run()
    assert report.errors == [] and report.counts["ARCHIVED"] == 3
    assert str(tar) in report.actions[0]
    files = bed.index.files_of_study(study, NEARLINE_STORAGE)
    assert all(f.status is FileStatus.ARCHIVED and f.md5_check_time for f in files)
    assert SyncFileStatusService(bed.index, bed.settings).run().counts == {}  # nothing left


def test_released_tar_is_verified_by_reading_its_members(bed: Bed) -> None:
    bed.ext.sync_file_status.verify_by_reading = True
    study, tar = copy_study(bed)
    os.setxattr(tar, "user.hsm.action", b"release")
    wait_state(tar, "released")
    report = SyncFileStatusService(bed.index, bed.settings).run()
    assert report.errors == [] and statuses(bed, study) == [FileStatus.ARCHIVED] * 3


def test_dirty_tars_wait(make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(hsm_config="[hsm]\nmigrate_after = 3600\n")
    study = bed.store_study(instances=2)
    FileCopyService(bed.index, bed.settings).run()
    service = SyncFileStatusService(bed.index, bed.settings)
    report = service.run()
    assert report.counts["not_archived_yet"] == 2 and service.statistics()["waiting_for_hsm"] == 2
    assert statuses(bed, study) == [FileStatus.TO_ARCHIVE] * 2


def test_a_member_that_differs_from_the_index_fails_alone(bed: Bed) -> None:
    study, tar = copy_study(bed)
    _, second, _ = bed.index.files_of_study(study, NEARLINE_STORAGE)
    with bed.index.write() as conn:
        conn.execute("UPDATE file SET file_md5 = ? WHERE pk = ?", ("0" * 32, second.pk))
    report = SyncFileStatusService(bed.index, bed.settings).run()
    assert statuses(bed, study) == [
        FileStatus.ARCHIVED,
        FileStatus.MD5_CHECK_FAILED,
        FileStatus.ARCHIVED,
    ]
    [error] = report.errors
    assert (
        f"{tar}!{second.filepath.partition('!')[2]}" in error and "differs from the index" in error
    )


def test_an_indexed_member_missing_from_the_tar_fails(bed: Bed) -> None:
    study, tar = copy_study(bed, instances=2)
    rel = tar.relative_to(bed.nearline)
    sop = bed.index.files_of_study(study, NEARLINE_STORAGE)[0].sop_iuid
    fs = bed.index.filesystem("fs-nearline")
    [ghost] = add_copies(
        bed.index,
        fs.pk,
        [NewCopy(sop, f"{rel}!{rel.name[:8]}/FFFFFFFF", "1.2.840.10008.1.2.1", "1" * 32, 1)],
        FileStatus.TO_ARCHIVE,
    )
    report = SyncFileStatusService(bed.index, bed.settings).run()
    assert bed.index.file(ghost).status is FileStatus.MD5_CHECK_FAILED
    assert any("not in MD5SUM" in line for line in report.errors)
    assert statuses(bed, study).count(FileStatus.ARCHIVED) == 2


def test_a_tar_whose_md5sum_lies_is_invalid(bed: Bed) -> None:
    """A tar hsmfs finds invalid (its MD5SUM does not match) fails as a whole."""
    study = bed.store_study(instances=2)
    online = bed.index.files_of_study(study)
    rel = "hand/made-1.tar"
    (bed.nearline / "hand").mkdir()
    with tarfile.open(bed.nearline / rel, "w", format=tarfile.USTAR_FORMAT) as tar:
        listing = "".join(f"{'0' * 32}  S/{f.pk:08X}\n" for f in online).encode()
        for name, data in [("MD5SUM", listing)] + [
            (f"S/{f.pk:08X}", f.absolute_path.read_bytes()) for f in online
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fs = bed.index.filesystem("fs-nearline")
    add_copies(
        bed.index,
        fs.pk,
        [NewCopy(f.sop_iuid, f"{rel}!S/{f.pk:08X}", f.tsuid, f.md5, f.size) for f in online],
        FileStatus.TO_ARCHIVE,
    )
    wait_state(bed.nearline / rel, "archived")
    wait_for(lambda: tar_attr(bed.nearline / rel).startswith("invalid"), what="invalid tar")
    report = SyncFileStatusService(bed.index, bed.settings).run()
    assert statuses(bed, study) == [FileStatus.MD5_CHECK_FAILED] * 2
    assert str(bed.nearline / rel) in report.errors[0] and "invalid" in report.errors[0]


def test_a_damaged_object_fails_its_checksum_when_read(bed: Bed) -> None:
    bed.ext.sync_file_status.verify_by_reading = True
    study, tar = copy_study(bed)
    store = Store("file", "", root=bed.mount.state / "objects")
    rel = str(tar.relative_to(bed.nearline))
    assert store.get(rel) is not None, "the tar's object is not where the test expects it"
    store.damage(rel)
    os.setxattr(tar, "user.hsm.action", b"release")
    wait_state(tar, "released")
    report = SyncFileStatusService(bed.index, bed.settings).run()
    assert statuses(bed, study) == [FileStatus.MD5_CHECK_FAILED] * 3
    assert str(tar) in report.errors[0]


def test_lost_and_unknown_states_use_the_mapping(bed: Bed) -> None:
    bed.ext.sync_file_status.verify_by_reading = True
    study, tar = copy_study(bed)
    Store("file", "", root=bed.mount.state / "objects").damage(str(tar.relative_to(bed.nearline)))
    os.setxattr(tar, "user.hsm.action", b"release")
    wait_state(tar, "released")
    with pytest.raises(OSError):  # reading the damaged member: hsmfs marks the tar lost
        for copy in bed.index.files_of_study(study, NEARLINE_STORAGE):
            copy.absolute_path.read_bytes()
    wait_state(tar, "lost")
    bed.ext.sync_file_status.status_mapping = {"lost": "MIGRATION_FAILED"}  # type: ignore[assignment]
    SyncFileStatusService(bed.index, bed.settings).run()
    assert statuses(bed, study) == [FileStatus.MIGRATION_FAILED] * 3


def test_limits_age_and_dry_run(bed: Bed) -> None:
    copy_study(bed, instances=1, seed=1)
    copy_study(bed, instances=1, seed=2)
    bed.ext.sync_file_status.files_per_task = 1
    service = SyncFileStatusService(bed.index, bed.settings)
    dry = service.run(dry_run=True)
    assert dry.counts["ARCHIVED"] == 1 and dry.actions[0].startswith("would set")
    assert len(bed.index.files_with_status(FileStatus.TO_ARCHIVE)) == 2
    assert service.run().counts["ARCHIVED"] == 1
    bed.ext.sync_file_status.minimum_file_age = "1h"  # type: ignore[assignment]
    assert service.run().counts == {}  # the other file is too young
    bed.ext.sync_file_status.minimum_file_age = "0"  # type: ignore[assignment]
    assert service.run().counts["ARCHIVED"] == 1


def test_nothing_changes_when_the_mount_is_gone(bed: Bed) -> None:
    study, _ = copy_study(bed)
    bed.mount.stop()
    with pytest.raises(NotMountedError, match="not on a live hsmfs mount"):
        SyncFileStatusService(bed.index, bed.settings).run()
    assert statuses(bed, study) == [FileStatus.TO_ARCHIVE] * 3
