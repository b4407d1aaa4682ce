"""The DICOM settings the archive's network face needs, independent of how they are stored.

archived.dicom.config builds these from the configuration store; tests build them
directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DuplicatePolicy = Literal["ignore", "replace"]


@dataclass(frozen=True)
class RemoteAE:
    """A peer the archive knows: where it listens and what it may ask of the archive."""

    ae_title: str
    host: str = ""
    port: int | None = None  # None: not listening (cannot be a move destination)
    store: bool = True
    query: bool = True
    retrieve: bool = True
    allowed_hosts: tuple[str, ...] = ()  # empty: any host

    def allows_host(self, host: str) -> bool:
        return not self.allowed_hosts or host in self.allowed_hosts


@dataclass(frozen=True)
class DicomSettings:
    ae_title: str = "ARCHIVED"
    bind_address: str = ""  # all interfaces
    port: int = 11112  # 0: any free port (tests)
    max_pdu: int = 16382
    max_associations: int = 20
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    duplicate_policy: DuplicatePolicy = "ignore"
    accept_unknown_calling_aets: bool = False
    remote_aes: tuple[RemoteAE, ...] = field(default_factory=tuple)
    # A retrieve waiting this long for a copy (hsmfs staging from S3) sends a pending response
    # (PendingResponseInterval in the configuration).
    pending_interval: float = 5.0
    # Storage commitment: answer with N-EVENT-REPORT on the requesting association (True)
    # or on a new association to the requester's configured host and port (False);
    # StgCmtOnSameAssociation in the configuration.
    stgcmt_same_association: bool = False
    # C-FIND: person names (PatientName, ReferringPhysicianName) match regardless of letter
    # case (False: case-sensitive); CaseInsensitivePersonNameMatching in the configuration.
    case_insensitive_names: bool = True
    # Seconds a new connection has to send its A-ASSOCIATE-RQ (AssociationRequestTimeout).
    request_timeout: float = 5.0
    # Deflate data sets inflating beyond this are refused with 0xA700 (MaxInflatedSize).
    max_inflated_size: int = 256 << 20
    # Success once written and indexed, durable in the next group (StoreEarlySuccess).
    early_success: bool = False
    # Received instances waiting for their group commit at most (StoreQueueSize).
    store_queue_size: int = 256

    def remote(self, ae_title: str) -> RemoteAE | None:
        title = ae_title.strip()
        return next((ae for ae in self.remote_aes if ae.ae_title == title), None)
