"""FileCopy on a real hsmfs mount: tar layout, index rows, skipping, the live-mount check,
damaged sources and retries (kept in the index across restarts)."""

from __future__ import annotations

import re
import subprocess
import tarfile
import time
from pathlib import Path

from archived.index import NEARLINE_STORAGE, ONLINE_STORAGE, FileStatus, FileSystemSpec, Index
from archived.index.copyretry import copy_retries
from archived.services.filecopy import FileCopyService
from archived.storage import hash_name
from tests.services.conftest import Bed


def tars(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tar"))


def test_each_series_becomes_one_tar_md5sum_first(bed: Bed, tmp_path: Path) -> None:
    study = bed.store_study(instances=3, series=2)
    report = FileCopyService(bed.index, bed.settings).run()
    assert report.errors == [] and report.counts["series"] == 2
    assert report.counts["instances"] == 6
    written = tars(bed.nearline)
    assert len(written) == 2
    online = bed.index.files_of_study(study, ONLINE_STORAGE)
    by_pk = {f.pk: f for f in online}
    for tar_path in written:
        rel = tar_path.relative_to(bed.nearline)
        series8 = rel.name.split("-")[0]
        # <study dir>/<series8>-<milliseconds into the hour>.tar, study dir as on ONLINE
        assert re.fullmatch(rf"1970/1/1/\d+/{hash_name(study)}/[0-9A-F]{{8}}-\d+\.tar", str(rel))
        assert 0 <= int(rel.stem.split("-")[1]) < 3_600_000
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
            assert names[0] == "MD5SUM"
            listing = tar.extractfile("MD5SUM").read().decode()  # type: ignore[union-attr]
            members = {n: tar.extractfile(n).read() for n in names[1:]}  # type: ignore[union-attr]
        assert len(members) == 3
        for name, data in members.items():
            assert re.fullmatch(rf"{series8}/[0-9A-F]{{8}}", name)
            source = by_pk[int(name.split("/")[1], 16)]
            assert source.absolute_path.read_bytes() == data
            assert f"{source.md5}  {name}\n" in listing
        # md5sum(1) itself accepts the MD5SUM member of the extracted tar
        out = tmp_path / f"x-{series8}"
        out.mkdir()
        subprocess.run(["tar", "-xf", str(tar_path), "-C", str(out)], check=True)
        check = subprocess.run(
            ["md5sum", "-c", "--strict", "MD5SUM"],
            cwd=out,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    nearline = bed.index.files_of_study(study, NEARLINE_STORAGE)
    assert len(nearline) == 6
    online_by_sop = {f.sop_iuid: f for f in online}
    for copy in nearline:
        tar_rel, _, member = copy.filepath.partition("!")
        assert (bed.nearline / tar_rel) in written
        source = online_by_sop[copy.sop_iuid]
        assert member.endswith(f"{source.pk:08X}")
        assert (copy.md5, copy.size, copy.tsuid) == (source.md5, source.size, source.tsuid)
        assert copy.status is FileStatus.TO_ARCHIVE


def test_equal_copies_are_skipped_and_new_instances_get_their_own_tar(bed: Bed) -> None:
    service = FileCopyService(bed.index, bed.settings)
    bed.store_study(instances=2)
    assert service.run().counts["instances"] == 2
    again = service.run()
    assert again.counts["instances"] == 0 and again.actions == []
    assert len(tars(bed.nearline)) == 1
    bed.store_study(instances=1, seed=7)
    assert service.run().counts["instances"] == 1
    assert len(tars(bed.nearline)) == 2


def test_configured_status_and_quiet_delay(bed: Bed) -> None:
    bed.ext.file_copy.delay_after_series_stored = "1h"  # type: ignore[assignment]
    bed.ext.file_copy.file_status = "DEFAULT"  # type: ignore[assignment]
    study = bed.store_study(instances=1)
    service = FileCopyService(bed.index, bed.settings)
    assert service.run().counts["series"] == 0  # stored just now: not quiet yet
    later = FileCopyService(bed.index, bed.settings, clock=lambda: 4e9)
    assert later.run().counts["series"] == 1
    [copy] = bed.index.files_of_study(study, NEARLINE_STORAGE)
    assert copy.status is FileStatus.DEFAULT


def test_dry_run_writes_nothing(bed: Bed) -> None:
    bed.store_study(instances=2)
    report = FileCopyService(bed.index, bed.settings).run(dry_run=True)
    assert len(report.actions) == 1 and "would copy 2 instance(s)" in report.actions[0]
    assert tars(bed.nearline) == []
    assert bed.index.files_with_status(FileStatus.TO_ARCHIVE) == []


def test_never_writes_under_an_unmounted_mount_point(bed: Bed) -> None:
    study = bed.store_study(instances=2)
    bed.mount.stop()
    service = FileCopyService(bed.index, bed.settings)
    report = service.run()
    assert report.counts["series"] == 0
    [error] = report.errors
    assert str(bed.nearline) in error and "not on a live hsmfs mount" in error
    assert list(bed.nearline.iterdir()) == []  # the empty directory underneath stays empty
    assert bed.index.files_of_study(study, NEARLINE_STORAGE) == []
    bed.mount.start()
    report = service.run(force=True)
    assert report.errors == [] and report.counts["instances"] == 2


def test_a_plain_directory_is_not_a_nearline_mount(bed: Bed, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    bed.index.mirror_filesystems(
        [
            FileSystemSpec("fs-online", ONLINE_STORAGE, str(bed.online)),
            FileSystemSpec("fs-nearline", NEARLINE_STORAGE, f"tar:{plain}"),
        ]
    )
    bed.store_study(instances=1)
    report = FileCopyService(bed.index, bed.settings).run()
    assert "not on a live hsmfs mount" in report.errors[0]
    assert list(plain.iterdir()) == []


def test_failed_copies_wait_for_their_retry_interval(bed: Bed) -> None:
    bed.ext.file_copy.retry_intervals = "2x1m,1x1h"  # type: ignore[assignment]
    now = [time.time() + 10]
    service = FileCopyService(bed.index, bed.settings, clock=lambda: now[0])
    bed.store_study(instances=1)
    bed.mount.stop()
    assert len(service.run().errors) == 1
    [retry] = service.retries.values()
    assert (retry.failures, retry.next_attempt) == (1, now[0] + 60)
    assert service.run().counts["series_waiting_for_retry"] == 1
    for failures, delay in ((2, 60), (3, 3600)):
        now[0] += 61  # past the previous delay of 1 minute
        assert len(service.run().errors) == 1
        [retry] = service.retries.values()
        assert (retry.failures, retry.next_attempt) == (failures, now[0] + delay)
    now[0] += 3601
    service.run()
    [retry] = service.retries.values()
    assert retry.next_attempt is None  # retries used up
    assert "gave_up" in service.statistics() and service.statistics()["gave_up"]
    bed.mount.start()
    now[0] += 10**6
    assert service.run().counts["series"] == 0  # left alone...
    assert service.run(force=True).counts["series"] == 1  # ...until forced
    assert service.retries == {}


def test_a_damaged_online_file_fails_its_tar(bed: Bed) -> None:
    study = bed.store_study(instances=2)
    victim = bed.index.files_of_study(study, ONLINE_STORAGE)[1].absolute_path
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = FileCopyService(bed.index, bed.settings).run()
    assert str(victim) in report.errors[0] and "MD5 or size differs" in report.errors[0]
    assert tars(bed.nearline) == []
    assert bed.index.files_of_study(study, NEARLINE_STORAGE) == []


def test_retry_state_survives_closing_the_index_and_a_new_service(bed: Bed) -> None:
    bed.ext.file_copy.retry_intervals = "1x1h"  # type: ignore[assignment]
    now = [time.time() + 10]
    bed.store_study(instances=1)
    bed.mount.stop()
    [error] = FileCopyService(bed.index, bed.settings, clock=lambda: now[0]).run().errors
    bed.index.close()  # archived stops...
    bed.mount.start()  # ...the mount is back, so a copy now would succeed
    with Index(bed.index.path) as reopened:  # ...and starts again
        restarted = FileCopyService(reopened, bed.settings, clock=lambda: now[0])
        [(series, retry)] = restarted.retries.items()
        assert (retry.failures, retry.next_attempt) == (1, now[0] + 3600)
        assert "not on a live hsmfs mount" in retry.error and retry.error in error
        assert restarted.statistics()["retrying"][series]["failures"] == 1
        waiting = restarted.run()
        assert waiting.counts["series_waiting_for_retry"] == 1 and tars(bed.nearline) == []
        now[0] += 3601
        assert restarted.run().counts["series"] == 1
        assert restarted.retries == {}


def test_after_the_last_retry_the_series_waits_for_a_forced_run_across_restarts(
    bed: Bed,
) -> None:
    bed.ext.file_copy.retry_intervals = "1x1m"  # type: ignore[assignment]
    now = [time.time() + 10]
    bed.store_study(instances=1)
    bed.mount.stop()
    service = FileCopyService(bed.index, bed.settings, clock=lambda: now[0])
    assert "retry in 0:01:00" in service.run().errors[0]
    now[0] += 61
    [gave_up] = service.run().errors
    assert "gave up; `archivectl run filecopy` tries again" in gave_up
    bed.index.close()
    bed.mount.start()
    now[0] += 10**6
    with Index(bed.index.path) as reopened:
        restarted = FileCopyService(reopened, bed.settings, clock=lambda: now[0])
        [(series, retry)] = restarted.retries.items()
        assert (retry.failures, retry.next_attempt) == (2, None)
        assert series in restarted.statistics()["gave_up"]
        left = restarted.run()
        assert left.counts["series"] == 0 and left.counts["series_waiting_for_retry"] == 1
        assert tars(bed.nearline) == []
        assert restarted.run(force=True).counts["series"] == 1
    with Index(bed.index.path) as again:  # cleared with the copy's rows, for good
        assert copy_retries(again) == {}
        assert len(again.files_of_study(bed.studies[0], NEARLINE_STORAGE)) == 1
