"""Storage Commitment Push Model SCP: N-ACTION in, N-EVENT-REPORT out.

The N-ACTION is answered at once; a worker thread then checks the referenced instances
against the index (recording each in the stgcmt table) and sends the N-EVENT-REPORT,
either on the requesting association (pynetdicom pauses that association's reactor, so
the report always follows the N-ACTION response) or on a new association to the
requester's configured host and port, with the SCP role negotiated for this SOP class.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import StorageCommitmentPushModel

from archived.dicom.connection import CONNECTION_HANDLERS
from archived.dicom.groupcommit import GroupCommitter
from archived.dicom.peer import calling_ae_title, describe_peer
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics
from archived.index import Index

LOG = logging.getLogger("archived.dicom.stgcmt")

REQUEST_COMMIT = 1
ALL_COMMITTED = 1
SOME_FAILED = 2
STGCMT_INSTANCE_UID = "1.2.840.10008.1.20.1.1"  # the well-known SOP Instance
SUCCESS = 0x0000
NO_SUCH_ACTION = 0x0123
INVALID_ARGUMENT = 0x0115
PROCESSING_FAILURE = 0x0110


class StorageCommitmentSCP:
    def __init__(
        self, settings: DicomSettings, index: Index, stats: ServiceStatistics, ae: AE,
        committer: GroupCommitter,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.index = index
        self.stats = stats
        self.ae = ae
        self.committer = committer
        self._workers: list[threading.Thread] = []

    def handle_action(self, event: Event) -> tuple[int, Dataset | None]:
        peer = describe_peer(event.assoc)
        if event.action_type != REQUEST_COMMIT:
            LOG.warning("N-ACTION type %s from %s refused", event.action_type, peer)
            return NO_SUCH_ACTION, None
        try:
            info = event.action_information
            transaction_uid = str(info.TransactionUID)
            refs = [
                (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
                for item in info.ReferencedSOPSequence
            ]
        except Exception as exc:
            LOG.warning("storage commitment request from %s cannot be read: %s", peer, exc)
            return INVALID_ARGUMENT, None
        requester = calling_ae_title(event.assoc)
        worker = threading.Thread(
            target=self._commit_and_report,
            args=(event.assoc, requester, transaction_uid, refs),
            name=f"stgcmt-{transaction_uid}",
            daemon=True,
        )
        self._workers = [w for w in self._workers if w.is_alive()]
        self._workers.append(worker)
        worker.start()
        return SUCCESS, None

    def join(self, timeout: float | None = None) -> None:
        """Wait for reports in progress (server shutdown)."""
        for worker in list(self._workers):
            worker.join(timeout)

    def _commit_and_report(
        self, assoc: Association, requester: str, transaction_uid: str,
        refs: Sequence[tuple[str, str]],
    ) -> None:  # fmt: skip
        # With StoreEarlySuccess an instance may be indexed but not yet durable: the
        # report names it committed only once its group has synced it.
        bound = self.settings.dimse_timeout
        if not self.committer.wait_durable((iuid for _, iuid in refs), bound):
            LOG.warning("storage commitment %s for %s: instances not durable after %.0f s; "
                        "reporting them as is", transaction_uid, requester, bound)  # fmt: skip
        try:
            committed, failed = self.index.commit_instances(transaction_uid, requester, refs)
        except Exception:
            LOG.exception("storage commitment %s for %s: index error", transaction_uid, requester)
            committed, failed = [], [(cuid, iuid, PROCESSING_FAILURE) for cuid, iuid in refs]
        report = _event_information(transaction_uid, committed, failed)
        event_type = SOME_FAILED if failed else ALL_COMMITTED
        sent = False
        if self.settings.stgcmt_same_association and assoc.is_established:
            sent = _send_report(assoc, report, event_type)
        if not sent:
            sent = self._report_on_new_association(requester, report, event_type)
        if sent:
            self.index.commitment_reported(transaction_uid)
            self.stats.count("stgcmt_reported")
            LOG.info("storage commitment %s reported to %s: %d committed, %d failed",
                     transaction_uid, requester, len(committed), len(failed))  # fmt: skip
        else:
            self.stats.count("stgcmt_report_failed")

    def _report_on_new_association(self, requester: str, report: Dataset, event_type: int) -> bool:
        remote = self.settings.remote(requester)
        if remote is None or not remote.host or not remote.port:
            LOG.error("storage commitment report for %s not sent: its host and port are not "
                      "configured (`archivectl ae add`)", requester)  # fmt: skip
            return False
        context = build_context(
            StorageCommitmentPushModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        assoc = self.ae.associate(
            remote.host, remote.port, contexts=[context], ae_title=remote.ae_title,
            ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)],
            evt_handlers=CONNECTION_HANDLERS,
        )  # fmt: skip
        if not assoc.is_established:
            LOG.error("storage commitment report for %s not sent: association with %s:%s "
                      "failed", requester, remote.host, remote.port)  # fmt: skip
            return False
        try:
            return _send_report(assoc, report, event_type)
        finally:
            assoc.release()


def _send_report(assoc: Association, report: Dataset, event_type: int) -> bool:
    try:
        status, _ = assoc.send_n_event_report(
            report, event_type, StorageCommitmentPushModel, STGCMT_INSTANCE_UID
        )
    except (RuntimeError, ValueError) as exc:
        LOG.warning("N-EVENT-REPORT to %s failed: %s", describe_peer(assoc), exc)
        return False
    ok = getattr(status, "Status", None) == SUCCESS
    if not ok:
        LOG.warning("N-EVENT-REPORT to %s answered %s", describe_peer(assoc),
                    getattr(status, "Status", "nothing"))  # fmt: skip
    return ok


def _event_information(
    transaction_uid: str, committed: Sequence[tuple[str, str]],
    failed: Sequence[tuple[str, str, int]],
) -> Dataset:  # fmt: skip
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if committed:
        ds.ReferencedSOPSequence = DicomSequence([_ref(c, i) for c, i in committed])
    if failed:
        items = []
        for cuid, iuid, reason in failed:
            item = _ref(cuid, iuid)
            item.FailureReason = reason
            items.append(item)
        ds.FailedSOPSequence = DicomSequence(items)
    return ds


def _ref(cuid: str, iuid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = cuid
    item.ReferencedSOPInstanceUID = iuid
    return item
