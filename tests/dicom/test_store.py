"""C-STORE from real peers: DCMTK storescu and pynetdicom; layout, MD5, index, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification

from archived.dicom.encoding import file_meta_bytes
from archived.index import FileStatus
from archived.storage import hash_name
from tests.dicom.conftest import Archive
from tests.dicom.data import ct_study, dataset_bytes, sop_instance_uid, variety
from tests.dicom.peers import dcmtk

# storescu's option proposing a file's own transfer syntax (else it converts or fails)
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def storescu(
    archive: Archive, *files: Path, aet: str = "MODALITY", check: bool = True, propose: str = "-xe"
):
    return dcmtk(
        "storescu", propose, "-aet", aet, "-aec", archive.ae_title, "127.0.0.1",
        str(archive.port), *files, check=check,
    )  # fmt: skip


def test_echoscu_is_answered(archive: Archive) -> None:
    result = dcmtk("echoscu", "-aet", "MODALITY", "-aec", archive.ae_title, "127.0.0.1",
                   str(archive.port))  # fmt: skip
    assert result.returncode == 0
    assert archive.server.statistics()["counters"]["echo"] == 1


def test_storescu_variety_is_stored_as_received(archive: Archive, tmp_path: Path) -> None:
    files = variety(tmp_path / "in")
    for path in files:  # one association each, proposing the file's own transfer syntax
        tsuid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        storescu(archive, path, propose=PROPOSE[tsuid])
    for path in files:
        sop_iuid = sop_instance_uid(path)
        (record,) = archive.index.files_of_instance(sop_iuid)
        stored = archive.online / record.filepath
        sent = pydicom.dcmread(path)
        kept = pydicom.dcmread(stored)
        assert kept.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID, path.name
        assert record.tsuid == sent.file_meta.TransferSyntaxUID
        assert kept.file_meta.SourceApplicationEntityTitle == "MODALITY"
        if "PixelData" in sent:
            assert kept.PixelData == sent.PixelData, path.name
        assert record.md5 == hashlib.md5(stored.read_bytes()).hexdigest()
        assert record.size == stored.stat().st_size
        assert record.status is FileStatus.DEFAULT


def test_layout_is_date_then_java_hashes(archive: Archive, tmp_path: Path) -> None:
    (path,) = ct_study(tmp_path / "in", 1)
    storescu(archive, path)
    ds = pydicom.dcmread(path)
    (record,) = archive.index.files_of_instance(ds.SOPInstanceUID)
    parts = record.filepath.split("/")
    assert len(parts) == 7
    year, month, day, hour = map(int, parts[:4])
    assert 2024 <= year and 1 <= month <= 12 and 1 <= day <= 31 and 0 <= hour <= 23
    assert parts[4:] == [hash_name(ds.StudyInstanceUID), hash_name(ds.SeriesInstanceUID),
                         hash_name(ds.SOPInstanceUID)]  # fmt: skip
    assert str(parts[1]) == str(month)  # no zero padding


def test_pynetdicom_bytes_are_kept_exactly(archive: Archive, tmp_path: Path) -> None:
    """Sent raw from the file (no re-encoding on our side either): stored byte for byte."""
    paths = ct_study(tmp_path / "in", 3)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    assert assoc.is_established
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        for path in paths:
            assert assoc.send_c_store(path).Status == 0x0000
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
    for path in paths:
        (record,) = archive.index.files_of_instance(sop_instance_uid(path))
        assert dataset_bytes(archive.online / record.filepath) == dataset_bytes(path)


def test_index_holds_study_series_counts(archive: Archive, tmp_path: Path) -> None:
    paths = ct_study(tmp_path / "in", 5, patient_id="P77")
    storescu(archive, *paths)
    row = (
        archive.index.read()
        .execute(
            "SELECT p.pat_id, st.num_series, st.num_instances, st.mods_in_study "
            "FROM study st JOIN patient p ON p.pk = st.patient_fk"
        )
        .fetchone()
    )
    assert row == ("P77", 1, 5, "CT")
    assert len(archive.index.study_access_times(pydicom.dcmread(paths[0]).StudyInstanceUID)) == 1


def test_duplicate_ignored_by_default(archive: Archive, tmp_path: Path) -> None:
    (path,) = ct_study(tmp_path / "a", 1)
    storescu(archive, path)
    storescu(archive, path)
    files = archive.index.files_of_instance(sop_instance_uid(path))
    assert len(files) == 1
    assert sum(1 for p in archive.online.rglob("*") if p.is_file()) == 1
    assert archive.server.statistics()["counters"]["duplicates_ignored"] == 1


def test_duplicate_replaced_when_configured(start_archive, tmp_path: Path) -> None:
    archive = start_archive(duplicate_policy="replace")
    (path,) = ct_study(tmp_path / "a", 1)
    storescu(archive, path)
    (first,) = archive.index.files_of_instance(sop_instance_uid(path))
    ds = pydicom.dcmread(path)
    ds.InstanceNumber = 99
    ds.save_as(path, enforce_file_format=True)
    storescu(archive, path)
    (second,) = archive.index.files_of_instance(sop_instance_uid(path))
    assert second.pk != first.pk
    assert not (archive.online / first.filepath).exists()
    assert pydicom.dcmread(archive.online / second.filepath).InstanceNumber == 99
    inst_no = archive.index.read().execute("SELECT inst_no FROM instance").fetchone()[0]
    assert inst_no == "99"


def send_raw(archive: Archive, tmp_path: Path, sop_class: str, sop_instance: str,
             raw: bytes) -> int:  # fmt: skip
    """C-STORE of arbitrary data set bytes, as a broken modality would send them.

    pynetdicom's chunked sending puts a file's data set bytes on the wire unparsed.
    """
    path = tmp_path / "raw.dcm"
    path.write_bytes(file_meta_bytes(sop_class, sop_instance, ExplicitVRLittleEndian, "") + raw)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    assert assoc.is_established
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()


@pytest.mark.parametrize("cut", [1000, 20000, 40])
def test_truncated_dataset_fails_and_leaves_nothing(
    archive: Archive, tmp_path: Path, cut: int
) -> None:
    (path,) = ct_study(tmp_path / "in", 1, rows=128, columns=128)
    raw = dataset_bytes(path)[:-cut]
    status = send_raw(archive, tmp_path, CTImageStorage, sop_instance_uid(path), raw)
    assert status == 0xC000
    assert archive.index.counts()["instance"] == 0
    assert not [p for p in archive.online.rglob("*") if p.is_file()]
    # the daemon is unaffected
    (good,) = ct_study(tmp_path / "good", 1)
    storescu(archive, good)
    assert archive.index.counts()["instance"] == 1


def test_garbage_and_mismatched_uid_are_refused(archive: Archive, tmp_path: Path) -> None:
    raw = b"\x08\x00\x16\x00ZZ\x04\x00abcd"
    assert send_raw(archive, tmp_path, CTImageStorage, "1.2.3", raw) == 0xC000
    (path,) = ct_study(tmp_path / "in", 1)
    assert send_raw(archive, tmp_path, CTImageStorage, "1.2.3.999", dataset_bytes(path)) == 0xA900
    assert archive.index.counts()["instance"] == 0


def test_unknown_calling_ae_is_rejected(archive: Archive, tmp_path: Path) -> None:
    (path,) = ct_study(tmp_path / "in", 1)
    result = storescu(archive, path, aet="STRANGER", check=False)
    assert result.returncode != 0
    assert "rejected" in (result.stdout + result.stderr).lower()
    assert archive.index.counts()["instance"] == 0
    assert archive.server.statistics()["counters"]["associations_rejected"] == 1


def test_host_restriction_rejects_other_hosts(start_archive, tmp_path: Path) -> None:
    from archived.dicom import RemoteAE

    archive = start_archive(remote_aes=(RemoteAE("MODALITY", allowed_hosts=("192.0.2.7",)),))
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    assert assoc.is_rejected
    assert archive.server.statistics()["counters"]["associations_rejected"] == 1


def test_ae_without_store_permission_cannot_negotiate_storage(archive: Archive) -> None:
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    assert assoc.is_established
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assert accepted == {Verification}
    finally:
        assoc.release()
