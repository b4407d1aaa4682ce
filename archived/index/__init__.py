"""archived's DICOM index (SQLite, WAL): patients, studies, series, instances, files.

Public API (everything else is internal):
    Index(path)                       open or create (and upgrade) an index file
    FileStatus, FileRecord, FileSystemRecord, FileSystemSpec, InstanceAttributes, NewFile,
    NewInstance,
    StoreOutcome                      the records it hands out and takes
    attributes_of(dataset)            the indexed attributes of a pydicom Dataset
    ONLINE_STORAGE, NEARLINE_STORAGE  file system group names
    ArchiveIndexError and subclasses  its errors
"""

from archived.index.attributes import MissingAttributeError, attributes_of
from archived.index.database import Index
from archived.index.errors import (
    ArchiveIndexError,
    SchemaVersionError,
    UnknownFileSystemError,
    UnknownObjectError,
)
from archived.index.migrations import SCHEMA_VERSION
from archived.index.model import (
    NEARLINE_STORAGE,
    ONLINE_STORAGE,
    TAR_PREFIX,
    FileRecord,
    FileStatus,
    FileSystemRecord,
    FileSystemSpec,
    InstanceAttributes,
    NewFile,
    NewInstance,
    StoreOutcome,
)

__all__ = [
    "NEARLINE_STORAGE",
    "ONLINE_STORAGE",
    "SCHEMA_VERSION",
    "TAR_PREFIX",
    "ArchiveIndexError",
    "FileRecord",
    "FileStatus",
    "FileSystemRecord",
    "FileSystemSpec",
    "Index",
    "InstanceAttributes",
    "MissingAttributeError",
    "NewFile",
    "NewInstance",
    "SchemaVersionError",
    "StoreOutcome",
    "UnknownFileSystemError",
    "UnknownObjectError",
    "attributes_of",
]
