"""Per-connection fixes every DICOM association of the archive gets (acceptor and
requestor alike), bound as evt.EVT_CONN_OPEN handlers: ``CONNECTION_HANDLERS``.

- TCP_NODELAY: pynetdicom leaves Nagle's algorithm on, and a response split over small
  writes then waits for the peer's delayed ACK (~40 ms each).
- Responses stay with their sender. pynetdicom's reactor thread polls the DIMSE queue
  for requests while send_c_store() and friends wait on the same queue for their
  response. The pause handshake between them has a window (the reactor sets
  ``_is_paused`` before its checkpoint and clears it after) in which the reactor takes the
  response off the queue, logs "Received unexpected C-STORE service message" and the
  sender waits out the DIMSE timeout: a C-MOVE then fails every remaining sub-operation.
  The queue below never hands a response to a non-blocking get, which only the reactor
  uses, so a response always reaches the blocked sender.
"""

from __future__ import annotations

import queue
import socket
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event, EventHandlerType


def set_nodelay(event: Event) -> None:
    transport = event.assoc.dul.socket
    sock = getattr(transport, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SenderKeepsResponses(queue.Queue[tuple[int | None, Any]]):
    """A DIMSE message queue whose polling (non-blocking) get leaves responses queued.

    A response nobody waits for would stay at the head and hold back later requests; that
    happens only after a sender gave up on it, and pynetdicom aborts the association then.
    """

    def get(self, block: bool = True, timeout: float | None = None) -> tuple[int | None, Any]:
        if block:
            return super().get(block, timeout)
        with self.mutex:
            if not self.queue or _is_response(self.queue[0]):
                raise queue.Empty
            return self._get()


def _is_response(item: tuple[int | None, Any]) -> bool:
    _, message = item
    return message is None or getattr(message, "MessageIDBeingRespondedTo", None) is not None


def keep_responses_for_senders(event: Event) -> None:
    """Swap in the queue before any DIMSE message can arrive on the new connection."""
    dimse = event.assoc.dimse
    replacement = SenderKeepsResponses()
    while True:
        try:
            replacement.put(dimse.msg_queue.get_nowait())
        except queue.Empty:
            break
    dimse.msg_queue = replacement  # type: ignore[assignment]  # same items, other get


def prepare_connection(event: Event) -> None:
    set_nodelay(event)
    keep_responses_for_senders(event)


CONNECTION_HANDLERS: list[EventHandlerType] = [(evt.EVT_CONN_OPEN, prepare_connection)]
