"""Who is on the other end of an association: its description for logs, its permissions."""

from __future__ import annotations

from pynetdicom.association import Association

from archived.dicom.settings import DicomSettings, RemoteAE


def describe_peer(assoc: Association) -> str:
    """'AET@host:port' of the peer, for log lines."""
    if not assoc.is_acceptor:
        info = assoc.acceptor
        return f"{str(info.ae_title or '').strip()}@{info.address}:{info.port}"
    info = assoc.requestor
    return f"{calling_ae_title(assoc)}@{info.address}:{info.port}"


def calling_ae_title(assoc: Association) -> str:
    """The requestor's AE title (also before pynetdicom copies it from the A-ASSOCIATE-RQ)."""
    info = assoc.requestor
    title = str(info.ae_title or "").strip()
    if not title and info.primitive is not None:
        title = str(info.primitive.calling_ae_title or "").strip()
    return title


def peer_permissions(settings: DicomSettings, assoc: Association) -> RemoteAE | None:
    """The configured AE of the requestor; None when unknown AEs are accepted and it is one."""
    return settings.remote(calling_ae_title(assoc))
