"""The quick start's configuration: file systems, IndexPath, a retrieve destination and the
DEMONSTRATION intervals that let a newcomer watch the whole lifecycle in about a minute.

None of these intervals is a default: without the quick start FileCopy, SyncFileStatus and
the deleter are off, and the deleter removes a study only when every instance has an
ARCHIVED copy (DeleteStudyOnlyIfCopyArchived defaults to true). The quick start also sets
the rule explicitly, so the demonstration shows the safe behaviour whatever the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from archived.conf import (
    ArchiveDeviceExtension,
    ConfigStore,
    FileSystem,
    FileSystemGroup,
    open_store,
)
from archived.conf.initdevice import init_archive_device
from archived.conf.model import remote_ae_device
from archived.services.intervals import TaskInterval

MOVE_DESTINATION = "MOVESCU"  # movescu's own AE title: it receives what it asks for

# Seconds, for the guide and the README ("Your first hour").
SERIES_QUIET = 3  # FileCopy: a series is packed once no instance arrived for this long
COPY_EVERY = 2  # FileCopy looks for quiet series
SYNC_EVERY = 2  # SyncFileStatus checks the tars hsmfs archived
DELETE_AFTER = 30  # a study leaves ONLINE this long after its last access...
DELETER_EVERY = 5  # ...checked this often, once every instance has an ARCHIVED copy
MIGRATE_AFTER = 2  # hsmfs: a closed tar is migrated this long after its last change
RELEASE_AFTER = 60  # hsmfs: an archived tar nobody read for this long leaves the cache

HSMFS_TOML = f"""\
# hsmfs settings of the QUICK START: DEMONSTRATION values, not for production.
# A closed file is migrated {MIGRATE_AFTER} s after its last change (default 60 s), the
# policy runs every second, and an archived file nobody read for {RELEASE_AFTER} s leaves
# the cache (default: only when the cache passes its high watermark). Every key, with its
# default, is listed in systemd/hsmfs.toml.
[hsm]
migrate_after = {MIGRATE_AFTER}.0
scan_interval = 1.0
release_after = {RELEASE_AFTER}.0
"""


@dataclass(frozen=True)
class Layout:
    """Where the quick start keeps everything, below one root directory."""

    root: Path

    @property
    def nearline(self) -> Path:
        return self.root / "nearline"

    @property
    def online(self) -> Path:
        return self.root / "online"

    @property
    def cache(self) -> Path:
        return self.root / "hsmfs-cache"

    @property
    def state(self) -> Path:
        return self.root / "hsmfs-state"

    @property
    def hsmfs_config(self) -> Path:
        return self.root / "hsmfs.toml"

    @property
    def index(self) -> Path:
        return self.root / "index.sqlite"

    @property
    def sample(self) -> Path:
        return self.root / "sample-study"

    @property
    def retrieved(self) -> Path:
        return self.root / "retrieved"

    @property
    def conf_uri(self) -> str:
        return f"lmdb://{self.root}/archived-conf"

    def directories(self) -> tuple[Path, ...]:
        return (self.nearline, self.online, self.cache, self.state, self.retrieved)


def write_hsmfs_config(layout: Layout) -> None:
    """The demonstration hsmfs.toml, unless the operator has one there already."""
    if not layout.hsmfs_config.exists():
        layout.hsmfs_config.write_text(HSMFS_TOML)


def configure(layout: Layout, port: int, move_port: int, delete_after: float | None) -> float:
    """Idempotent: what is missing is added, what an operator set is kept (except the
    ports, and DeleteStudyIfNotAccessedFor when ``delete_after`` is given). Returns the
    seconds a study now stays on ONLINE after its last access."""
    with open_store(layout.conf_uri) as store:
        init_archive_device(store, str(layout.index))
        kept = store.batch(lambda: _edit_archive(store, layout, port, delete_after))
        _move_destination(store, move_port)
    return kept


def _edit_archive(
    store: ConfigStore, layout: Layout, port: int, delete_after: float | None
) -> float:
    device = store.find_device(store.device_name)
    ext = device.archive
    assert ext is not None
    ext.accept_unknown_calling_aets = True  # a demonstration: any calling AE may come in
    wanted = (("ONLINE_STORAGE", str(layout.online)),
              ("NEARLINE_STORAGE", f"tar:{layout.nearline}"))  # fmt: skip
    for group_id, path in wanted:
        group = ext.group(group_id)
        if group is None:
            group = FileSystemGroup(group_id=group_id)
            ext.file_system_groups.append(group)
        if all(fs.path != path for fs in group.file_systems):
            group.file_systems.append(FileSystem(path=path))
    if ext.file_copy.destination_file_system is None:  # first set-up: the lifecycle
        demonstration_lifecycle(ext, layout)
    online = ext.group("ONLINE_STORAGE")
    assert online is not None
    rules = online.deletion_rules
    if delete_after is not None:
        rules.delete_study_if_not_accessed_for = timedelta(seconds=delete_after)
    _ae, connection = device.archive_ae()
    connection.port = port
    store.merge_device(device)
    after = rules.delete_study_if_not_accessed_for
    return after.total_seconds() if after is not None else float("inf")


def demonstration_lifecycle(ext: ArchiveDeviceExtension, layout: Layout) -> None:
    """FileCopy to the mount, SyncFileStatus on it, ONLINE deletion once ARCHIVED."""
    nearline, online = ext.group("NEARLINE_STORAGE"), ext.group("ONLINE_STORAGE")
    assert nearline is not None and online is not None
    tars = f"tar:{layout.nearline}"
    destination = next(fs for fs in nearline.file_systems if fs.path == tars)
    copy = ext.file_copy
    copy.enabled = True
    copy.destination_file_system = destination.uuid
    copy.delay_after_series_stored = timedelta(seconds=SERIES_QUIET)
    copy.task_interval = TaskInterval(timedelta(seconds=COPY_EVERY))
    sync = ext.sync_file_status
    sync.enabled = True
    sync.monitored_file_system = destination.uuid
    sync.minimum_file_age = timedelta(0)
    sync.task_interval = TaskInterval(timedelta(seconds=SYNC_EVERY))
    rules = online.deletion_rules
    rules.schedule_studies_for_deletion_interval = timedelta(seconds=DELETER_EVERY)
    rules.delete_study_if_not_accessed_for = timedelta(seconds=DELETE_AFTER)
    rules.delete_study_only_if_copy_on_file_system_of_file_system_group = "NEARLINE_STORAGE"
    rules.delete_study_only_if_copy_archived = True


def _move_destination(store: ConfigStore, move_port: int) -> None:
    """movescu's AE, so that a C-MOVE to it knows where to send (127.0.0.1:move_port)."""
    if MOVE_DESTINATION not in store.list_device_names():
        store.merge_device(remote_ae_device(MOVE_DESTINATION, "127.0.0.1", move_port))
        return
    device = store.find_device(MOVE_DESTINATION)
    for connection in device.connections:
        connection.port = move_port
    store.merge_device(device)
