"""Storage Commitment Push Model: N-ACTION, then N-EVENT-REPORT on a new or the same association."""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from archived.dicom import RemoteAE
from archived.dicom.connection import CONNECTION_HANDLERS
from tests.dicom.conftest import MODALITY
from tests.dicom.data import ct_study
from tests.dicom.peers import free_port
from tests.dicom.test_store import storescu
from tests.mounts import wait_for

STGCMT_INSTANCE = "1.2.840.10008.1.20.1.1"
REPORT_TIMEOUT = 60


class ReportCatcher:
    """Collects N-EVENT-REPORTs (event type, Event Information) on any association."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, Dataset]] = []
        self.arrived = threading.Event()

    def handle(self, event) -> tuple[int, None]:
        self.reports.append((event.event_type, event.event_information))
        self.arrived.set()
        return 0x0000, None


def request(stored: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    items = []
    for cuid, iuid in stored:
        item = Dataset()
        item.ReferencedSOPClassUID = cuid
        item.ReferencedSOPInstanceUID = iuid
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def test_report_on_a_new_association(start_archive, tmp_path: Path) -> None:
    catcher = ReportCatcher()
    scp = AE(ae_title="MODALITY")
    scp.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(evt.EVT_N_EVENT_REPORT, catcher.handle),
                                            *CONNECTION_HANDLERS])  # fmt: skip
    try:
        archive = start_archive(remote_aes=(RemoteAE("MODALITY", "127.0.0.1", port),))
        import pydicom

        paths = ct_study(tmp_path / "in", 2)
        storescu(archive, *paths)
        refs = [(str(d.SOPClassUID), str(d.SOPInstanceUID))
                for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in paths)]  # fmt: skip
        missing = ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6.7")
        ds = request([*refs, missing])
        scu = AE(ae_title="MODALITY")
        scu.add_requested_context(StorageCommitmentPushModel)
        assoc = scu.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
        status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, STGCMT_INSTANCE)
        assoc.release()
        assert status.Status == 0x0000
        assert catcher.arrived.wait(REPORT_TIMEOUT), "no N-EVENT-REPORT arrived"
        event_type, info = catcher.reports[0]
        assert event_type == 2  # some failed
        assert info.TransactionUID == ds.TransactionUID
        assert sorted(i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence) == sorted(
            iuid for _, iuid in refs)  # fmt: skip
        (failed,) = info.FailedSOPSequence
        assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (missing[1], 0x0112)
        rows = archive.index.commitments(str(ds.TransactionUID))
        assert len(rows) == 3
        wait_for(lambda: all(r[3] is not None for r in
                             archive.index.commitments(str(ds.TransactionUID))),
                 what="the report time to be recorded")  # fmt: skip
    finally:
        server.shutdown()


def test_report_on_the_same_association(start_archive, tmp_path: Path) -> None:
    archive = start_archive(stgcmt_same_association=True, remote_aes=(MODALITY,))
    import pydicom

    paths = ct_study(tmp_path / "in", 2)
    storescu(archive, *paths)
    refs = [(str(d.SOPClassUID), str(d.SOPInstanceUID))
            for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in paths)]  # fmt: skip
    catcher = ReportCatcher()
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(StorageCommitmentPushModel)
    assoc = scu.associate(
        "127.0.0.1", archive.port, ae_title=archive.ae_title,
        ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True)],
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, catcher.handle)],
    )  # fmt: skip
    try:
        ds = request(refs)
        status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, STGCMT_INSTANCE)
        assert status.Status == 0x0000
        assert catcher.arrived.wait(REPORT_TIMEOUT), "no N-EVENT-REPORT on the association"
    finally:
        assoc.release()
    event_type, info = catcher.reports[0]
    assert event_type == 1  # all committed
    assert not info.get("FailedSOPSequence")
    assert len(info.ReferencedSOPSequence) == 2
    committed = archive.index.read().execute("SELECT SUM(commitment) FROM instance").fetchone()
    assert committed[0] == 2
