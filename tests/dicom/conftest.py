"""A running archive AE on a fresh index and ONLINE file system, and its peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from archived.dicom import ArchiveServer, DicomSettings, RemoteAE
from archived.index import ONLINE_STORAGE, FileSystemSpec, Index
from tests.dicom.peers import StoreSCP, free_port

MODALITY = RemoteAE("MODALITY", "127.0.0.1", None)  # may do everything
VIEWER = RemoteAE("VIEWER", "127.0.0.1", None, store=False)  # query and retrieve only


@dataclass
class Archive:
    server: ArchiveServer
    index: Index
    online: Path
    dest: StoreSCP

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def ae_title(self) -> str:
        return self.server.settings.ae_title


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[StoreSCP]:
    """A DCMTK storescp known to the archive as move destination DEST."""
    scp = StoreSCP(tmp_path / "dest", "DEST", free_port(), extra=("+xa",))
    yield scp
    scp.stop()


@pytest.fixture
def start_archive(tmp_path: Path, dest: StoreSCP) -> Iterator[Callable[..., Archive]]:
    """Start an archive; keyword arguments override DicomSettings fields."""
    started: list[Archive] = []

    def start(**overrides: object) -> Archive:
        online = tmp_path / "online"
        online.mkdir(exist_ok=True)
        index = Index(tmp_path / "index.sqlite")
        index.mirror_filesystems([FileSystemSpec("fs-online-1", ONLINE_STORAGE, str(online))])
        settings = DicomSettings(
            port=0, remote_aes=(MODALITY, VIEWER, RemoteAE("DEST", "127.0.0.1", dest.port)),
            dimse_timeout=30, acse_timeout=30, network_timeout=60,
        )  # fmt: skip
        settings = replace(settings, **overrides)  # type: ignore[arg-type]
        server = ArchiveServer(settings, index)
        server.start()
        archive = Archive(server, index, online, dest)
        started.append(archive)
        return archive

    yield start
    for archive in started:
        archive.server.stop()
        archive.index.close()


@pytest.fixture
def archive(start_archive: Callable[..., Archive]) -> Archive:
    return start_archive()
