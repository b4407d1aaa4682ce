"""Event-driven networking for the associations the archive accepts (pynetdicom 3.0.x).

pynetdicom's receive path polls. Its DUL thread loops with a 1 ms sleep whenever the
socket has nothing to read, reads every PDU in 4 KiB ``recv`` calls, and its association
thread loops with another 1 ms sleep waiting for DIMSE messages: over one association
that is 2-3 ms of sleeping per instance, more than DCMTK's storescp spends receiving it.
The classes below keep pynetdicom's state machine, ACSE negotiation, DIMSE encoding and
service classes, and replace only the waits and the C-STORE data set path, for acceptor
associations (the archive's C-MOVE/C-GET sub-associations and storage-commitment
associations are requestors and stay stock pynetdicom).

Replaced pynetdicom internals (each is checked by tests/dicom/test_reactor_internals.py,
which fails loudly when a pinned source changes; ``PYNETDICOM_VERSIONS`` names the
releases this was written for, and pyproject.toml pins them):

- ``pynetdicom.transport.RequestHandler._create_association``: ``AcceptorHandler.handle``
  builds an ``EventDrivenAssociation`` instead of a stock ``Association``; it also closes
  connections beyond the accept limit at once (a flood of sockets cannot pile up threads).
- ``pynetdicom.dul.DULServiceProvider.run_reactor``: waits in ``select`` on the socket and
  an eventfd instead of sleeping 1 ms per idle turn.
- ``pynetdicom.dul.DULServiceProvider.send_pdu`` and ``kill_dul``: also wake the DUL.
- ``pynetdicom.dul.DULServiceProvider._read_pdu_data``: reads a whole PDU with
  ``recv_into`` (not 4 KiB pieces); in state Sta6 a P-DATA-TF goes straight to DIMSE
  as memoryviews, which is what the state machine's DT-2 action does with it.
- ``pynetdicom.association.Association._run_reactor``: waits on a ``threading.Event``
  the DUL sets after every state-machine action, instead of sleeping 1 ms per turn; the
  pause handshake (``_reactor_checkpoint``/``_is_paused``) that ``send_*`` methods use is
  kept, and the reactor counts as paused while it waits.
- ``pynetdicom.dimse.DIMSEServiceProvider.receive_primitive``: the data set fragments of
  a C-STORE-RQ go to a sink (``IncomingSink``) as they arrive instead of to a
  ``NamedTemporaryFile`` in ``$TMPDIR`` (``_config.STORE_RECV_CHUNKED_DATASET``) or to
  memory; every other message is decoded by pynetdicom as before.

Private attributes used, beyond those methods: ``DULServiceProvider.event_queue,
to_provider_queue, _recv_pdu, state_machine, artim_timer, _idle_timer, _kill_thread,
socket``; ``AssociationSocket.socket, event_queue``; ``Association._dul_ready,
_reactor_checkpoint, _is_paused, _kill, _serve_request, _server``;
``DIMSEServiceProvider.message, msg_queue``; ``DIMSEMessage.context_id, command_set``.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import struct
import threading
from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pynetdicom
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler
from pynetdicom.utils import make_target

if TYPE_CHECKING:
    from pynetdicom.transport import AssociationServer

LOG = logging.getLogger("archived.dicom.reactor")

PYNETDICOM_VERSIONS = ("3.0.4",)
# Longest sleep without an event: only a missed wake-up (a bug) or a timer can need it.
MAX_WAIT = 0.5
PDU_HEADER = struct.Struct(">BBL")
PDV_HEADER = struct.Struct(">LB")
P_DATA_TF = 0x04
KNOWN_PDU_TYPES = frozenset(range(1, 8))
MAX_PDU_LENGTH = 1 << 27  # a peer announcing more is not a DICOM peer (128 MiB)


class IncomingSink(Protocol):
    """Where the data set of one C-STORE-RQ goes while it arrives (DUL thread)."""

    def write(self, fragment: memoryview) -> None: ...
    def finish(self) -> None: ...
    def discard(self) -> None: ...


SinkFactory = Callable[[Association, int, Dataset], IncomingSink]


def check_pynetdicom_version() -> None:
    if pynetdicom.__version__ not in PYNETDICOM_VERSIONS:
        raise RuntimeError(
            f"archived.dicom.reactor was written for pynetdicom {', '.join(PYNETDICOM_VERSIONS)}, "
            f"not {pynetdicom.__version__}: check its replaced internals (module docstring) "
            "and tests/dicom/test_reactor_internals.py before widening the pin"
        )


class _Wakeup:
    """An eventfd the DUL thread selects on together with its socket."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # set() from other threads and close() must not interleave: a closed number may
        # already belong to another file.
        self._lock = threading.Lock()

    def set(self) -> None:
        with self._lock:
            if self.fd >= 0:  # else the DUL has stopped and nobody waits
                os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, ValueError):
            pass

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class EventDrivenDUL(DULServiceProvider):
    """DUL thread that sleeps in select() until the socket, the user or a timer needs it."""

    def __init__(self, assoc: EventDrivenAssociation) -> None:
        super().__init__(assoc)
        self._wakeup = _Wakeup()
        self._reactor_work = assoc.work
        self._pdu_buffer = bytearray()

    # -- waking -------------------------------------------------------------------------

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wakeup.set()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wakeup.set()

    def _wait(self) -> None:
        """Sleep until the socket is readable, a primitive is queued, or a timer is due."""
        timeout = MAX_WAIT
        if self.artim_timer._start_time is not None and self.artim_timer.timeout is not None:
            timeout = min(timeout, max(self.artim_timer.remaining, 0.0))
        raw = getattr(self.socket, "socket", None)
        readers: list[Any] = [self._wakeup.fd]
        if raw is not None and raw.fileno() >= 0:
            readers.append(raw)
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except (OSError, ValueError):  # the socket was closed under us
            return
        if self._wakeup.fd in ready:
            self._wakeup.drain()

    # -- the loop -----------------------------------------------------------------------

    def run_reactor(self) -> None:
        self._idle_timer.start()
        try:
            self._loop()
        finally:
            self._wakeup.close()
            self._reactor_work.set()

    def _loop(self) -> None:
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:  # as pynetdicom: abort without the state machine
                LOG.error("DUL of %s failed, aborting the association: %s", self.assoc, exc)
                LOG.debug("DUL failure", exc_info=True)
                self._hard_abort()
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                self._wait()
                continue
            self.state_machine.do_action(event)
            self._reactor_work.set()

    def _hard_abort(self) -> None:
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        try:
            self.socket.send(abort_pdu.encode())  # type: ignore[union-attr]
        except Exception:  # the peer may be gone already
            pass
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True

    # -- reading PDUs -------------------------------------------------------------------

    def _recv_exactly(self, raw: socket.socket, view: memoryview) -> bool:
        got = 0
        while got < len(view):
            n = raw.recv_into(view[got:])
            if n == 0:
                return False
            got += n
        return True

    def _read_pdu_data(self) -> None:
        transport = self.socket
        raw = getattr(transport, "socket", None)
        if raw is None:
            self.event_queue.put("Evt17")
            return
        header = bytearray(6)
        try:
            complete = self._recv_exactly(raw, memoryview(header))
        except (OSError, TimeoutError):
            complete = False
        if not complete:
            self.event_queue.put("Evt17")
            return
        pdu_type, _, length = PDU_HEADER.unpack(header)
        if pdu_type not in KNOWN_PDU_TYPES or length > MAX_PDU_LENGTH:
            LOG.error("unknown PDU type 0x%02X or length %d from %s", pdu_type, length, self.assoc)
            self.event_queue.put("Evt19")
            return
        if len(self._pdu_buffer) < length:
            self._pdu_buffer = bytearray(length)
        body = memoryview(self._pdu_buffer)[:length]
        try:
            complete = self._recv_exactly(raw, body)
        except (OSError, TimeoutError):
            complete = False
        if not complete:
            LOG.error("connection from %s closed inside a PDU", self.assoc)
            self.event_queue.put("Evt17")
            return
        dimse = self.assoc.dimse
        if (
            pdu_type == P_DATA_TF
            and self.state_machine.current_state == "Sta6"
            and isinstance(dimse, StreamingDIMSE)
        ):
            pdvs = _split_pdvs(body)
            if pdvs is None:
                self.event_queue.put("Evt19")
                return
            dimse.receive_pdvs(pdvs)
            self._reactor_work.set()  # a complete message may be queued for the reactor
            return
        # Anything else is rare: pynetdicom decodes it and drives the state machine.
        try:
            pdu, event = self._decode_pdu(bytearray(header) + body)
        except Exception as exc:
            LOG.error("undecodable PDU from %s: %s", self.assoc, exc)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)


def _split_pdvs(body: memoryview) -> list[tuple[int, memoryview]] | None:
    """The presentation data values of a P-DATA-TF body, or None when malformed."""
    pdvs = []
    pos = 0
    while pos < len(body):
        if pos + 6 > len(body):
            return None
        item_length, context_id = PDV_HEADER.unpack_from(body, pos)
        if item_length < 2 or pos + 4 + item_length > len(body):
            return None
        pdvs.append((context_id, body[pos + 5 : pos + 4 + item_length]))
        pos += 4 + item_length
    return pdvs or None


class StreamingDIMSE(DIMSEServiceProvider):
    """DIMSE provider that hands C-STORE data set fragments to a sink as they arrive.

    Completed sinks wait in ``completed`` (by Message ID) for the C-STORE handler, which
    takes its own with ``take``; the C-STORE-RQ primitive itself reaches the handler
    through pynetdicom as always, with an empty data set.
    """

    def __init__(self, assoc: Association, sink_factory: SinkFactory | None) -> None:
        super().__init__(assoc)
        self._sink_factory = sink_factory
        self._streaming: IncomingSink | None = None
        self._streaming_cx = 0
        self._lock = threading.Lock()
        self.completed: dict[int, IncomingSink] = {}

    def receive_primitive(self, primitive: P_DATA) -> None:
        pdvs = [(cx, memoryview(data)) for cx, data in primitive.presentation_data_value_list]
        self.receive_pdvs(pdvs)

    def receive_pdvs(self, pdvs: list[tuple[int, memoryview]]) -> None:
        for context_id, data in pdvs:
            if not data:
                continue
            control = data[0]
            if self._streaming is not None:
                if control & 1:  # a command before the data set ended: protocol error
                    LOG.error("command fragment inside a C-STORE data set from %s", self.assoc)
                    self.discard_incomplete()
                    self.dul.event_queue.put("Evt19")
                    return
                self._streaming.write(data[1:])
                if control & 2:
                    self._finish_streaming(context_id)
                continue
            super().receive_primitive(_p_data(context_id, bytes(data)))
            self._maybe_start_streaming()

    def _maybe_start_streaming(self) -> None:
        message = self.message
        if (
            self._sink_factory is None
            or not isinstance(message, C_STORE_RQ)
            or message.context_id is None
            or message.command_set.CommandDataSetType == 0x0101
        ):
            return
        self._streaming = self._sink_factory(self.assoc, message.context_id, message.command_set)
        self._streaming_cx = message.context_id

    def _finish_streaming(self, context_id: int) -> None:
        sink, self._streaming = self._streaming, None
        message = self.message
        assert sink is not None and message is not None
        sink.finish()
        with self._lock:
            self.completed[int(message.command_set.MessageID)] = sink
        # An empty last data set fragment lets pynetdicom complete and queue the message.
        super().receive_primitive(_p_data(context_id, b"\x02"))

    def take(self, message_id: int) -> IncomingSink | None:
        with self._lock:
            return self.completed.pop(message_id, None)

    def discard_incomplete(self) -> None:
        """Drop every sink not handed to a handler: the association has ended."""
        sink, self._streaming = self._streaming, None
        with self._lock:
            left = list(self.completed.values())
            self.completed.clear()
        for pending in ([sink] if sink is not None else []) + left:
            try:
                pending.discard()
            except Exception:
                LOG.exception("cannot discard a partly received instance of %s", self.assoc)


def _p_data(context_id: int, data: bytes) -> P_DATA:
    primitive = P_DATA()
    # The setter insists on lists (its annotation says tuples, which the setter refuses).
    primitive.presentation_data_value_list = [[context_id, data]]  # type: ignore[list-item]
    return primitive


class EventDrivenAssociation(Association):
    """Acceptor association whose reactor waits on events, with a streaming DIMSE."""

    def __init__(
        self, ae: Any, mode: str, sink_factory: SinkFactory | None,
        request_timeout: float | None,
    ) -> None:  # fmt: skip
        self.work = threading.Event()
        super().__init__(ae, mode)
        self.dul = EventDrivenDUL(self)
        self.dimse = StreamingDIMSE(self, sink_factory)
        # The setters also configure the DUL's timers: apply them to the new DUL.
        self.network_timeout = self.ae.network_timeout
        self._negotiated_acse_timeout = self.ae.acse_timeout
        # Until the A-ASSOCIATE-RQ is in, an idle or stalled socket must not hold a slot
        # for long: the wait for it (and the ARTIM timer) use the request timeout.
        self.acse_timeout = request_timeout or self.ae.acse_timeout

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            self.dimse.discard_incomplete()  # type: ignore[attr-defined]

    def request_received(self) -> None:
        """The A-ASSOCIATE-RQ is in: the configured timeouts apply from now on."""
        self.acse_timeout = self._negotiated_acse_timeout
        raw = getattr(self.dul.socket, "socket", None)
        if raw is not None:
            raw.settimeout(self.network_timeout)

    def kill(self) -> None:
        self.work.set()
        super().kill()

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            self.work.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)  # type: ignore[arg-type]
                continue
            if self._check_ended():
                return
            self._is_paused = True  # waiting, the reactor takes nothing off the queues
            self.work.wait(MAX_WAIT)

    def _check_ended(self) -> bool:
        """pynetdicom's per-turn checks: release, abort, DUL gone, network timeout."""
        if self.is_established and self.acse.is_release_requested():
            # EVT_RELEASED before the response: once the peer has it, it closes the
            # connection, and EVT_CONN_CLOSE (DUL thread) must find the release recorded.
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.acse.send_release(is_response=True)
            LOG.debug("association with %s released", self)
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            LOG.warning("network timeout on the association with %s: aborting", self)
            self.abort()
            self.kill()
            return True
        return False


class AcceptorHandler(RequestHandler):
    """Builds an EventDrivenAssociation for each accepted connection.

    ``server.archive_sink_factory``, ``server.archive_request_timeout`` and
    ``server.archive_max_connections`` come from ``make_acceptor_server``.
    """

    def handle(self) -> None:
        server: Any = self.server
        limit = server.archive_max_connections
        running = len(server.active_associations)
        if limit is not None and running >= limit:
            LOG.warning(
                "connection from %s closed at once: %d connections already open (limit %d)",
                self.client_address[0], running, limit,
            )  # fmt: skip
            self._close_request()
            return
        assoc = self._event_driven_association()
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()

    def _close_request(self) -> None:
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.request.close()

    def _event_driven_association(self) -> EventDrivenAssociation:
        """pynetdicom's RequestHandler._create_association, with our Association class."""
        from pynetdicom._globals import MODE_ACCEPTOR

        server: Any = self.server
        assoc = EventDrivenAssociation(
            self.ae, MODE_ACCEPTOR, server.archive_sink_factory, server.archive_request_timeout
        )
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        # A peer that stops inside a PDU must not block the DUL thread for ever.
        self.request.settimeout(server.archive_request_timeout or self.ae.network_timeout)
        assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = deepcopy(server.contexts)
        assoc.requestor.address_info = self.remote
        for event in server._handlers:
            if event.is_intervention and server._handlers[event]:
                assoc.bind(event, *server._handlers[event])
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in server._handlers[event]:
                    assoc.bind(event, handler, args)
        return assoc


def make_acceptor_server(
    ae: Any,
    address: tuple[str, int],
    evt_handlers: list[Any],
    sink_factory: SinkFactory | None,
    request_timeout: float | None,
    max_connections: int | None,
) -> AssociationServer:
    """A running ThreadedAssociationServer whose associations are event driven."""
    from pynetdicom.transport import ThreadedAssociationServer

    check_pynetdicom_version()
    server: Any = ae.make_server(
        address, evt_handlers=evt_handlers, server_class=ThreadedAssociationServer,
        request_handler=AcceptorHandler,
    )  # fmt: skip
    server.archive_sink_factory = sink_factory
    server.archive_request_timeout = request_timeout
    server.archive_max_connections = max_connections
    thread = threading.Thread(
        target=make_target(server.serve_forever),
        name=f"AcceptorServer@{datetime.now():%Y%m%d%H%M%S}",
        daemon=True,
    )
    thread.start()
    ae._servers.append(server)
    return server
