"""The File Meta the archive puts in front of a received data set's bytes.

The data set itself is kept exactly as received (archived.dicom.incoming); the structure
check runs on it while it arrives (archived.dicom.walker).
"""

from __future__ import annotations

import io

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

IMPLEMENTATION_VERSION_NAME = "ARCHIVED_1"


def file_meta_bytes(sop_class: str, sop_instance: str, tsuid: str, source_aet: str) -> bytes:
    """Preamble, 'DICM' and the archive's File Meta Information for a stored instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(tsuid)
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if source_aet:
        meta.SourceApplicationEntityTitle = source_aet
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()
