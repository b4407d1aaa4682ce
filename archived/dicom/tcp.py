"""TCP_NODELAY on every DICOM connection: pynetdicom leaves Nagle's algorithm on, and a
response split over small writes then waits for the peer's delayed ACK (~40 ms each)."""

from __future__ import annotations

import socket

from pynetdicom import evt
from pynetdicom.events import Event


def set_nodelay(event: Event) -> None:
    """evt.EVT_CONN_OPEN handler, for acceptor and requestor associations alike."""
    transport = event.assoc.dul.socket
    sock = getattr(transport, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


NODELAY_HANDLERS = [(evt.EVT_CONN_OPEN, set_nodelay)]
