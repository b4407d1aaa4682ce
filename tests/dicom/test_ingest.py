"""The C-STORE receive path: written once, group commit, bad input stays bad input.

Peers: DCMTK (storescu, echoscu) and pynetdicom, against a running archive.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
)
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification

from archived.dicom.encoding import file_meta_bytes
from archived.dicom.errors import MalformedDatasetError
from archived.dicom.incoming import KEPT_TAGS, uid_problem
from archived.dicom.walker import DatasetWalker
from archived.index import ONLINE_STORAGE, FileSystemSpec
from tests.dicom.conftest import Archive
from tests.dicom.data import VARIETY, bundled, ct_study, dataset_bytes, sop_instance_uid
from tests.dicom.peers import dcmtk
from tests.dicom.test_store import send_raw, storescu
from tests.mounts import wait_for


def stored_files(archive: Archive) -> list[Path]:
    return [p for p in archive.online.rglob("*") if p.is_file()]


# -- the streaming walker ----------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in VARIETY if "dfl" not in n])
def test_walker_accepts_real_files_in_any_fragmentation(name: str) -> None:
    ds = pydicom.dcmread(bundled(name))
    raw = dataset_bytes(bundled(name))
    syntax = ds.file_meta.TransferSyntaxUID
    for piece in (1, 7, 4096, len(raw)):
        walker = DatasetWalker(syntax.is_implicit_VR, syntax.is_little_endian, KEPT_TAGS)
        for start in range(0, len(raw), piece):
            walker.feed(raw[start : start + piece])
        walker.finish()
        kept = pydicom.filereader.read_dataset(
            io.BytesIO(bytes(walker.head)), syntax.is_implicit_VR, syntax.is_little_endian
        )
        assert kept.SOPInstanceUID == ds.SOPInstanceUID


def test_walker_refuses_every_truncation(tmp_path: Path) -> None:
    (path,) = ct_study(tmp_path, 1, rows=16, columns=16)
    raw = dataset_bytes(path)
    element_ends = _top_level_element_ends(raw)
    for cut in range(1, len(raw), 37):
        walker = DatasetWalker(False, True, KEPT_TAGS)
        walker.feed(raw[:cut])
        if cut in element_ends:
            walker.finish()  # a shorter but complete data set
            continue
        with pytest.raises(MalformedDatasetError, match="truncated"):
            walker.finish()


def _top_level_element_ends(raw: bytes) -> set[int]:
    ends = set()
    walker = DatasetWalker(False, True, frozenset())
    for n in range(len(raw)):
        walker.feed(raw[n : n + 1])
        if walker._request == (0, 8) and not walker._pending and walker._at_element_start:
            ends.add(n + 1)
    return ends


def test_file_meta_is_what_pydicom_writes() -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.45"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ARCHIVED_1"
    meta.SourceApplicationEntityTitle = "MOD"
    buffer = io.BytesIO(b"\x00" * 128 + b"DICM")
    buffer.seek(0, io.SEEK_END)
    write_file_meta_info(buffer, meta, enforce_standard=True)
    assert file_meta_bytes(CTImageStorage, "1.2.3.45", ExplicitVRLittleEndian, "MOD") == (
        buffer.getvalue()
    )


@pytest.mark.parametrize(
    "uid", ["../../etc/passwd", "1.2.3\x00.4", "1.2.\u00e9", "1." * 40 + "1", "1.02.3", "1..2", ""]
)
def test_invalid_uids_are_named(uid: str) -> None:
    assert uid_problem(uid) is not None


def test_valid_uids_pass() -> None:
    for uid in ("1.2.840.10008.5.1.4.1.1.2", "0.0", "2.25." + "9" * 38):
        assert uid_problem(uid) is None


# -- written once, nothing in TMPDIR -----------------------------------------------------


@pytest.fixture
def private_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """TMPDIR of this process for the test: anything written there is ours."""
    directory = tmp_path / "tmpdir"
    directory.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(directory)
    try:
        yield directory
    finally:
        tempfile.tempdir = saved


def test_stored_file_is_the_received_bytes_and_tmpdir_stays_empty(
    archive: Archive, tmp_path: Path, private_tmpdir: Path
) -> None:
    paths = ct_study(tmp_path / "in", 3, rows=256, columns=256)
    storescu(archive, *paths)
    for path in paths:
        (record,) = archive.index.files_of_instance(sop_instance_uid(path))
        stored = archive.online / record.filepath
        assert stored.read_bytes().endswith(dataset_bytes(path))
        import hashlib

        assert hashlib.md5(stored.read_bytes()).hexdigest() == record.md5
    assert list(private_tmpdir.iterdir()) == []


def send_partially_then_abort(archive: Archive, path: Path, fraction: float) -> None:
    """pynetdicom peer: the command and part of the data set's P-DATA, then A-ABORT."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title, max_pdu=16384)
    assert assoc.is_established
    primitive = C_STORE()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = sop_instance_uid(path)
    primitive.Priority = 2
    primitive.DataSet = io.BytesIO(dataset_bytes(path))
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    context_id = assoc.accepted_contexts[0].context_id
    fragments = list(message.encode_msg(context_id, assoc.acceptor.maximum_length))
    for p_data in fragments[: max(2, int(len(fragments) * fraction))]:
        assoc.dul.send_pdu(p_data)
    time.sleep(0.2)
    assoc.abort()


@pytest.mark.parametrize("fraction", [0.1, 0.9])
def test_abort_mid_instance_leaves_nothing_anywhere(
    archive: Archive, tmp_path: Path, private_tmpdir: Path, fraction: float
) -> None:
    (path,) = ct_study(tmp_path / "in", 1, rows=512, columns=512)
    send_partially_then_abort(archive, path, fraction)
    wait_for(lambda: archive.server.statistics()["associations"] == 0, timeout=30)
    assert archive.index.counts()["instance"] == 0
    assert stored_files(archive) == []
    assert list(private_tmpdir.iterdir()) == []
    storescu(archive, path)  # the same instance afterwards is fine
    assert archive.index.counts()["instance"] == 1


# -- bad input ---------------------------------------------------------------------------


def test_truncated_pixel_data_is_refused_with_a_comment(archive: Archive, tmp_path: Path) -> None:
    (path,) = ct_study(tmp_path / "in", 1, rows=64, columns=64)
    raw = dataset_bytes(path)[:-100]  # pixel data shorter than its header says
    path_raw = tmp_path / "raw.dcm"
    path_raw.write_bytes(
        file_meta_bytes(CTImageStorage, sop_instance_uid(path), ExplicitVRLittleEndian, "") + raw
    )
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(path_raw)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
    assert status.Status == 0xC000
    assert "truncated" in status.ErrorComment
    assert archive.index.counts()["instance"] == 0
    assert stored_files(archive) == []


def test_wrong_called_ae_is_rejected(archive: Archive) -> None:
    result = dcmtk("echoscu", "-aet", "MODALITY", "-aec", "WRONGCALLED", "127.0.0.1",
                   str(archive.port), check=False)  # fmt: skip
    assert result.returncode != 0
    assert "rejected" in (result.stdout + result.stderr).lower()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title="WRONGCALLED")
    assert assoc.is_rejected
    assert dcmtk("echoscu", "-aet", "MODALITY", "-aec", archive.ae_title, "127.0.0.1",
                 str(archive.port)).returncode == 0  # fmt: skip


def test_idle_connections_time_out_and_cannot_lock_out_a_modality(start_archive) -> None:
    archive = start_archive(max_associations=3, request_timeout=1.0)
    idle = [socket.create_connection(("127.0.0.1", archive.port)) for _ in range(25)]
    half = socket.create_connection(("127.0.0.1", archive.port))
    half.sendall(b"\x01\x00\x00\x00\x01\x00")  # an A-ASSOCIATE-RQ that never finishes
    try:
        for sock in [*idle, half]:
            sock.settimeout(30)
            assert _closed_by_peer(sock), "an idle connection was left open"
        result = dcmtk("echoscu", "-aet", "MODALITY", "-aec", archive.ae_title, "127.0.0.1",
                       str(archive.port))  # fmt: skip
        assert result.returncode == 0
    finally:
        for sock in [*idle, half]:
            sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_uid_with_path_characters_is_refused_and_stays_inside(
    archive: Archive, tmp_path: Path
) -> None:
    (path,) = ct_study(tmp_path / "in", 1)
    ds = pydicom.dcmread(path)
    bad = tmp_path / "bad.dcm"
    with warnings.catch_warnings():  # pydicom warns about the invalid UIDs: that is the point
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = "../../../escaped"
        ds.SeriesInstanceUID = "1.2.3/../../x"
        ds.save_as(bad, enforce_file_format=True)
    # DCMTK peer
    result = dcmtk("storescu", "-v", "-xe", "-aet", "MODALITY", "-aec", archive.ae_title,
                   "127.0.0.1", str(archive.port), bad, check=False)  # fmt: skip
    assert "datasetdoesnotmatchsopclass" in (result.stdout + result.stderr).lower()
    # pynetdicom peer, raw bytes
    status = send_raw(archive, tmp_path, CTImageStorage, ds.SOPInstanceUID, dataset_bytes(bad))
    assert status == 0xA900
    assert archive.index.counts()["instance"] == 0
    assert stored_files(archive) == []
    assert not list(tmp_path.rglob("escaped*"))


def test_invalid_affected_sop_instance_uid_is_refused(archive: Archive, tmp_path: Path) -> None:
    (path,) = ct_study(tmp_path / "in", 1)
    with warnings.catch_warnings():  # pynetdicom warns about the UID it sends
        warnings.simplefilter("ignore")
        status = send_raw(archive, tmp_path, CTImageStorage, "1.2.03.4",
                          dataset_bytes(path))  # fmt: skip
    assert status == 0xA900
    assert archive.index.counts()["instance"] == 0


def deflated_bomb(tmp_path: Path, inflated: int) -> Path:
    """A deflated CT whose private element of zeros inflates to ``inflated`` bytes."""
    (path,) = ct_study(tmp_path / "bomb-src", 1, rows=8, columns=8)
    ds = pydicom.dcmread(path)
    raw = bytearray(dataset_bytes(path))
    header = b"\x09\x00\x10\x00OB\x00\x00" + inflated.to_bytes(4, "little")  # (0009,0010)
    insert_at = raw.index(b"\x10\x00\x10\x00")  # before PatientName (0010,0010)
    raw[insert_at:insert_at] = header + b"\x00" * inflated
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(bytes(raw)) + compressor.flush()
    out = tmp_path / "bomb.dcm"
    out.write_bytes(
        file_meta_bytes(CTImageStorage, ds.SOPInstanceUID, DeflatedExplicitVRLittleEndian, "")
        + deflated
    )
    return out


def test_deflate_inflation_is_bounded(start_archive, tmp_path: Path) -> None:
    archive = start_archive(max_inflated_size=1 << 20)
    bomb = deflated_bomb(tmp_path, 16 << 20)
    assert bomb.stat().st_size < 100_000
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, DeflatedExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(bomb)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
    assert status.Status == 0xA700
    assert "MaxInflatedSize" in status.ErrorComment
    assert archive.index.counts()["instance"] == 0
    assert stored_files(archive) == []


def test_each_association_gets_a_summary_line(
    archive: Archive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = ct_study(tmp_path / "in", 2)
    with caplog.at_level(logging.INFO, logger="archived.dicom.associations"):
        storescu(archive, *paths)
        dcmtk("echoscu", "-aet", "MODALITY", "-aec", archive.ae_title, "127.0.0.1",
              str(archive.port))  # fmt: skip
        wait_for(lambda: len([r for r in caplog.records if "association with" in r.message]) >= 2,
                 timeout=30)  # fmt: skip
    lines = [r.message for r in caplog.records if "association with" in r.message]
    assert any("released" in m and "2 instance(s) stored" in m and "0 failed" in m for m in lines)
    assert any("1 echo(es)" in m for m in lines)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test: a disk that fills."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mountpoint)],
                   check=True)  # fmt: skip
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_disk_full_mid_instance_answers_a700_and_leaves_no_file(
    start_archive, tmp_path: Path, small_disk: Path
) -> None:
    archive = start_archive()
    # the small disk becomes the only writable ONLINE file system
    archive.index.mirror_filesystems([FileSystemSpec("fs-small", ONLINE_STORAGE, str(small_disk))])
    big = ct_study(tmp_path / "big", 1, rows=1024, columns=1024)  # 2 MiB each
    big += ct_study(tmp_path / "big2", 1, rows=1024, columns=1024)
    result = dcmtk("storescu", "-v", "-xe", "-aet", "MODALITY", "-aec", archive.ae_title,
                   "127.0.0.1", str(archive.port), *big, check=False)  # fmt: skip
    assert "outofresources" in (result.stdout + result.stderr).lower()  # the 2nd does not fit
    assert archive.index.counts()["instance"] == 1
    (path,) = ct_study(tmp_path / "big3", 1, rows=1024, columns=1024)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
    status = assoc.send_c_store(pydicom.dcmread(path))  # pynetdicom peer
    assoc.release()
    assert status.Status == 0xA700
    assert "full" in status.ErrorComment
    assert len([p for p in small_disk.rglob("*") if p.is_file()]) == 1
    assert os.statvfs(small_disk).f_bfree * os.statvfs(small_disk).f_frsize > 500_000
    (small,) = ct_study(tmp_path / "small", 1, rows=64, columns=64)
    storescu(archive, small)  # space came back: smaller instances still fit
    assert archive.index.counts()["instance"] == 2


# -- concurrency ---------------------------------------------------------------------------


def test_slow_index_does_not_stop_other_associations_and_groups_them(
    archive: Archive, tmp_path: Path
) -> None:
    """While the index write lock is held, other associations still receive their whole
    instances (they queue for the next group); once it is free, one group commits them."""
    studies = [ct_study(tmp_path / f"s{n}", 2, rows=128, columns=128) for n in range(3)]
    committer = archive.server.committer
    archive.index._write_lock.acquire()
    try:
        senders = [threading.Thread(target=storescu, args=(archive, *paths)) for paths in studies]
        for sender in senders:
            sender.start()
        # Every association's first instance was received: in the blocked group or queued
        # behind it (how many the group took depends on when they arrived).
        wait_for(lambda: sum(committer.statistics()[k] for k in ("queued", "committing")) >= 3,
                 timeout=60)  # fmt: skip
        assert committer.statistics()["groups"] == 0
    finally:
        archive.index._write_lock.release()
    for sender in senders:
        sender.join(timeout=120)
    assert archive.index.counts()["instance"] == 6
    assert committer.statistics()["largest_group"] >= 2


def test_early_success_reports_commitment_only_when_durable(start_archive, tmp_path: Path) -> None:
    archive = start_archive(early_success=True)
    paths = ct_study(tmp_path / "in", 5)
    storescu(archive, *paths)
    wait_for(lambda: archive.server.committer.statistics()["instances"] >= 5, timeout=30)
    assert archive.index.counts()["instance"] == 5
    assert archive.server.committer.wait_durable([sop_instance_uid(p) for p in paths], 10)
    for path in paths:
        (record,) = archive.index.files_of_instance(sop_instance_uid(path))
        assert (archive.online / record.filepath).read_bytes().endswith(dataset_bytes(path))
