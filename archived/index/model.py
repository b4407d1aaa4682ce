"""Records the index hands out: file systems, files, status codes, stored-instance attributes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# One definition of dcm4chee's file status codes, shared with the configuration.
from archived.conf.fields import FileStatus as FileStatus

ONLINE_STORAGE = "ONLINE_STORAGE"
NEARLINE_STORAGE = "NEARLINE_STORAGE"
TAR_PREFIX = "tar:"


@dataclass(frozen=True)
class FileSystemSpec:
    """A file system as the configuration describes it; the index mirrors these by uuid."""

    uuid: str
    group: str
    path: str  # 'tar:<mount>' for file systems holding tar archives
    status: str = "RW"  # 'RW' or 'RO'


@dataclass(frozen=True)
class FileSystemRecord:
    pk: int
    uuid: str
    group: str
    path: str
    status: str

    @property
    def is_tar(self) -> bool:
        return self.path.startswith(TAR_PREFIX)

    @property
    def root(self) -> Path:
        """The directory files are relative to (the mount point for tar file systems)."""
        return Path(self.path.removeprefix(TAR_PREFIX))


@dataclass(frozen=True)
class FileRecord:
    """One stored copy of an instance, with what is needed to open and verify it."""

    pk: int
    sop_iuid: str
    sop_cuid: str
    series_iuid: str
    study_iuid: str
    filesystem: FileSystemRecord
    filepath: str  # 'tarpath!member' on tar file systems
    tsuid: str
    md5: str
    size: int
    status: FileStatus
    md5_check_time: float | None
    created_time: float

    @property
    def absolute_path(self) -> Path:
        """Where to open the copy: on tar file systems hsmfs resolves 'x.tar!member'."""
        return self.filesystem.root / self.filepath


@dataclass
class InstanceAttributes:
    """The attributes of one instance that the index keeps, level by level."""

    sop_iuid: str
    sop_cuid: str
    series_iuid: str
    study_iuid: str
    pat_id: str = ""
    pat_id_issuer: str = ""
    pat_name: str = ""
    pat_birthdate: str = ""
    pat_sex: str = ""
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_no: str = ""
    ref_physician: str = ""
    study_desc: str = ""
    series_no: str = ""
    modality: str = ""
    series_desc: str = ""
    body_part: str = ""
    series_date: str = ""
    series_time: str = ""
    institution: str = ""
    station_name: str = ""
    inst_no: str = ""
    content_date: str = ""
    content_time: str = ""


@dataclass(frozen=True)
class NewFile:
    """A file just made durable, to be indexed with its instance."""

    filesystem_pk: int
    filepath: str
    tsuid: str
    md5: str
    size: int
    status: FileStatus = FileStatus.DEFAULT


@dataclass(frozen=True)
class NewInstance:
    """One instance of a group commit: its attributes, its file and how to store it."""

    attrs: InstanceAttributes
    new_file: NewFile
    src_aet: str = ""
    replace: bool = False


@dataclass(frozen=True)
class StoreOutcome:
    """What indexing a received instance did.

    ``ignored``: the SOP Instance UID was already indexed and the policy is 'ignore'; the
    new file was not indexed and should be removed. ``replaced_files``: copies that the
    new file superseded (policy 'replace'); their rows are gone, ONLINE ones should be
    unlinked.
    """

    instance_pk: int
    file_pk: int | None
    ignored: bool
    replaced_files: tuple[FileRecord, ...] = ()
