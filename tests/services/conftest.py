"""A lifecycle test bed: an index, an ONLINE directory, a real hsmfs mount as NEARLINE, and
the archive device extension the services read (changed by the tests as they need)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from pydicom import dcmread

from archived.conf import ArchiveDeviceExtension, FileSystem, FileSystemGroup
from archived.index import (
    NEARLINE_STORAGE,
    ONLINE_STORAGE,
    FileSystemSpec,
    Index,
    NewFile,
    attributes_of,
)
from archived.storage import instance_dir, write_instance
from tests.dicom.data import ct_study
from tests.mounts import HsmMount

ONLINE_UUID = "fs-online"
NEARLINE_UUID = "fs-nearline"
# Migrate at once, run the policy loop often (as tests/hsm does).
FAST_HSM = "[hsm]\nmigrate_after = 0\nscan_interval = 0.2\n"


@dataclass
class Bed:
    root: Path
    index: Index
    online: Path
    nearline: Path  # the hsmfs mount point
    mount: HsmMount
    ext: ArchiveDeviceExtension
    studies: list[str] = field(default_factory=list)

    def settings(self) -> ArchiveDeviceExtension:
        return self.ext

    def store_study(self, instances: int = 3, series: int = 1, seed: int = 1) -> str:
        """Index a generated CT study on ONLINE as the C-STORE SCP would; its Study UID."""
        study_uid = None
        for number in range(series):
            paths = ct_study(
                self.root / f"src{len(self.studies)}-{number}",
                instances,
                study_uid=study_uid,
                seed=seed + number,
            )
            for path in paths:
                ds = dcmread(path, stop_before_pixels=True)
                study_uid = str(ds.StudyInstanceUID)
                attrs = attributes_of(ds)
                stored = write_instance(
                    self.online,
                    instance_dir(attrs.study_iuid, attrs.series_iuid, 0.0),
                    attrs.sop_iuid,
                    [path.read_bytes()],
                )
                fs = self.index.filesystem(ONLINE_UUID)
                self.index.store_instance(
                    attrs,
                    NewFile(
                        fs.pk,
                        stored.filepath,
                        str(ds.file_meta.TransferSyntaxUID),
                        stored.md5,
                        stored.size,
                    ),
                )
        assert study_uid is not None
        self.studies.append(study_uid)
        return study_uid


@pytest.fixture
def make_bed(tmp_path: Path) -> Iterator[Callable[..., Bed]]:
    """make_bed(backend=None, hsm_config=FAST_HSM) -> Bed on a started hsmfs mount."""
    mounts: list[HsmMount] = []
    indexes: list[Index] = []

    def make(backend: str | None = None, hsm_config: str = FAST_HSM) -> Bed:
        extra = ["--backend", backend] if backend else []
        mount = HsmMount(tmp_path / "hsm", config_text=hsm_config, extra_args=extra)
        mounts.append(mount)
        mount.start()
        online = tmp_path / "online"
        online.mkdir()
        index = Index(tmp_path / "index.sqlite")
        indexes.append(index)
        nearline_path = f"tar:{mount.mnt}"
        index.mirror_filesystems(
            [
                FileSystemSpec(ONLINE_UUID, ONLINE_STORAGE, str(online)),
                FileSystemSpec(NEARLINE_UUID, NEARLINE_STORAGE, nearline_path),
            ]
        )
        ext = ArchiveDeviceExtension.model_validate(
            {
                "FileSystemGroups": [
                    FileSystemGroup(
                        group_id=ONLINE_STORAGE,
                        file_systems=[FileSystem(uuid=ONLINE_UUID, path=str(online))],
                    ).model_dump(by_alias=True),
                    FileSystemGroup(
                        group_id=NEARLINE_STORAGE,
                        file_systems=[FileSystem(uuid=NEARLINE_UUID, path=nearline_path)],
                    ).model_dump(by_alias=True),
                ],
                "FileCopy": {
                    "Enabled": True,
                    "DestinationFileSystem": NEARLINE_UUID,
                    "DelayAfterSeriesStored": "0",
                },
                "SyncFileStatus": {
                    "Enabled": True,
                    "MonitoredFileSystem": NEARLINE_UUID,
                    "MinimumFileAge": "0",
                },
            }
        )
        assert ext.file_copy.delay_after_series_stored == timedelta(0)
        return Bed(tmp_path, index, online, mount.mnt, mount, ext)

    yield make
    for index in indexes:
        index.close()
    for mount in mounts:
        mount.cleanup()


@pytest.fixture
def bed(make_bed: Callable[..., Bed]) -> Bed:
    return make_bed()
