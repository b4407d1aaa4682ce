"""The issue's end-to-end test: `archived serve` with its scheduler, a real hsmfs mount on
moto S3, storescu, movescu and storescp; and `archivectl run` / `archivectl status`.

store -> FileCopy writes a tar into the mount -> hsmfs migrates it -> SyncFileStatus sets
ARCHIVED -> the deleter removes the study from ONLINE -> hsmfs releases the tar -> movescu
to a storescp receives byte-identical files. A tar whose object was damaged in the bucket
ends in MD5_CHECK_FAILED and its study stays ONLINE.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.conftest import S3Bucket
from tests.dicom.data import ct_study, dataset_bytes
from tests.dicom.peers import StoreSCP, dcmtk, free_port, wait_listening
from tests.hsm.support import Store, wait_state
from tests.mounts import HsmMount, wait_for
from tests.services.conftest import FAST_HSM

pytestmark = pytest.mark.fuse  # it starts mounts of its own

EXT = "/dicomConfigurationRoot/dicomDevicesRoot/archived/deviceExtensions/ArchiveDeviceExtension"
PORT = "/dicomConfigurationRoot/dicomDevicesRoot/archived/dicomNetworkConnection/0/dicomPort"


@dataclass
class Site:
    root: Path
    port: int
    dest: StoreSCP
    mount: HsmMount
    store: Store
    nearline_uuid: str

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "archived.ctl",
                "--config",
                f"lmdb://{self.root / 'conf'}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "ARCHIVED_INDEX": str(self.root / "state" / "index.sqlite")},
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def configure(self, path: str, value: object) -> None:
        self.ctl("config", "set", f"{EXT}/{path}", json.dumps(value))

    def study(self, study_uid: str) -> dict:
        return json.loads(self.ctl("study", "show", study_uid, "--json").stdout)

    def copies(self, study_uid: str) -> dict[str, int]:
        return self.study(study_uid)["series_list"][0]["copies"]

    def status(self) -> dict:
        return json.loads(self.ctl("status", "--json").stdout)


@pytest.fixture
def site(tmp_path: Path, s3_bucket: S3Bucket) -> Iterator[Site]:
    store = Store("s3", s3_bucket.url("archive"), bucket=s3_bucket, prefix="archive/")
    mount = HsmMount(tmp_path / "hsm", config_text=FAST_HSM, extra_args=["--backend", store.url])
    mount.start()
    dest = StoreSCP(tmp_path / "dest", "DEST", free_port())
    (tmp_path / "online").mkdir()
    site = Site(tmp_path, free_port(), dest, mount, store, "")
    site.ctl("fs", "add", "--group", "ONLINE_STORAGE", str(tmp_path / "online"))
    added = site.ctl("fs", "add", "--group", "NEARLINE_STORAGE", f"tar:{mount.mnt}")
    site.nearline_uuid = json.loads(added.stdout)["uuid"]
    site.ctl("config", "set", PORT, str(site.port))
    site.ctl("ae", "add", "MODALITY", "127.0.0.1", "104")
    site.ctl("ae", "add", "DEST", "127.0.0.1", str(dest.port))
    log = open(tmp_path / "archived.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archived.cli",
            "serve",
            "--config",
            f"lmdb://{tmp_path / 'conf'}",
            "--index",
            str(tmp_path / "state" / "index.sqlite"),
        ],
        stdout=log,
        stderr=log,
    )
    try:
        wait_listening(site.port, proc)
        yield site
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        log.close()
        dest.stop()
        mount.cleanup()
        assert code == 0, (tmp_path / "archived.log").read_text()


def store_study(site: Site, instances: int, seed: int) -> tuple[str, list[Path]]:
    paths = ct_study(site.root / f"in{seed}", instances, seed=seed, patient_id=f"P{seed}")
    dcmtk("storescu", "-aet", "MODALITY", "-aec", "ARCHIVED", "127.0.0.1", str(site.port), *paths)
    return str(pydicom.dcmread(paths[0]).StudyInstanceUID), paths


def tar_of(site: Site) -> Path:
    [tar] = wait_for(lambda: list(site.mount.mnt.rglob("*.tar")), what="FileCopy's tar")
    return tar


def test_store_copy_archive_delete_release_and_retrieve_from_s3(site: Site) -> None:
    site.configure(
        "FileCopy",
        {
            "Enabled": True,
            "DestinationFileSystem": site.nearline_uuid,
            "DelayAfterSeriesStored": "0",
            "TaskInterval": "1s",
        },
    )
    site.configure(
        "SyncFileStatus",
        {
            "Enabled": True,
            "MonitoredFileSystem": site.nearline_uuid,
            "MinimumFileAge": "0",
            "TaskInterval": "1s",
        },
    )
    site.configure(
        "FileSystemGroups/0/DeletionRules",
        {
            "ScheduleStudiesForDeletionInterval": "1s",
            "DeleteStudyIfNotAccessedFor": "2s",
            "DeleteStudyOnlyIfCopyOnFileSystemOfFileSystemGroup": "NEARLINE_STORAGE",
            "DeleteStudyOnlyIfCopyArchived": True,
        },
    )
    study, paths = store_study(site, 5, seed=1)
    tar = tar_of(site)
    wait_for(
        lambda: site.copies(study) == {"NEARLINE_STORAGE/ARCHIVED": 5},
        timeout=90,
        what="ARCHIVED copies and the study gone from ONLINE",
    )
    assert not any((site.root / "online").rglob("*")), "ONLINE files left behind"
    assert site.store.get(str(tar.relative_to(site.mount.mnt))) is not None  # in S3
    os.setxattr(tar, "user.hsm.action", b"release")
    wait_state(tar, "released")

    dcmtk(
        "movescu",
        "-S",
        "-aet",
        "MODALITY",
        "-aem",
        "DEST",
        "-aec",
        "ARCHIVED",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
        "127.0.0.1",
        str(site.port),
    )
    received = site.dest.files()
    assert len(received) == 5
    assert sorted(map(dataset_bytes, received)) == sorted(map(dataset_bytes, paths))

    status = wait_for(
        lambda: (
            (s := site.status())["services"] != ""
            and isinstance(s["services"], dict)
            and s["services"]["deleter"]["last_run"]
            and s
        ),
        what="services status",
    )
    services = status["services"]
    assert set(services) == {"filecopy", "sync", "deleter"}
    assert services["filecopy"]["interval"] == "1s" and services["filecopy"]["last_run"]
    per_fs = status["files_per_file_system"]
    assert per_fs == {f"tar:{site.mount.mnt} ({site.nearline_uuid})": {"ARCHIVED": 5}}


def test_a_damaged_object_ends_in_md5_check_failed_and_the_study_stays(site: Site) -> None:
    site.configure(
        "FileCopy",
        {
            "Enabled": True,
            "DestinationFileSystem": site.nearline_uuid,
            "DelayAfterSeriesStored": "0",
            "TaskInterval": "1s",
        },
    )
    site.configure(
        "SyncFileStatus",
        {
            "MonitoredFileSystem": site.nearline_uuid,
            "MinimumFileAge": "0",
            "VerifyTarByReading": True,
        },
    )
    site.configure("FileSystemGroups/0/DeletionRules", {"DeleteStudyIfNotAccessedFor": "1s"})
    study, _ = store_study(site, 3, seed=2)
    tar = tar_of(site)
    wait_for(
        lambda: site.copies(study).get("NEARLINE_STORAGE/TO_ARCHIVE") == 3, what="the tar's rows"
    )
    wait_state(tar, "archived")
    os.setxattr(tar, "user.hsm.action", b"release")
    wait_state(tar, "released")
    # Bit rot after the release (before it, the release's HEAD would see another ETag
    # and keep the data in the cache).
    site.store.damage(str(tar.relative_to(site.mount.mnt)))

    # (No dry run first: reading the damaged member makes hsmfs mark the tar lost, and a
    # later run would then apply StatusMapping['lost'] instead.)
    ran = site.ctl("run", "sync", check=False)
    assert ran.returncode == 1 and str(tar) in ran.stdout, ran.stdout
    assert site.copies(study) == {
        "NEARLINE_STORAGE/MD5_CHECK_FAILED": 3,
        "ONLINE_STORAGE/DEFAULT": 3,
    }
    deleter = site.ctl("run", "deleter", "--dry-run")
    assert f"kept: study {study}: 3 of 3 instance(s) lack a copy" in deleter.stdout
    site.ctl("run", "deleter")
    assert site.copies(study)["ONLINE_STORAGE/DEFAULT"] == 3


def test_archivectl_run_fails_loudly_without_a_live_mount(site: Site) -> None:
    site.configure(
        "FileCopy", {"DestinationFileSystem": site.nearline_uuid, "DelayAfterSeriesStored": "0"}
    )
    store_study(site, 1, seed=3)
    site.mount.stop()
    ran = site.ctl("run", "filecopy", check=False)
    assert ran.returncode == 1
    assert f"{site.mount.mnt} is not on a live hsmfs mount" in ran.stdout
    assert list(site.mount.mnt.iterdir()) == []
    synced = site.ctl("run", "sync", check=False)
    assert synced.returncode == 64  # no MonitoredFileSystem configured
    assert synced.stderr.startswith("archivectl: SyncFileStatus has no MonitoredFileSystem")
    assert "Traceback" not in synced.stderr


def test_a_failure_archivectl_records_is_in_the_daemons_status_and_it_retries_at_once(
    site: Site,
) -> None:
    site.configure(
        "FileCopy", {"DestinationFileSystem": site.nearline_uuid, "DelayAfterSeriesStored": "0",
                     "RetryIntervals": "1x1h"},
    )  # fmt: skip
    study, _ = store_study(site, 2, seed=4)
    site.mount.stop()
    assert site.ctl("run", "filecopy", check=False).returncode == 1
    # The retry state is in the index: the daemon (another process) reports it.
    retrying = wait_for(
        lambda: isinstance(s := site.status()["services"], dict) and s["filecopy"]["retrying"],
        what="the daemon's status to show the failed series",
    )
    [(series, retry)] = retrying.items()
    assert retry["failures"] == 1 and "not on a live hsmfs mount" in retry["error"]
    site.mount.start()
    ran = site.ctl("run", "filecopy")  # forced: no waiting for the hour
    assert f"2 instance(s) of series {series}" in ran.stdout
    assert site.copies(study) == {"NEARLINE_STORAGE/TO_ARCHIVE": 2, "ONLINE_STORAGE/DEFAULT": 2}
    wait_for(
        lambda: site.status()["services"]["filecopy"]["retrying"] == {},
        what="the daemon's status to drop the copied series",
    )
