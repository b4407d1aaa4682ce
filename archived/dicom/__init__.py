"""archived's DICOM network face: echo, store, find, move, get, storage commitment.

Public API:
    ArchiveServer(settings, index)   .start(), .port, .statistics(), .stop()
    DicomSettings, RemoteAE          what the server needs from the configuration
    settings_from_config(...)        builds DicomSettings from the configuration store
    DicomServiceError and subclasses
"""

from archived.dicom.errors import (
    DicomServiceError,
    ListenError,
    MalformedDatasetError,
    NoStorageError,
)
from archived.dicom.server import ArchiveServer
from archived.dicom.settings import DicomSettings, RemoteAE

__all__ = [
    "ArchiveServer",
    "DicomServiceError",
    "DicomSettings",
    "ListenError",
    "MalformedDatasetError",
    "NoStorageError",
    "RemoteAE",
]
