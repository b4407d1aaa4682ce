"""archived.dicom.reactor replaces pynetdicom internals: fail loudly when they change.

Each entry is the SHA-256 (first 16 hex digits) of the pinned pynetdicom's source of a
method the reactor replaces or relies on. A new pynetdicom release that changes one of
them must be read against archived/dicom/reactor.py before PYNETDICOM_VERSIONS and the
pin in pyproject.toml are widened.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable

import pynetdicom
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler

from archived.dicom.reactor import PYNETDICOM_VERSIONS

PINNED_SOURCES: dict[Callable[..., object], str] = {
    DULServiceProvider.run_reactor: "e3a10eb3a0931e48",
    DULServiceProvider._read_pdu_data: "19f2d4e38c13c835",
    DULServiceProvider.send_pdu: "7cbce5da8594124e",
    DULServiceProvider.kill_dul: "5ceccf8dd01c2072",
    DULServiceProvider._is_transport_event: "8725ed03bb8fbdef",
    DULServiceProvider._process_recv_primitive: "4c0ebbb3e646e35e",
    Association._run_reactor: "f28838c5559e462a",
    Association.run_reactor: "ed8bbbe3b3d6ddae",
    Association.kill: "8f9713666a7f4cff",
    DIMSEServiceProvider.receive_primitive: "5f99c86b14a15cef",
    RequestHandler._create_association: "05c8d12b79863cdb",
    RequestHandler.handle: "034823fb4df3a874",
}


def test_installed_pynetdicom_is_a_pinned_release() -> None:
    assert pynetdicom.__version__ in PYNETDICOM_VERSIONS, (
        f"pynetdicom {pynetdicom.__version__} is not one archived.dicom.reactor was written for"
    )


def test_replaced_pynetdicom_methods_are_unchanged() -> None:
    changed = [
        method.__qualname__
        for method, digest in PINNED_SOURCES.items()
        if hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16] != digest
    ]
    assert not changed, (
        f"pynetdicom changed {', '.join(changed)}: archived.dicom.reactor replaces or relies "
        "on them; read the new code against the reactor before updating the digests"
    )


def test_private_attributes_the_reactor_uses_exist() -> None:
    assoc = Association(pynetdicom.AE(), "acceptor")
    for name in ("_dul_ready", "_reactor_checkpoint", "_is_paused", "_kill", "_serve_request",
                 "_server", "_accepted_cx"):  # fmt: skip
        assert hasattr(assoc, name), f"Association.{name}"
    dul = assoc.dul
    for name in ("event_queue", "to_provider_queue", "_recv_pdu", "state_machine",
                 "artim_timer", "_idle_timer", "_kill_thread", "socket"):  # fmt: skip
        assert hasattr(dul, name), f"DULServiceProvider.{name}"
    assert hasattr(assoc.dimse, "message") and hasattr(assoc.dimse, "msg_queue")
    message = DIMSEMessage()
    assert hasattr(message, "context_id") and hasattr(message, "command_set")
    assert "client_socket" in inspect.signature(AssociationSocket.__init__).parameters
    assert hasattr(dul.artim_timer, "_start_time") and hasattr(dul.artim_timer, "remaining")
