"""C-FIND extended negotiation: which query options the archive accepts, per association.

A requestor may send a SOP Class Extended Negotiation item for a Query/Retrieve FIND SOP
class (PS3.4 C.5.1.1.1): byte 1 relational queries, byte 2 combined date-time matching,
byte 3 fuzzy semantic matching of person names, byte 4 timezone query adjustment. The
archive answers each such item (C.5.2.1.1) with as many bytes as it was sent, up to the
four it knows, and supports combined date-time matching only; the other bytes say 0.
"""

from __future__ import annotations

import logging

from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.events import Event

from archived.dicom.contexts import FIND
from archived.dicom.peer import describe_peer

LOG = logging.getLogger("archived.dicom.find")

COMBINED_DATETIME = 1  # byte 2 of the Service Class Application Information, 0-based
KNOWN_BYTES = 4
SUPPORTED = {COMBINED_DATETIME}


def handle_sop_extended(event: Event) -> dict[UID, bytes]:
    """EVT_SOP_EXTENDED: answer the C-FIND items of SOP classes this association may use."""
    offered = {str(cx.abstract_syntax) for cx in event.assoc.acceptor.supported_contexts}
    answers: dict[UID, bytes] = {}
    items = event.app_info.items()  # type: ignore[attr-defined]  # EVT_SOP_EXTENDED's data
    for sop_class, info in items:
        if sop_class not in FIND or sop_class not in offered or not info:
            continue  # other services, or C-FIND refused to this peer by access control
        answers[sop_class] = bytes(
            1 if n in SUPPORTED and info[n] == 1 else 0 for n in range(min(len(info), KNOWN_BYTES))
        )
    if answers:
        LOG.debug("C-FIND extended negotiation with %s: %s", describe_peer(event.assoc),
                  {str(uid): info.hex() for uid, info in answers.items()})  # fmt: skip
    return answers


def combined_datetime(assoc: Association, sop_class: str) -> bool:
    """Whether combined date-time matching was negotiated for ``sop_class`` on ``assoc``."""
    info = assoc.acceptor.sop_class_extended.get(UID(sop_class), b"")
    return len(info) > COMBINED_DATETIME and info[COMBINED_DATETIME] == 1
