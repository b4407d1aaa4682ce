"""What `archivectl status` shows, gathered: the daemon (from the status file `archived
serve` writes next to the index), its services' runs and schedule, the backlog and the
failures, every file system with its free space and, for tars, the hsmfs mount's state,
and the index with its size.

Everything is read: the configuration, the index, the status file, statvfs and the
``user.hsm.daemon`` attribute of a mount. ``--json`` prints this dict as it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

from archived.conf import ArchiveDeviceExtension, ConfigError, ConfigStore
from archived.dicom.status_file import read_status, status_path
from archived.index import FileStatus, Index
from archived.index.lifecycle import file_counts_by_fs
from archived.index.overview import index_file_bytes, instances_without_copy, studies_on_group
from archived.indexpath import IndexLocation
from archived.services.errors import NotMountedError, ServiceError
from archived.services.mountcheck import check_live_mount, daemon_info
from archived.services.scheduler import archive_settings, build_services
from archived.views import humanize

STALE_AFTER = 30.0  # seconds; archived serve rewrites its status file every 2 s
NOT_RUNNING = "archived serve is not running: no schedule (run one with `archivectl run`)"


def gather(
    args: argparse.Namespace, index: Index, location: IndexLocation, store: ConfigStore | None
) -> dict[str, Any]:
    now = time.time()
    status_file = status_path(index.path)
    daemon = read_status(status_file)
    if daemon is not None and now - daemon.get("written", 0) > STALE_AFTER:
        daemon = {**daemon, "stale": True}
    services: Any = NOT_RUNNING
    if daemon is not None and "services" in daemon:
        daemon = dict(daemon)
        services = daemon.pop("services")
    ext = _settings(store)
    per_fs: dict[str, dict[str, int]] = {}
    by_uuid: dict[str, dict[str, int]] = {}
    for (uuid, path, status), n in file_counts_by_fs(index).items():
        per_fs.setdefault(f"{path} ({uuid})", {})[status.name] = n
        by_uuid.setdefault(uuid, {})[status.name] = n
    file_systems = _file_systems(index, ext, by_uuid)
    result: dict[str, Any] = {
        "daemon": daemon or f"not running (no status file {status_file})",
        "status_file": str(status_file),
        "services": services,
        "schedule": _schedule(index, store),
        "files_per_file_system": per_fs,
        "file_systems": file_systems,
        "index": index.counts(),
        "index_file": {
            "path": str(index.path),
            "source": location.source,
            "bytes": index_file_bytes(index.path),
        },
        "files": {
            f"{group}/{FileStatus(status).name}": n
            for (group, status), n in index.file_status_counts().items()
        },
        "backlog": _backlog(index, ext),
        "now": now,
    }
    result["failures"] = failures(result)
    return result


def _settings(store: ConfigStore | None) -> ArchiveDeviceExtension | None:
    if store is None:
        return None
    try:
        return archive_settings(store)()
    except ConfigError:
        return None


def _schedule(index: Index, store: ConfigStore | None) -> dict[str, str]:
    """Each service's interval as configured (also when archived serve is not running)."""
    if store is None:
        return {}
    out = {}
    for name, service in build_services(index, archive_settings(store)).items():
        try:
            interval = service.interval()
        except (ConfigError, ServiceError) as exc:
            out[name] = f"misconfigured: {exc}"
            continue
        out[name] = str(interval) if interval is not None else "disabled"
    return out


def _file_systems(
    index: Index, ext: ArchiveDeviceExtension | None, files: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    """The configured file systems (else the index's mirror of them), with their state."""
    rows: list[dict[str, Any]]
    if ext is not None:
        rows = [
            {"uuid": fs.uuid, "group": group.group_id, "path": fs.path, "status": fs.status.value}
            for group, fs in ext.iter_file_systems()
        ]
    else:
        rows = [
            {"uuid": fs.uuid, "group": fs.group, "path": fs.path, "status": fs.status}
            for fs in index.filesystems()
        ]
    for row in rows:
        directory = Path(str(row["path"]).removeprefix("tar:"))
        row.update(_space(directory))
        if str(row["path"]).startswith("tar:"):
            row["hsmfs"] = hsmfs_state(directory)
        row["files"] = files.get(str(row["uuid"]), {})
    return rows


def _space(directory: Path) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(directory)
    except OSError as exc:
        return {"exists": directory.exists(), "error": exc.strerror or str(exc)}
    return {
        "exists": True,
        "writable": os.access(directory, os.W_OK),
        "free": usage.free,
        "total": usage.total,
    }


def hsmfs_state(directory: Path) -> dict[str, Any]:
    """Is the directory on a live hsmfs mount; the daemon's pid and mount point if so."""
    try:
        root = check_live_mount(directory)
    except NotMountedError as exc:
        return {"live": False, "error": str(exc)}
    return {"live": True, "mountpoint": str(root), "pid": daemon_info(root).get("pid")}


def _backlog(index: Index, ext: ArchiveDeviceExtension | None) -> dict[str, Any]:
    backlog: dict[str, Any] = {}
    destination = ext.file_copy.destination_file_system if ext is not None else None
    if ext is not None and destination:
        backlog["instances_without_copy"] = instances_without_copy(
            index, ext.file_copy.source_file_system_group_id, destination
        )
    to_archive = 0
    for (_group, status), n in index.file_status_counts().items():
        if status == FileStatus.TO_ARCHIVE:
            to_archive += n
    backlog["files_to_archive"] = to_archive
    backlog["online_studies"] = studies_on_group(index, "ONLINE_STORAGE")
    return backlog


def failures(status: dict[str, Any]) -> list[str]:
    """One line per thing that needs a person, each saying where to look or what to do."""
    out = []
    services = status["services"]
    if isinstance(services, dict):
        for name, service in services.items():
            last = service.get("last_run") or {}
            if last.get("failed"):
                out.append(f"{name}: the last run failed: {last['failed']}")
            for error in last.get("errors", [])[:3]:
                out.append(f"{name}: {error}")
            for series, retry in (service.get("retrying") or {}).items():
                out.append(
                    f"{name}: series {humanize.short_uid(series)} failed "
                    f"{humanize.count(retry['failures'], 'time')}, next attempt "
                    f"{humanize.moment(retry['next_attempt'])}: {retry['error']}"
                )
            for series, error in (service.get("gave_up") or {}).items():
                out.append(
                    f"{name}: series {humanize.short_uid(series)} gave up after its "
                    f"RetryIntervals: {error}; retry with `archivectl run filecopy`"
                )
            for group, missing in (service.get("bytes_to_free") or {}).items():
                if missing:
                    out.append(
                        f"{name}: {group} is {humanize.size(missing)} short of "
                        "MinimumFreeDiskSpace and no study qualifies for deletion"
                    )
    for fs in status["file_systems"]:
        if fs.get("error"):
            out.append(f"{fs['path']}: {fs['error']}; create it or fix it with `archivectl fs`")
        elif fs.get("writable") is False and fs["status"] == "RW":
            out.append(f"{fs['path']}: not writable by this user")
        hsm = fs.get("hsmfs")
        if hsm is not None and not hsm["live"]:
            out.append(hsm["error"])
        for name, n in fs["files"].items():
            if FileStatus[name] < 0:
                out.append(
                    f"{fs['path']}: {humanize.count(n, 'file')} {name} "
                    "(`archivectl study list` shows which studies)"
                )
    daemon = status["daemon"]
    if isinstance(daemon, dict) and daemon.get("stale"):
        out.append(
            f"archived serve (pid {daemon.get('pid')}) last wrote its status "
            f"{humanize.relative(daemon['written'])}: is it hung? see its log"
        )
    return out
