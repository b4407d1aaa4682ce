"""Typed configuration: Device, Connection, ApplicationEntity, TransferCapability and the
archive device extension, as pydantic v2 models that convert to and from JSON nodes.

JSON names follow dcm4chee-conf for the DICOM part (dicomDeviceName, dicomNetworkAE, ...)
and dcm4chee 2.x attribute names for the archive extension (DeleteStudyIfNotAccessedFor, ...).
Remote AEs live in devices of their own (one device per peer, named after its AE title by
`archivectl ae add`), as in dcm4che's LDAP layout.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic.alias_generators import to_pascal

from archived.conf.errors import ReadOnlyConfigError
from archived.conf.fields import (
    AETitle,
    Duration,
    FileStatus,
    FileStatusField,
    OptionalDuration,
    Ref,
    SecretValue,
    SpaceThreshold,
)
from archived.services.intervals import (
    RetryIntervals,
    RetryIntervalsField,
    TaskInterval,
    TaskIntervalField,
)

UUID_KEY = "_.uuid"
DEFAULT_DEVICE_NAME = "archived"
DEFAULT_AE_TITLE = "ARCHIVED"
DEFAULT_PORT = 11112
DEFAULT_INDEX_PATH = "/var/lib/archived/index.sqlite"


def new_uuid() -> str:
    return str(uuid.uuid4())


class FrozenList(list):
    """A list of the shared read-only configuration: every mutation raises."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise ReadOnlyConfigError("this list")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]


class FrozenDict(dict):
    """A mapping of the shared read-only configuration: every mutation raises."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise ReadOnlyConfigError("this mapping")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    pop = popitem = clear = update = setdefault = _refuse  # type: ignore[assignment]


class Configurable(BaseModel):
    """Base of every configuration node: validated on assignment, freezable for sharing."""

    model_config = ConfigDict(
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        validate_assignment=True,
        extra="forbid",
    )
    # No PrivateAttr here: pydantic would then run an initializer per node on every load.

    def __setattr__(self, name: str, value: Any) -> None:
        private = self.__pydantic_private__
        if private and private.get("_frozen"):
            raise ReadOnlyConfigError(f"{type(self).__name__}.{name}")
        super().__setattr__(name, value)

    @property
    def frozen(self) -> bool:
        return bool(self.__pydantic_private__ and self.__pydantic_private__.get("_frozen"))

    def freeze(self) -> None:
        """Make this node and everything below it read-only (the shared view of a process)."""
        for name in type(self).model_fields:
            self.__dict__[name] = _frozen_value(self.__dict__[name])
        private = {**(self.__pydantic_private__ or {}), "_frozen": True}
        object.__setattr__(self, "__pydantic_private__", private)


def _frozen_value(value: Any) -> Any:
    if isinstance(value, Configurable):
        value.freeze()
        return value
    if isinstance(value, list):
        return FrozenList(_frozen_value(item) for item in value)
    if isinstance(value, dict):
        return FrozenDict({key: _frozen_value(item) for key, item in value.items()})
    return value


class Connection(Configurable):
    """A network connection of a device (dicomNetworkConnection)."""

    uuid: str = Field(default_factory=new_uuid, alias=UUID_KEY)
    common_name: str | None = Field(None, alias="cn")
    hostname: str = Field("localhost", alias="dicomHostname")
    port: int | None = Field(None, alias="dicomPort", ge=0, le=65535)  # None: not listening
    bind_address: str | None = Field(None, alias="dcmBindAddress")
    tls_cipher_suites: list[str] = Field(default_factory=list, alias="dicomTLSCipherSuite")
    tls_key_password: SecretValue = Field(None, alias="dcmTLSKeyPassword")
    installed: bool | None = Field(None, alias="dicomInstalled")


class TransferCapability(Configurable):
    """One SOP class with its role and transfer syntaxes (dicomTransferCapability)."""

    common_name: str | None = Field(None, alias="cn")
    sop_class: str = Field(alias="dicomSOPClass")
    role: Literal["SCU", "SCP"] = Field(alias="dicomTransferRole")
    transfer_syntaxes: list[str] = Field(default_factory=list, alias="dicomTransferSyntax")


class AEPermissions(Configurable):
    """What a remote AE may ask of the archive, and from which hosts (empty: any host)."""

    store: bool = Field(True, alias="allowStore")
    query: bool = Field(True, alias="allowQuery")
    retrieve: bool = Field(True, alias="allowRetrieve")
    allowed_hosts: list[str] = Field(default_factory=list, alias="allowedHosts")

    def allows_host(self, host: str) -> bool:
        return not self.allowed_hosts or host in self.allowed_hosts


class AEExtensions(Configurable):
    """Typed AE extensions known to this code; unknown ones are kept by the store on merge."""

    model_config = ConfigDict(extra="ignore")


class ApplicationEntity(Configurable):
    """A DICOM application entity (dicomNetworkAE)."""

    uuid: str = Field(default_factory=new_uuid, alias=UUID_KEY)
    ae_title: AETitle = Field(alias="dicomAETitle")
    description: str | None = Field(None, alias="dicomDescription")
    connection_refs: list[Ref] = Field(
        default_factory=list, alias="dicomNetworkConnectionReference"
    )
    association_acceptor: bool = Field(True, alias="dicomAssociationAcceptor")
    association_initiator: bool = Field(True, alias="dicomAssociationInitiator")
    installed: bool | None = Field(None, alias="dicomInstalled")
    transfer_capabilities: list[TransferCapability] = Field(
        default_factory=list, alias="dicomTransferCapability"
    )
    permissions: AEPermissions = Field(default_factory=AEPermissions, alias="archivePermissions")
    extensions: AEExtensions = Field(default_factory=AEExtensions, alias="aeExtensions")


# ---------------------------------------------------------------- archive device extension


class _Archive(Configurable):
    """Archive extension nodes use dcm4chee 2.x attribute names (PascalCase) in JSON."""

    model_config = ConfigDict(alias_generator=to_pascal)


class FileSystemStatus(StrEnum):
    RW = "RW"
    RO = "RO"


class Availability(StrEnum):
    ONLINE = "ONLINE"
    NEARLINE = "NEARLINE"
    OFFLINE = "OFFLINE"
    UNAVAILABLE = "UNAVAILABLE"


class FileSystem(_Archive):
    """A storage location; `path` keeps a 'tar:' prefix for file systems that hold tars."""

    uuid: str = Field(default_factory=new_uuid, alias=UUID_KEY)
    path: str = Field(alias="DirectoryPath", min_length=1)
    status: FileSystemStatus = FileSystemStatus.RW
    availability: Availability = Availability.ONLINE

    @property
    def tarred(self) -> bool:
        return self.path.startswith("tar:")

    @property
    def directory(self) -> str:
        return self.path.removeprefix("tar:")


class DeletionRules(_Archive):
    """When studies may leave this group (dcm4chee 2.x FileSystemMgt deleter attributes)."""

    schedule_studies_for_deletion_interval: OptionalDuration = None
    schedule_studies_for_deletion_batch_size: int = Field(100, ge=1)
    delete_study_if_not_accessed_for: OptionalDuration = None
    delete_study_only_if_not_accessed_for: Duration = timedelta(hours=1)
    delete_study_only_if_storage_not_committed: bool = False
    delete_study_only_if_copy_on_media: bool = False
    delete_study_only_if_copy_on_read_only_file_system: bool = False
    delete_study_only_if_copy_on_file_system_of_file_system_group: str | None = None
    # True (dcm4chee 2.x: false): by default a study leaves only once its copy is verified.
    delete_study_only_if_copy_archived: bool = True
    minimum_free_disk_space: SpaceThreshold = "NONE"
    expected_data_volume_per_day: SpaceThreshold = "100MB"


class FileSystemGroup(_Archive):
    """File systems of one group (ONLINE_STORAGE, NEARLINE_STORAGE, LOSSY_STORAGE, ...)."""

    uuid: str = Field(default_factory=new_uuid, alias=UUID_KEY)
    group_id: str = Field(alias="GroupID", pattern=r"^[A-Z][A-Z0-9_]*$")
    file_systems: list[FileSystem] = Field(default_factory=list)
    deletion_rules: DeletionRules = Field(default_factory=DeletionRules)


class FileCopy(_Archive):
    """Copy (tar) series from the source group to the destination file system."""

    enabled: bool = False
    source_file_system_group_id: str = Field("ONLINE_STORAGE", alias="SourceFileSystemGroupID")
    destination_file_system: Ref | None = None  # uuid of a FileSystem
    file_status: FileStatusField = FileStatus.TO_ARCHIVE
    # dcm4chee 2.x syntax, a list or a string: ["1m", "1h"] or "5x1m,12x5m,24x1h,7x1d".
    retry_intervals: RetryIntervalsField = Field(
        default_factory=lambda: RetryIntervals.parse("5x1m,12x5m,24x1h,7x1d")
    )
    task_interval: TaskIntervalField = TaskInterval(timedelta(seconds=10))  # look for series
    delay_after_series_stored: Duration = timedelta(minutes=1)  # quiet time before the copy


def _default_status_mapping() -> dict[str, FileStatus]:
    return {"archived": FileStatus.ARCHIVED, "lost": FileStatus.QUERY_HSM_FAILED}


class SyncFileStatus(_Archive):
    """Check files on the monitored file system against hsmfs and map its states to statuses."""

    enabled: bool = False
    monitored_file_system: Ref | None = None  # uuid of a FileSystem
    task_interval: TaskIntervalField = TaskInterval(timedelta(minutes=1))  # '1h!9-17', NEVER
    minimum_file_age: Duration = timedelta(minutes=10)
    files_per_task: int = Field(1000, alias="LimitNumberOfFilesPerTask", ge=1)
    verify: bool = Field(True, alias="VerifyTar")
    # Verify by reading every member through the mount instead of hsmfs's member MD5s.
    verify_by_reading: bool = Field(False, alias="VerifyTarByReading")
    check_file_status: FileStatusField = FileStatus.TO_ARCHIVE
    status_mapping: dict[str, FileStatusField] = Field(default_factory=_default_status_mapping)


class ArchiveDeviceExtension(_Archive):
    """The archive's own settings, in the extension of the archive's device."""

    ae_title: AETitle = Field(DEFAULT_AE_TITLE, alias="AETitle")  # an AE of this device
    max_pdu_size: int = Field(16382, alias="MaximumPDULength", ge=0)
    max_associations: int = Field(20, alias="MaximumAssociations", ge=1)
    acse_timeout: float = Field(30.0, alias="ACSETimeout", gt=0)
    dimse_timeout: float = Field(60.0, alias="DIMSETimeout", gt=0)
    network_timeout: float = Field(60.0, alias="NetworkTimeout", gt=0)
    duplicate_sop_policy: Literal["ignore", "replace"] = Field("ignore", alias="DuplicateSOPPolicy")
    accept_unknown_calling_aets: bool = Field(False, alias="AcceptUnknownCallingAETs")
    pending_interval: float = Field(
        5.0, alias="PendingResponseInterval", gt=0,
        description="Seconds a C-MOVE or C-GET waits for a copy (hsmfs staging it from S3) "
        "before it sends a Pending response, so the requester's DIMSE timeout does not expire",
    )  # fmt: skip
    stgcmt_same_association: bool = Field(
        False, alias="StgCmtOnSameAssociation",
        description="Storage commitment: send the N-EVENT-REPORT on the requesting "
        "association (true) or on a new association to the requester's configured host and "
        "port (false)",
    )  # fmt: skip
    index_path: str = Field(
        DEFAULT_INDEX_PATH, alias="IndexPath", min_length=1,
        description="The SQLite index file, an absolute path; read at start-up (a change "
        "needs a restart). `archived serve --index` and $ARCHIVED_INDEX override it",
    )  # fmt: skip
    case_insensitive_person_name_matching: bool = Field(
        True, alias="CaseInsensitivePersonNameMatching",
        description="C-FIND: person name keys (PatientName, ReferringPhysicianName) match "
        "regardless of letter case, wildcards included (true, as PS3.4 permits for PN); false "
        "matches them case-sensitively, as the standard's literal rule",
    )  # fmt: skip
    association_request_timeout: float = Field(
        5.0, alias="AssociationRequestTimeout", gt=0,
        description="Seconds a new connection has to send its complete A-ASSOCIATE-RQ; an "
        "idle or stalled socket is closed after that, so it cannot hold one of "
        "MaximumAssociations",
    )  # fmt: skip
    max_inflated_size: int = Field(
        256 << 20, alias="MaxInflatedSize", ge=1,
        description="C-STORE in the Deflate transfer syntax: a data set that inflates to "
        "more bytes than this is refused (0xA700) as soon as it does",
    )  # fmt: skip
    store_early_success: bool = Field(
        False, alias="StoreEarlySuccess",
        description="C-STORE: answer Success once the instance is written and indexed, "
        "and make it durable in the next group (storage commitment still reports it only "
        "once durable). Faster; a power failure can lose instances already answered with "
        "Success. Off: Success only once durable",
    )  # fmt: skip
    store_queue_size: int = Field(
        256, alias="StoreQueueSize", ge=1,
        description="C-STORE: received instances that may wait for their group commit at "
        "once; further handlers wait, and so do their peers",
    )  # fmt: skip
    file_system_groups: list[FileSystemGroup] = Field(default_factory=list)
    file_copy: FileCopy = Field(default_factory=FileCopy)
    sync_file_status: SyncFileStatus = Field(default_factory=SyncFileStatus)

    @field_validator("index_path")
    @classmethod
    def _absolute_index_path(cls, path: str) -> str:
        if not path.startswith("/"):  # relative: it would depend on each process's cwd
            raise ValueError(
                f"IndexPath {path!r} is relative; write an absolute path, e.g. {DEFAULT_INDEX_PATH}"
            )
        return path

    def group(self, group_id: str) -> FileSystemGroup | None:
        return next((g for g in self.file_system_groups if g.group_id == group_id), None)

    def iter_file_systems(self) -> Iterator[tuple[FileSystemGroup, FileSystem]]:
        for group in self.file_system_groups:
            for fs in group.file_systems:
                yield group, fs

    def find_file_system(self, fs_uuid: str) -> FileSystem | None:
        return next((fs for _, fs in self.iter_file_systems() if fs.uuid == fs_uuid), None)


class DeviceExtensions(Configurable):
    """Typed device extensions known to this code; unknown ones are kept by the store on merge."""

    model_config = ConfigDict(extra="ignore")

    archive: ArchiveDeviceExtension | None = Field(None, alias="ArchiveDeviceExtension")


class Device(Configurable):
    """A device: its connections, application entities and extensions."""

    uuid: str = Field(default_factory=new_uuid, alias=UUID_KEY)
    name: str = Field(alias="dicomDeviceName", min_length=1)
    description: str | None = Field(None, alias="dicomDescription")
    installed: bool = Field(True, alias="dicomInstalled")
    connections: list[Connection] = Field(default_factory=list, alias="dicomNetworkConnection")
    application_entities: list[ApplicationEntity] = Field(
        default_factory=list, alias="dicomNetworkAE"
    )
    extensions: DeviceExtensions = Field(default_factory=DeviceExtensions, alias="deviceExtensions")
    # uuid -> hash of each hashed node as loaded from the store (optimistic locking).
    _loaded_hashes: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _no_slash(cls, name: str) -> str:
        if "/" in name:
            raise ValueError(f"device name {name!r} must not contain '/'")
        return name

    @property
    def archive(self) -> ArchiveDeviceExtension | None:
        return self.extensions.archive

    def find_ae(self, ae_title: str) -> ApplicationEntity | None:
        return next((ae for ae in self.application_entities if ae.ae_title == ae_title), None)

    def find_connection(self, conn_uuid: str) -> Connection | None:
        return next((c for c in self.connections if c.uuid == conn_uuid), None)

    def connections_of(self, ae: ApplicationEntity) -> list[Connection]:
        by_uuid = {c.uuid: c for c in self.connections}
        return [by_uuid[ref] for ref in ae.connection_refs if ref in by_uuid]

    def archive_ae(self) -> tuple[ApplicationEntity, Connection]:
        """The archive's own AE and its listening connection (the DICOM service binds here)."""
        from archived.conf.errors import NotFoundError

        ext = self.archive
        title = ext.ae_title if ext else DEFAULT_AE_TITLE
        ae = self.find_ae(title)
        conns = [c for c in self.connections_of(ae) if c.port is not None] if ae else []
        if ae is None or not conns:
            raise NotFoundError(
                f"device {self.name!r} has no AE {title!r} with a listening connection; "
                f"run `archivectl config import` with one or recreate the device"
            )
        return ae, conns[0]


def remote_ae_device(
    ae_title: str, host: str, port: int, permissions: AEPermissions | None = None
) -> Device:
    """A device for one remote peer: one connection, one AE (what `archivectl ae add` stores)."""
    conn = Connection(hostname=host, port=port)
    ae = ApplicationEntity(
        ae_title=ae_title,
        connection_refs=[conn.uuid],
        permissions=permissions or AEPermissions(),
    )
    return Device(name=ae_title, connections=[conn], application_entities=[ae])


def default_archive_device(
    name: str = DEFAULT_DEVICE_NAME,
    ae_title: str = DEFAULT_AE_TITLE,
    port: int = DEFAULT_PORT,
) -> Device:
    """The archive's device as first created: one AE listening on all interfaces."""
    conn = Connection(common_name="dicom", hostname="0.0.0.0", port=port)
    ae = ApplicationEntity(ae_title=ae_title, connection_refs=[conn.uuid])
    return Device(
        name=name,
        connections=[conn],
        application_entities=[ae],
        extensions=DeviceExtensions(archive=ArchiveDeviceExtension(ae_title=ae_title)),
    )


# Typed extensions by JSON key, per owner; keys absent here are "unknown" to this code.
DEVICE_EXTENSIONS: dict[str, type[Configurable]] = {
    "ArchiveDeviceExtension": ArchiveDeviceExtension
}
AE_EXTENSIONS: dict[str, type[Configurable]] = {}
