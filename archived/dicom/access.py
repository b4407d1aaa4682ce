"""Association acceptance: only configured AEs, from their allowed hosts, for what they may do.

Bound to evt.EVT_REQUESTED, before pynetdicom negotiates: an unknown calling AE title or a
host the AE is not allowed from gets A-ASSOCIATE-RJ (calling AE title not recognised);
otherwise the presentation contexts offered to this association are cut down to the
services the AE is permitted (store, query, retrieve), so a forbidden request is not
even negotiable.
"""

from __future__ import annotations

import logging

from pynetdicom import evt
from pynetdicom.events import Event

from archived.dicom.contexts import permitted, prefer_requestor_order
from archived.dicom.peer import calling_ae_title, describe_peer
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics

LOG = logging.getLogger("archived.dicom.access")

REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
CALLING_AE_NOT_RECOGNISED = 0x03


class AccessControl:
    def __init__(self, settings: DicomSettings, stats: ServiceStatistics) -> None:
        self.settings = settings
        self.stats = stats

    def handle_requested(self, event: Event) -> None:
        assoc = event.assoc
        request_received = getattr(assoc, "request_received", None)
        if request_received is not None:  # archived.dicom.reactor: normal timeouts from now
            request_received()
        calling = calling_ae_title(assoc)
        host = assoc.requestor.address
        remote = self.settings.remote(calling)
        if remote is None:
            if self.settings.accept_unknown_calling_aets:
                self._prefer_requestor_order(event)
                return
            reason = "calling AE title is not configured (add it with `archivectl ae add`)"
        elif not remote.allows_host(host):
            reason = f"host {host} is not among the AE's allowed hosts"
        else:
            roles = assoc.requestor.role_selection
            assoc.acceptor.supported_contexts = [
                cx
                for cx in assoc.acceptor.supported_contexts
                if cx.abstract_syntax is not None  # a supported context always has one
                and permitted(
                    cx.abstract_syntax,
                    remote.store,
                    remote.query,
                    remote.retrieve,
                    requestor_scp=bool(getattr(roles.get(cx.abstract_syntax), "scp_role", False)),
                )
            ]
            self._prefer_requestor_order(event)
            return
        LOG.warning("association from %s rejected: %s", describe_peer(assoc), reason)
        self.stats.count("associations_rejected")
        assoc.acse.send_reject(REJECTED_PERMANENT, SOURCE_SERVICE_USER, CALLING_AE_NOT_RECOGNISED)
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    @staticmethod
    def _prefer_requestor_order(event: Event) -> None:
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        assert primitive is not None  # an acceptor has the A-ASSOCIATE request by now
        requested = primitive.presentation_context_definition_list
        prefer_requestor_order(assoc.acceptor.supported_contexts, requested)
