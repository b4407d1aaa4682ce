"""The archive AE: pynetdicom wiring of access control and the service handlers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import AssociationServer

from archived.dicom.access import AccessControl
from archived.dicom.connection import CONNECTION_HANDLERS
from archived.dicom.contexts import add_supported_contexts
from archived.dicom.errors import ListenError
from archived.dicom.find import FindSCP
from archived.dicom.find_negotiation import handle_sop_extended
from archived.dicom.groupcommit import GroupCommitter
from archived.dicom.hashing import HashWorkers
from archived.dicom.peer import describe_peer
from archived.dicom.reactor import make_acceptor_server
from archived.dicom.retrieve import Retriever
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics, StoreTimings
from archived.dicom.stgcmt import StorageCommitmentSCP
from archived.dicom.store import StoreSCP
from archived.dicom.summary import SUMMARY_HANDLERS, summary_of
from archived.index import ONLINE_STORAGE, Index
from archived.storage import INCOMING_DIR, sweep_incoming

LOG = logging.getLogger("archived.dicom")


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the archive relies on."""
    # C-STORE data sets stream to their file through archived.dicom.reactor; pynetdicom's
    # own chunked mode (a temporary file in $TMPDIR) stays off.
    _config.STORE_RECV_CHUNKED_DATASET = False
    # Identifiers are logged by our handlers at the level an operator wants, and so is
    # each association (archived.dicom.summary): no per-PDU / per-message log handlers.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"


class ArchiveServer:
    """The archive's DICOM listener; ``start()`` returns once it accepts associations."""

    def __init__(self, settings: DicomSettings, index: Index) -> None:
        self.settings = settings
        self.index = index
        self.stats = ServiceStatistics()
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_pdu_size = settings.max_pdu
        self.ae.maximum_associations = settings.max_associations
        self.ae.acse_timeout = settings.acse_timeout
        self.ae.dimse_timeout = settings.dimse_timeout
        self.ae.network_timeout = settings.network_timeout
        self.ae.require_called_aet = True
        add_supported_contexts(self.ae)
        self.committer = GroupCommitter(index, queue_size=settings.store_queue_size)
        self.timings = StoreTimings()
        self.access = AccessControl(settings, self.stats)
        self.hashing = HashWorkers()
        self.store = StoreSCP(settings, index, self.stats, self.committer, self.timings,
                              self.hashing)  # fmt: skip
        self.find = FindSCP(settings, index, self.stats)
        self.retriever = Retriever(settings, index, self.stats)
        self.stgcmt = StorageCommitmentSCP(settings, index, self.stats, self.ae, self.committer)
        self._server: AssociationServer | None = None
        self._lock = threading.Lock()

    def reconfigure(self, settings: DicomSettings) -> None:
        """Apply changed settings to new requests (the listening port needs a restart)."""
        self.settings = settings
        for component in (self.access, self.store, self.find, self.retriever, self.stgcmt):
            component.settings = settings
        self.ae.maximum_pdu_size = settings.max_pdu
        self.ae.maximum_associations = settings.max_associations
        self.ae.acse_timeout = settings.acse_timeout
        self.ae.dimse_timeout = settings.dimse_timeout
        self.ae.network_timeout = settings.network_timeout

    def handlers(self) -> list[EventHandlerType]:
        return [
            *CONNECTION_HANDLERS,
            *SUMMARY_HANDLERS,
            (evt.EVT_REQUESTED, self.access.handle_requested),
            (evt.EVT_SOP_EXTENDED, handle_sop_extended),
            (evt.EVT_C_ECHO, self._handle_echo),
            (evt.EVT_C_STORE, self.store.handle),
            (evt.EVT_C_FIND, self.find.handle),
            (evt.EVT_C_MOVE, self.retriever.handle_move),
            (evt.EVT_C_GET, self.retriever.handle_get),
            (evt.EVT_N_ACTION, self.stgcmt.handle_action),
            (evt.EVT_ABORTED, self._log_abort),
        ]

    def start(self, extra_handlers: Sequence[tuple[Any, Any]] = ()) -> None:
        """Listen; ``extra_handlers`` (e.g. metrics timers) are bound next to the service's."""
        configure_pynetdicom()
        address = (self.settings.bind_address, self.settings.port)
        for fs in self.index.filesystems(ONLINE_STORAGE):
            if fs.status == "RW" and not fs.is_tar and sweep_incoming(fs.root):
                LOG.info("removed part files a crash left in %s", fs.root / INCOMING_DIR)
        self.committer.start()
        try:
            self._server = make_acceptor_server(
                self.ae,
                address,
                [*self.handlers(), *extra_handlers],
                sink_factory=self.store.open_incoming,
                request_timeout=self.settings.request_timeout,
                # Connections beyond this are closed at once; up to it, pynetdicom
                # answers those past MaximumAssociations with A-ASSOCIATE-RJ.
                max_connections=2 * self.settings.max_associations + 4,
            )
        except OSError as exc:
            self.committer.stop()
            raise ListenError(
                f"AE {self.settings.ae_title} cannot listen on "
                f"{self.settings.bind_address or '*'}:{self.settings.port}: {exc.strerror}; "
                "free the port or change it in the configuration"
            ) from exc
        LOG.info("AE %s listening on port %d", self.settings.ae_title, self.port)

    @property
    def port(self) -> int:
        """The port actually listened on (settings.port 0 picks a free one)."""
        if self._server is None:
            raise RuntimeError("the archive AE is not started")
        return int(self._server.server_address[1])

    def stop(self, grace: float = 0.0) -> None:
        """Stop listening, let running associations finish for up to ``grace`` seconds,
        then abort what is left."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.shutdown()
        self._drain(grace)
        self.stgcmt.join(timeout=self.settings.dimse_timeout)
        self.ae.shutdown()
        self.committer.stop()
        self.hashing.stop()

    def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        running = self._acceptors()
        if running and grace > 0:
            LOG.info("waiting up to %.0f s for %d association(s) to finish", grace, len(running))
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = self._acceptors()
        if running:
            LOG.warning("aborting %d association(s) still running: %s", len(running),
                        ", ".join(sorted(describe_peer(a) for a in running)))  # fmt: skip

    def _acceptors(self) -> list[Any]:
        """Associations peers hold with us now. A released association's thread lingers
        in active_associations for up to the ACSE timeout; it no longer counts."""
        return [a for a in self.ae.active_associations if a.is_acceptor and a.is_established]

    def statistics(self) -> dict[str, Any]:
        """Live view for operators: associations now, counters since start."""
        active = self._acceptors()
        return {
            "ae_title": self.settings.ae_title,
            "port": self.port if self._server is not None else None,
            "associations": len(active),
            "max_associations": self.settings.max_associations,
            "peers": sorted(describe_peer(a) for a in active),
            "counters": self.stats.snapshot(),
            "group_commit": self.committer.statistics(),
            "store_timings": self.timings.snapshot(),
        }

    def _handle_echo(self, event: Event) -> int:
        self.stats.count("echo")
        summary_of(event.assoc).add("echo")
        return 0x0000

    def _log_abort(self, event: Event) -> None:
        LOG.warning("association with %s aborted", describe_peer(event.assoc))
        self.stats.count("associations_aborted")
