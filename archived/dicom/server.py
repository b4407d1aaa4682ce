"""The archive AE: pynetdicom wiring of access control and the service handlers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from archived.dicom.access import AccessControl
from archived.dicom.connection import CONNECTION_HANDLERS
from archived.dicom.contexts import add_supported_contexts
from archived.dicom.errors import ListenError
from archived.dicom.find import FindSCP
from archived.dicom.find_negotiation import handle_sop_extended
from archived.dicom.peer import describe_peer
from archived.dicom.retrieve import Retriever
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics
from archived.dicom.stgcmt import StorageCommitmentSCP
from archived.dicom.store import StoreSCP
from archived.index import Index

LOG = logging.getLogger("archived.dicom")


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom settings the archive relies on."""
    # Received datasets stream to a temporary file, kept byte for byte (store.py).
    _config.STORE_RECV_CHUNKED_DATASET = True
    # Identifiers are logged by our handlers at the level an operator wants.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


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
        add_supported_contexts(self.ae)
        self.access = AccessControl(settings, self.stats)
        self.store = StoreSCP(settings, index, self.stats)
        self.find = FindSCP(settings, index, self.stats)
        self.retriever = Retriever(settings, index, self.stats)
        self.stgcmt = StorageCommitmentSCP(settings, index, self.stats, self.ae)
        self._server: ThreadedAssociationServer | None = None
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

    def handlers(self) -> list[tuple[Any, Any]]:
        return [
            *CONNECTION_HANDLERS,
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
        try:
            self._server = self.ae.start_server(
                address, block=False, evt_handlers=[*self.handlers(), *extra_handlers]
            )
        except OSError as exc:
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
        }

    def _handle_echo(self, event: Event) -> int:
        self.stats.count("echo")
        return 0x0000

    def _log_abort(self, event: Event) -> None:
        LOG.warning("association with %s aborted", describe_peer(event.assoc))
        self.stats.count("associations_aborted")
