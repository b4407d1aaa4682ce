"""C-STORE SCP: keep the received bytes, durably, on ONLINE storage; index; then Success."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom.events import Event

from archived.dicom.encoding import check_structure, dataset_offset, file_meta_bytes
from archived.dicom.errors import MalformedDatasetError, NoStorageError
from archived.dicom.peer import describe_peer, peer_permissions
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics
from archived.index import (
    ONLINE_STORAGE,
    FileSystemRecord,
    Index,
    MissingAttributeError,
    NewFile,
    attributes_of,
)
from archived.storage import StorageError, instance_dir, read_chunks, remove_file, write_instance

LOG = logging.getLogger("archived.dicom.store")

SUCCESS = 0x0000
NOT_AUTHORISED = 0x0124
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210


class StoreSCP:
    """Handler for evt.EVT_C_STORE (with STORE_RECV_CHUNKED_DATASET on)."""

    def __init__(self, settings: DicomSettings, index: Index, stats: ServiceStatistics) -> None:
        self.settings = settings
        self.index = index
        self.stats = stats

    def online_filesystem(self, size: int) -> FileSystemRecord:
        """The first writable ONLINE file system with room for ``size`` bytes."""
        for fs in self.index.filesystems(ONLINE_STORAGE):
            if fs.status != "RW" or fs.is_tar:
                continue
            try:
                if shutil.disk_usage(fs.root).free > size:
                    return fs
            except OSError as exc:
                LOG.warning("ONLINE file system %s (%s) is not usable: %s", fs.uuid, fs.path, exc)
        raise NoStorageError(
            f"no writable ONLINE_STORAGE file system with {size} bytes free; "
            "add one with `archivectl fs add --group ONLINE_STORAGE PATH`"
        )

    def handle(self, event: Event) -> int:
        peer = describe_peer(event.assoc)
        request = event.request
        sop_iuid = str(request.AffectedSOPInstanceUID)
        permissions = peer_permissions(self.settings, event.assoc)
        if permissions is not None and not permissions.store:
            LOG.warning("C-STORE of %s from %s refused: not allowed to store", sop_iuid, peer)
            self.stats.count("store_refused")
            return NOT_AUTHORISED
        try:
            status = self._store(event, sop_iuid, str(event.assoc.requestor.ae_title))
        except MalformedDatasetError as exc:
            LOG.warning("C-STORE of %s from %s failed: %s", sop_iuid, peer, exc)
            status = CANNOT_UNDERSTAND
        except NoStorageError as exc:
            LOG.error("C-STORE of %s from %s failed: %s", sop_iuid, peer, exc)
            status = OUT_OF_RESOURCES
        except (StorageError, OSError) as exc:
            LOG.error("C-STORE of %s from %s failed: %s", sop_iuid, peer, exc)
            status = OUT_OF_RESOURCES
        except Exception:  # a handler must answer with a status, never raise
            LOG.exception("C-STORE of %s from %s failed unexpectedly", sop_iuid, peer)
            status = OUT_OF_RESOURCES
        self.stats.count("stored" if status == SUCCESS else "store_failed")
        return status

    def _store(self, event: Event, sop_iuid: str, calling_aet: str) -> int:
        replace = self.settings.duplicate_policy == "replace"
        if not replace and self.index.instance_exists(sop_iuid):
            LOG.info("duplicate %s from %s ignored", sop_iuid, describe_peer(event.assoc))
            self.stats.count("duplicates_ignored")
            return SUCCESS
        source: Path = event.dataset_path
        tsuid = str(event.context.transfer_syntax)
        sop_cuid = str(event.request.AffectedSOPClassUID)
        with open(source, "rb") as stream:
            offset = dataset_offset(stream)
            check_structure(stream, offset, tsuid)
            stream.seek(0)
            try:
                ds = dcmread(stream, stop_before_pixels=True)
                attrs = attributes_of(ds)
            except MissingAttributeError as exc:
                raise MalformedDatasetError(str(exc)) from exc
            except (InvalidDicomError, ValueError, KeyError, TypeError) as exc:
                raise MalformedDatasetError(f"data set cannot be decoded: {exc}") from exc
            if attrs.sop_iuid != sop_iuid or attrs.sop_cuid != sop_cuid:
                LOG.warning(
                    "C-STORE from %s: data set is %s of class %s, the request says %s of %s",
                    describe_peer(event.assoc), attrs.sop_iuid, attrs.sop_cuid, sop_iuid,
                    sop_cuid,
                )  # fmt: skip
                return DATASET_MISMATCH
            meta = file_meta_bytes(sop_cuid, sop_iuid, tsuid, calling_aet)
            size = len(meta) + os.fstat(stream.fileno()).st_size - offset
            fs = self.online_filesystem(size)

            def chunks() -> Iterator[bytes]:
                yield meta
                yield from read_chunks(stream, offset)

            stored = write_instance(
                fs.root,
                instance_dir(attrs.study_iuid, attrs.series_iuid, time.time()),
                sop_iuid,
                chunks(),
            )
        new_file = NewFile(fs.pk, stored.filepath, tsuid, stored.md5, stored.size)
        try:
            outcome = self.index.store_instance(
                attrs, new_file, src_aet=calling_aet, replace=replace
            )
        except BaseException:
            remove_file(fs.root, stored.filepath, _log_unlink_failure)
            raise
        if outcome.ignored:  # a concurrent association stored it first
            remove_file(fs.root, stored.filepath, _log_unlink_failure)
            self.stats.count("duplicates_ignored")
        for old in outcome.replaced_files:
            if not old.filesystem.is_tar:
                remove_file(old.filesystem.root, old.filepath, _log_unlink_failure)
            self.stats.count("duplicates_replaced")
        return SUCCESS


def _log_unlink_failure(exc: OSError) -> None:
    LOG.error("cannot remove superseded file %s: %s", exc.filename, exc)
