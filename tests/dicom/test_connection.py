"""The per-connection fixes of archived.dicom.connection, on real associations."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage

from archived.dicom.connection import CONNECTION_HANDLERS, SenderKeepsResponses
from tests.dicom.data import ct_study
from tests.dicom.peers import StoreSCP


def test_polling_get_leaves_responses_for_the_blocked_sender() -> None:
    messages = SenderKeepsResponses()
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 1
    response.Status = 0
    request = C_STORE()
    request.MessageID = 2
    messages.put((1, response))
    messages.put((1, request))
    try:
        messages.get(block=False)
        raise AssertionError("a polling get took a response")
    except queue.Empty:
        pass
    assert messages.get(block=True, timeout=1) == (1, response)
    assert messages.get(block=False) == (1, request)


def test_an_abort_marker_is_left_for_the_blocked_sender() -> None:
    messages = SenderKeepsResponses()
    messages.put((None, None))
    try:
        messages.get(block=False)
        raise AssertionError("a polling get took the abort marker")
    except queue.Empty:
        pass
    assert messages.get(block=True, timeout=1) == (None, None)


def test_store_responses_reach_the_sender_while_the_queue_is_polled(tmp_path: Path) -> None:
    """What pynetdicom's reactor does in its race window, done without pause: poll the
    DIMSE queue while send_c_store waits on it. Every store must still get its response."""
    files = ct_study(tmp_path / "study", 40, rows=32, columns=32)
    dest = StoreSCP(tmp_path / "received")
    try:
        ae = AE(ae_title="ARCHIVED")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", dest.port, ae_title=dest.ae_title,
                             evt_handlers=CONNECTION_HANDLERS)  # fmt: skip
        assert assoc.is_established
        stolen: list[object] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                _, message = assoc.dimse.get_msg(block=False)
                if message is not None:
                    stolen.append(message)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            statuses = [assoc.send_c_store(dcmread(path)).Status for path in files]
        finally:
            done.set()
            poller.join()
            assoc.release()
        ae.shutdown()
    finally:
        dest.stop()
    assert stolen == []
    assert statuses == [0] * len(files)
