"""C-STORE SCP: each instance written once on ONLINE storage, indexed, durable, then Success.

``open_incoming`` runs on the DUL thread when a C-STORE-RQ's command set is in and
decides where its data set goes (archived.dicom.incoming streams it there). ``handle``
runs on the association thread once the data set is complete: it checks what the walk
found, links the file into its directory and waits for its group commit
(archived.dicom.groupcommit) before it answers.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from archived.dicom.errors import NoStorageError
from archived.dicom.groupcommit import GroupCommitter, PendingInstance
from archived.dicom.hashing import HashWorkers
from archived.dicom.incoming import (
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    IncomingInstance,
    Refusal,
    StoreRefused,
    uid_problem,
)
from archived.dicom.peer import describe_peer, peer_permissions
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics, StoreTimings
from archived.dicom.summary import summary_of
from archived.index import (
    ONLINE_STORAGE,
    FileSystemRecord,
    Index,
    InstanceAttributes,
    NewFile,
    NewInstance,
    StoreOutcome,
)
from archived.storage import (
    instance_dir,
    java_string_hash,
    make_instance_dir,
    remove_file,
)

LOG = logging.getLogger("archived.dicom.store")

SUCCESS = 0x0000
NOT_AUTHORISED = 0x0124
CANNOT_UNDERSTAND = 0xC000


class StoreSCP:
    """Handler for evt.EVT_C_STORE, and the sink factory of archived.dicom.reactor."""

    def __init__(
        self, settings: DicomSettings, index: Index, stats: ServiceStatistics,
        committer: GroupCommitter, timings: StoreTimings, hashing: HashWorkers,
    ) -> None:  # fmt: skip
        self.hashing = hashing
        self.settings = settings
        self.index = index
        self.stats = stats
        self.committer = committer
        self.timings = timings

    def online_filesystem(self) -> FileSystemRecord:
        """The first writable ONLINE file system with space left."""
        for fs in self.index.filesystems(ONLINE_STORAGE):
            if fs.status != "RW" or fs.is_tar:
                continue
            try:
                if shutil.disk_usage(fs.root).free > 0:
                    return fs
            except OSError as exc:
                LOG.warning("ONLINE file system %s (%s) is not usable: %s", fs.uuid, fs.path, exc)
        raise NoStorageError(
            "no writable ONLINE_STORAGE file system with free space; "
            "add one with `archivectl fs add --group ONLINE_STORAGE PATH`"
        )

    # -- DUL thread ---------------------------------------------------------------------

    def open_incoming(
        self, assoc: Association, context_id: int, command: Dataset
    ) -> IncomingInstance:
        sop_iuid = str(command.AffectedSOPInstanceUID or "")
        sop_cuid = str(command.AffectedSOPClassUID or "")
        context = assoc._accepted_cx.get(context_id)
        tsuid = str(context.transfer_syntax[0]) if context is not None else "1.2.840.10008.1.2"
        args: dict[str, Any] = {
            "sop_cuid": sop_cuid, "sop_iuid": sop_iuid, "tsuid": tsuid,
            "calling_aet": str(assoc.requestor.ae_title).strip(),
            "max_inflated": self.settings.max_inflated_size,
        }  # fmt: skip
        problem = uid_problem(sop_iuid)
        if problem is not None:
            refusal = Refusal(DATASET_MISMATCH, f"Affected SOP Instance UID {sop_iuid!r} {problem}")
            return IncomingInstance(None, refusal=refusal, **args)
        if self.settings.duplicate_policy == "ignore" and self.index.instance_exists(sop_iuid):
            return IncomingInstance(None, duplicate=True, **args)
        try:
            return IncomingInstance(self.online_filesystem(), md5=self.hashing.md5(), **args)
        except NoStorageError as exc:
            return IncomingInstance(None, refusal=Refusal(OUT_OF_RESOURCES, str(exc)), **args)

    # -- association thread -------------------------------------------------------------

    def handle(self, event: Event) -> int | Dataset:
        peer = describe_peer(event.assoc)
        request = event.request
        assert isinstance(request, C_STORE)  # this handler is bound to EVT_C_STORE only
        sop_iuid = str(request.AffectedSOPInstanceUID)
        take = getattr(event.assoc.dimse, "take", None)
        incoming: IncomingInstance | None = take(request.MessageID) if take else None
        summary = summary_of(event.assoc)
        if incoming is None:
            LOG.error("C-STORE of %s from %s: no data set was received", sop_iuid, peer)
            return _status(CANNOT_UNDERSTAND, "no data set received")
        summary.add("bytes", incoming.received)
        permissions = peer_permissions(self.settings, event.assoc)
        if permissions is not None and not permissions.store:
            incoming.discard()
            LOG.warning("C-STORE of %s from %s refused: not allowed to store", sop_iuid, peer)
            self.stats.count("store_refused")
            summary.add("failed")
            return NOT_AUTHORISED
        try:
            status = self._store(event, incoming)
        except StoreRefused as refused:
            incoming.discard()
            r = refused.refusal
            log = LOG.error if r.status == OUT_OF_RESOURCES else LOG.warning
            log("C-STORE of %s from %s refused (0x%04X): %s", sop_iuid, peer, r.status, r.reason)
            self.stats.count("store_failed")
            summary.add("failed")
            return _status(r.status, r.reason)
        except Exception as exc:  # a handler must answer with a status, never raise
            incoming.discard()
            LOG.error("C-STORE of %s from %s failed: %s", sop_iuid, peer, exc,
                      exc_info=not isinstance(exc, OSError))  # fmt: skip
            self.stats.count("store_failed")
            summary.add("failed")
            return _status(OUT_OF_RESOURCES, f"cannot store: {exc}")
        self.stats.count("stored")
        summary.add("stored")
        return status

    def _store(self, event: Event, incoming: IncomingInstance) -> int:
        if incoming.duplicate:
            LOG.info("duplicate %s from %s ignored", incoming.sop_iuid, describe_peer(event.assoc))
            self.stats.count("duplicates_ignored")
            return SUCCESS
        attrs = incoming.attributes()
        staged = incoming.staged
        assert staged is not None
        started = time.perf_counter()
        relative_dir = instance_dir(attrs.study_iuid, attrs.series_iuid, time.time())
        directory = make_instance_dir(incoming.root, relative_dir)
        early = self.settings.early_success
        if not early:
            staged.datasync()
        name = staged.link(directory, java_string_hash(attrs.sop_iuid))
        synced = time.perf_counter()
        assert incoming.filesystem is not None
        new_file = NewFile(incoming.filesystem.pk, f"{relative_dir}/{name}", incoming.tsuid,
                           incoming.md5, staged.size)  # fmt: skip
        replace = self.settings.duplicate_policy == "replace"
        try:
            if early:
                outcome = self.index.store_instance(
                    attrs, new_file, src_aet=incoming.calling_aet, replace=replace, durable=False
                )
                incoming.staged = None  # the committer closes it once durable
                self.committer.make_durable(
                    PendingInstance(attrs.sop_iuid, directory, staged=staged)
                )
                group_wait = 0.0
            else:
                pending = PendingInstance(
                    attrs.sop_iuid, directory,
                    instance=NewInstance(attrs, new_file, incoming.calling_aet, replace),
                )  # fmt: skip
                outcome = self.committer.commit(pending)
                group_wait = time.perf_counter() - synced
        except BaseException:
            remove_file(incoming.root, new_file.filepath, _log_unlink_failure)
            raise
        self.timings.add(incoming.timing, synced - started, group_wait, staged.size)
        incoming.discard()
        self._superseded(incoming, new_file, outcome, attrs)
        return SUCCESS

    def _superseded(
        self, incoming: IncomingInstance, new_file: NewFile, outcome: StoreOutcome,
        attrs: InstanceAttributes,
    ) -> None:  # fmt: skip
        if outcome.ignored:  # a concurrent association stored it first
            remove_file(incoming.root, new_file.filepath, _log_unlink_failure)
            self.stats.count("duplicates_ignored")
        for old in outcome.replaced_files:
            if not old.filesystem.is_tar:
                remove_file(old.filesystem.root, old.filepath, _log_unlink_failure)
            self.stats.count("duplicates_replaced")


def _status(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment.encode("ascii", "replace").decode()[:64]  # LO, default repertoire
    return ds


def _log_unlink_failure(exc: OSError) -> None:
    LOG.error("cannot remove superseded file %s: %s", exc.filename, exc)
