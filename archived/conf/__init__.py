"""archived.conf: the configuration store of archived, with dcm4chee-conf's semantics.

Open a store and read the process's own device (shared, read-only, always current):

    store = open_store("lmdb:///var/lib/archived/conf")   # or json:///FILE; None: $ARCHIVED_CONFIG
    device = store.ensure_own_device()          # Device "archived"; created with defaults if absent
    ae, conn = device.archive_ae()              # the archive's AE ("ARCHIVED") and its port (11112)
    settings = device.archive                   # ArchiveDeviceExtension: timeouts, PDU size, ...

Change something: load a fresh copy, change it, merge it (optimistic locking, see olock):

    dev = store.find_device("archived")
    dev.archive.file_copy.enabled = True
    store.merge_device(dev)                     # OptimisticLockError: someone changed it meanwhile

Typed API: list_device_names(), find_device(name), find_ae(aet), find_device_by_ae(aet),
merge_device(device), remove_device(name), batch(fn) (one atomic transaction; nested writes
join it), own_device(), ensure_own_device(). Node API (JSON Pointer paths below
/dicomConfigurationRoot): get_node(path), persist_node(path, node), remove_node(path),
find_ae_path(aet), find_uuid_path(uuid). subscribe(callback) calls callback(ChangeEvent) after
each commit, in this process or another (polled, about 0.1 s late; see notify). Errors are
ConfigError subclasses, each with an exit_code (see errors).

Layout of the tree: devices at /dicomConfigurationRoot/dicomDevicesRoot/<name>; remote AEs
are devices of their own, one per peer, named after their AE title (`archivectl ae add`);
the store's version at /dicomConfigurationRoot/metadataRoot/versioning, written by
UpgradeRunner(store, load_upgrade_settings(path), deployment).run() at start-up (see upgrade).
Secrets (e.g. dcmTLSKeyPassword) are write-only: no read API returns them.
"""

from archived.conf.backends import DEFAULT_URI, resolve_uri
from archived.conf.errors import (
    ConfigError,
    IntegrityError,
    NotFoundError,
    OptimisticLockError,
    ReadOnlyConfigError,
    StoreUnavailableError,
    UpgradeError,
)
from archived.conf.fields import FileStatus
from archived.conf.model import (
    AEPermissions,
    ApplicationEntity,
    ArchiveDeviceExtension,
    Availability,
    Connection,
    DeletionRules,
    Device,
    FileCopy,
    FileSystem,
    FileSystemGroup,
    FileSystemStatus,
    SyncFileStatus,
    TransferCapability,
    default_archive_device,
    remote_ae_device,
)
from archived.conf.notify import ChangeEvent, Subscription
from archived.conf.store import ConfigStore, open_store
from archived.conf.upgrade import (
    UpgradeContext,
    UpgradeRunner,
    UpgradeSettings,
    load_upgrade_settings,
)

__all__ = [
    "DEFAULT_URI",
    "AEPermissions",
    "ApplicationEntity",
    "ArchiveDeviceExtension",
    "Availability",
    "ChangeEvent",
    "ConfigError",
    "ConfigStore",
    "Connection",
    "DeletionRules",
    "Device",
    "FileCopy",
    "FileStatus",
    "FileSystem",
    "FileSystemGroup",
    "FileSystemStatus",
    "IntegrityError",
    "NotFoundError",
    "OptimisticLockError",
    "ReadOnlyConfigError",
    "StoreUnavailableError",
    "Subscription",
    "SyncFileStatus",
    "TransferCapability",
    "UpgradeContext",
    "UpgradeError",
    "UpgradeRunner",
    "UpgradeSettings",
    "default_archive_device",
    "load_upgrade_settings",
    "open_store",
    "remote_ae_device",
    "resolve_uri",
]
