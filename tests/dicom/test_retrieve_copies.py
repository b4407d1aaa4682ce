"""Retrieves that read other copies: NEARLINE tar members through a real hsmfs mount,
missing copies, and storage slow enough that the requestor needs pending responses."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from archived.dicom.connection import CONNECTION_HANDLERS
from archived.index import NEARLINE_STORAGE, ONLINE_STORAGE, FileStatus, FileSystemSpec
from archived.storage import hash_name
from tests.dicom.conftest import Archive
from tests.dicom.data import ct_study, dataset_bytes, sop_instance_uid
from tests.dicom.test_store import storescu
from tests.mounts import HsmMount, wait_for

pytestmark = pytest.mark.fuse  # it starts mounts of its own


def study_of(paths: list[Path]) -> str:
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def move(archive: Archive, study_uid: str, dimse_timeout: float = 30) -> list[Dataset]:
    """C-MOVE the study to DEST; every response status dataset, in order."""
    ae = AE(ae_title="MODALITY")
    ae.dimse_timeout = dimse_timeout
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title,
                         evt_handlers=CONNECTION_HANDLERS)  # fmt: skip
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    try:
        return [status for status, _ in assoc.send_c_move(
            ds, "DEST", StudyRootQueryRetrieveInformationModelMove)]  # fmt: skip
    finally:
        assoc.release()


@pytest.fixture
def hsm(tmp_path: Path):
    mount = HsmMount(tmp_path / "hsm").start()
    try:
        yield mount
    finally:
        mount.cleanup()


def test_nearline_tar_member_through_hsmfs_when_online_is_gone(
    archive: Archive, hsm: HsmMount, tmp_path: Path
) -> None:
    paths = ct_study(tmp_path / "in", 3)
    storescu(archive, *paths)
    study_uid = study_of(paths)
    online = archive.index.files_of_study(study_uid)
    series8 = hash_name(str(pydicom.dcmread(paths[0]).SeriesInstanceUID))
    tar_rel = f"{online[0].filepath.rsplit('/', 2)[0]}/{series8}-1234.tar"
    (hsm.mnt / tar_rel).parent.mkdir(parents=True)
    with tarfile.open(hsm.mnt / tar_rel, "w", format=tarfile.USTAR_FORMAT) as tar:
        sums = "".join(f"{f.md5}  {series8}/{f.pk:08X}\n" for f in online).encode()
        info = tarfile.TarInfo("MD5SUM")
        info.size = len(sums)
        tar.addfile(info, io.BytesIO(sums))
        for f in online:
            tar.add(archive.online / f.filepath, arcname=f"{series8}/{f.pk:08X}")
    archive.index.mirror_filesystems([
        FileSystemSpec("fs-online-1", ONLINE_STORAGE, str(archive.online)),
        FileSystemSpec("fs-tar", NEARLINE_STORAGE, f"tar:{hsm.mnt}"),
    ])  # fmt: skip
    for f in online:
        member = f"{tar_rel}!{series8}/{f.pk:08X}"
        wait_for(lambda m=member: (hsm.mnt / m).is_file(), what=f"hsmfs to index {member}")
        archive.index.insert_file(f.sop_iuid, "fs-tar", member, f.tsuid, f.md5, f.size,
                                  FileStatus.ARCHIVED)  # fmt: skip
        archive.index.delete_file(f.pk)
        os.unlink(archive.online / f.filepath)

    statuses = move(archive, study_uid)
    assert statuses[-1].Status == 0x0000
    received = {sop_instance_uid(p): p for p in archive.dest.files()}
    for path in paths:
        got = received[sop_instance_uid(path)]
        assert dataset_bytes(got) == dataset_bytes(path)
    copies = archive.index.files_of_study(study_uid)
    assert {c.filesystem.group for c in copies} == {NEARLINE_STORAGE}
    assert all(hashlib.md5((hsm.mnt / c.filepath).read_bytes()).hexdigest() == c.md5
               for c in copies)  # fmt: skip


def test_missing_copy_is_a_failed_sub_operation_named_in_the_response(
    archive: Archive, tmp_path: Path
) -> None:
    paths = ct_study(tmp_path / "in", 3)
    storescu(archive, *paths)
    lost = archive.index.files_of_instance(sop_instance_uid(paths[1]))[0]
    os.unlink(archive.online / lost.filepath)
    final = move(archive, study_of(paths))[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert {sop_instance_uid(p) for p in archive.dest.files()} == {
        sop_instance_uid(paths[0]), sop_instance_uid(paths[2])}  # fmt: skip
    assert archive.server.statistics()["counters"]["move_unreadable"] == 1


def keepalives(responses: list[Dataset]) -> list[Dataset]:
    """Pending responses sent before the first sub-operation finished."""
    return [r for r in responses if r.Status == 0xFF00 and r.NumberOfCompletedSuboperations == 0]


def test_slow_copy_keeps_the_requestor_informed_with_pending_responses(
    start_archive, tmp_path: Path
) -> None:
    archive = start_archive(pending_interval=0.2)
    paths = ct_study(tmp_path / "in", 2)
    storescu(archive, *paths)
    slow = archive.index.files_of_instance(sop_instance_uid(paths[0]))[0]
    slow_path = archive.online / slow.filepath
    content = slow_path.read_bytes()
    slow_path.unlink()
    os.mkfifo(slow_path)  # reading blocks until the test writes: storage that stalls

    ae = AE(ae_title="MODALITY")
    ae.dimse_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title,
                         evt_handlers=CONNECTION_HANDLERS)  # fmt: skip
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_of(paths)
    responses: list[Dataset] = []
    writers: list[threading.Thread] = []
    try:
        for status, _ in assoc.send_c_move(ds, "DEST", StudyRootQueryRetrieveInformationModelMove):
            responses.append(status)
            if len(keepalives(responses)) == 3 and not writers:  # now let the read finish
                writer = threading.Thread(target=slow_path.write_bytes, args=(content,))
                writer.start()
                writers.append(writer)
    finally:
        assoc.release()
        for writer in writers:
            writer.join(timeout=30)
    assert len(keepalives(responses)) >= 3
    assert all(r.NumberOfRemainingSuboperations == 2 for r in keepalives(responses))
    assert responses[-1].Status == 0x0000
    assert len(archive.dest.files()) == 2
