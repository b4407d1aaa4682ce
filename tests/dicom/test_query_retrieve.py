"""C-FIND, C-MOVE and C-GET with real peers: DCMTK findscu/movescu/getscu and pynetdicom."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from archived.dicom import RemoteAE
from tests.dicom.conftest import MODALITY, Archive
from tests.dicom.data import ct_study, dataset_bytes, sop_instance_uid, variety
from tests.dicom.peers import dcmtk, free_port
from tests.dicom.test_store import PROPOSE, storescu


@pytest.fixture
def study(archive: Archive, tmp_path: Path) -> list[Path]:
    paths = ct_study(tmp_path / "study", 6, patient_id="PAT1", patient_name="DOE^JANE")
    storescu(archive, *paths)
    other = ct_study(tmp_path / "other", 2, patient_id="PAT2", patient_name="ROE^RICHARD",
                     seed=2)  # fmt: skip
    storescu(archive, *other)
    return paths


def study_uid(paths: list[Path]) -> str:
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def scu_args(archive: Archive, aet: str = "MODALITY") -> list[str]:
    return ["-aet", aet, "-aec", archive.ae_title, "127.0.0.1", str(archive.port)]


def findscu(archive: Archive, out: Path, model: str, *keys: str) -> list[Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    args = [model, "-X", "-od", out]
    for key in keys:
        args += ["-k", key]
    dcmtk("findscu", *args, *scu_args(archive))
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_study_level_with_counts(
    archive: Archive, study: list[Path], tmp_path: Path
) -> None:
    rsps = findscu(
        archive, tmp_path / "f1", "-S", "QueryRetrieveLevel=STUDY", "PatientID=PAT1",
        "StudyInstanceUID", "PatientName", "NumberOfStudyRelatedInstances",
        "NumberOfStudyRelatedSeries", "ModalitiesInStudy",
    )  # fmt: skip
    assert len(rsps) == 1
    (rsp,) = rsps
    assert rsp.StudyInstanceUID == study_uid(study)
    assert rsp.PatientName == "DOE^JANE"
    assert int(rsp.NumberOfStudyRelatedInstances) == 6
    assert int(rsp.NumberOfStudyRelatedSeries) == 1
    assert rsp.ModalitiesInStudy == "CT"


def test_findscu_wildcards_patient_root_and_image_level(
    archive: Archive, study: list[Path], tmp_path: Path
) -> None:
    rsps = findscu(archive, tmp_path / "f2", "-P", "QueryRetrieveLevel=PATIENT",
                   "PatientName=*OE^*", "PatientID", "NumberOfPatientRelatedInstances")  # fmt: skip
    assert sorted((r.PatientID, int(r.NumberOfPatientRelatedInstances)) for r in rsps) == [
        ("PAT1", 6), ("PAT2", 2),
    ]  # fmt: skip
    rsps = findscu(archive, tmp_path / "f3", "-S", "QueryRetrieveLevel=IMAGE",
                   f"StudyInstanceUID={study_uid(study)}", "SOPInstanceUID",
                   "InstanceNumber=3")  # fmt: skip
    assert [r.SOPInstanceUID for r in rsps] == [sop_instance_uid(study[2])]


def test_find_refused_for_query_without_permission_and_bad_level(
    archive: Archive, study: list[Path]
) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    try:
        bad = Dataset()
        bad.QueryRetrieveLevel = "PATIENT"  # Study Root has no PATIENT level
        bad.PatientID = ""
        statuses = [s.Status for s, _ in assoc.send_c_find(
            bad, StudyRootQueryRetrieveInformationModelFind)]  # fmt: skip
        assert statuses == [0xA900]
    finally:
        assoc.release()


def test_movescu_study_arrives_byte_identical(
    archive: Archive, study: list[Path], tmp_path: Path
) -> None:
    dcmtk("movescu", "-S", "-aem", "DEST", "-k", "QueryRetrieveLevel=STUDY",
          "-k", f"StudyInstanceUID={study_uid(study)}", *scu_args(archive))  # fmt: skip
    received = {sop_instance_uid(p): p for p in archive.dest.files()}
    assert set(received) == {sop_instance_uid(p) for p in study}
    for path in study:
        sop = sop_instance_uid(path)
        (record,) = archive.index.files_of_instance(sop)
        kept = dataset_bytes(archive.online / record.filepath)
        assert dataset_bytes(received[sop]) == kept
        assert kept == dataset_bytes(path)  # storescu sent the generated file unchanged
    assert archive.server.statistics()["counters"]["move_instances"] == 6


def test_move_updates_study_access_time(archive: Archive, study: list[Path]) -> None:
    before = archive.index.study_access_times(study_uid(study))
    dcmtk("movescu", "-S", "-aem", "DEST", "-k", "QueryRetrieveLevel=SERIES",
          "-k", f"StudyInstanceUID={study_uid(study)}",
          "-k", f"SeriesInstanceUID={pydicom.dcmread(study[0]).SeriesInstanceUID}",
          *scu_args(archive))  # fmt: skip
    after = archive.index.study_access_times(study_uid(study))
    assert after.keys() == before.keys()
    assert all(after[fs] > before[fs] for fs in after)


def test_move_to_unknown_destination_fails_with_a801(archive: Archive, study: list[Path]) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    try:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_uid(study)
        statuses = [s.Status for s, _ in assoc.send_c_move(
            ds, "NOWHERE", StudyRootQueryRetrieveInformationModelMove)]  # fmt: skip
        assert statuses == [0xA801]
    finally:
        assoc.release()
    assert archive.dest.files() == []


def test_getscu_study_arrives_byte_identical(
    archive: Archive, study: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "got"
    out.mkdir()
    dcmtk("getscu", "-S", "--bit-preserving", "-od", out, "-k", "QueryRetrieveLevel=STUDY",
          "-k", f"StudyInstanceUID={study_uid(study)}", *scu_args(archive, "VIEWER"))  # fmt: skip
    received = {sop_instance_uid(p): p for p in out.iterdir()}
    assert set(received) == {sop_instance_uid(p) for p in study}
    for path in study:
        assert dataset_bytes(received[sop_instance_uid(path)]) == dataset_bytes(path)


def test_viewer_cannot_query_when_not_permitted(start_archive) -> None:
    from archived.dicom import RemoteAE

    archive = start_archive(remote_aes=(RemoteAE("NOQUERY", query=False),))
    ae = AE(ae_title="NOQUERY")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    # the only proposed context is refused, so pynetdicom gives up the association
    assert not assoc.is_established


def test_move_of_every_transfer_syntax_sends_bytes_as_stored(
    archive: Archive, tmp_path: Path
) -> None:
    files = variety(tmp_path / "in")
    for path in files:
        tsuid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        storescu(archive, path, propose=PROPOSE[tsuid])
    uids = "\\".join(sop_instance_uid(p) for p in files)
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.SOPInstanceUID = uids.split("\\")
    dcmtk("movescu", "-S", "-aem", "DEST", "-k", "QueryRetrieveLevel=IMAGE",
          "-k", f"SOPInstanceUID={uids}", *scu_args(archive))  # fmt: skip
    received = {sop_instance_uid(p): p for p in archive.dest.files()}
    assert set(received) == {sop_instance_uid(p) for p in files}
    for path in files:
        sop = sop_instance_uid(path)
        (record,) = archive.index.files_of_instance(sop)
        got = pydicom.dcmread(received[sop], stop_before_pixels=True)
        assert got.file_meta.TransferSyntaxUID == record.tsuid, path.name
        assert dataset_bytes(received[sop]) == dataset_bytes(archive.online / record.filepath), (
            path.name
        )


def test_an_instance_the_destination_refuses_fails_alone_with_its_status(
    start_archive: Callable[..., Archive], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = ct_study(tmp_path / "in", 3)
    refused = sop_instance_uid(paths[1])

    def store(event: Event) -> Dataset:
        status = Dataset()
        if str(event.request.AffectedSOPInstanceUID) == refused:
            status.Status = 0xA700
            status.ErrorComment = "disk full"
        else:
            status.Status = 0x0000
        return status

    picky = AE(ae_title="PICKY")
    picky.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)
    port = free_port()
    server = picky.start_server(("127.0.0.1", port), block=False,
                                evt_handlers=[(evt.EVT_C_STORE, store)])  # fmt: skip
    try:
        archive = start_archive(
            remote_aes=(MODALITY, RemoteAE("PICKY", "127.0.0.1", port)),
        )
        storescu(archive, *paths)
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid(paths)
        with caplog.at_level(logging.WARNING, logger="archived.dicom.retrieve"):
            responses = list(
                assoc.send_c_move(query, "PICKY", StudyRootQueryRetrieveInformationModelMove)
            )
        assoc.release()
    finally:
        server.shutdown()
    final, identifier = responses[-1]
    assert final.Status == 0xB000  # warning: some sub-operations failed, not the move
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert identifier is not None and identifier.FailedSOPInstanceUIDList == refused
    assert any(
        f"instance {refused} not stored there: status 0xA700 (disk full)" in r.message
        for r in caplog.records
    ), [r.message for r in caplog.records]
