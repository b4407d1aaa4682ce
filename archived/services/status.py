"""The services' part of `archivectl status`: per service the last run, what it did, what
is queued and failing (from the status file `archived serve` writes), and the count of
files per file system and status (from the index)."""

from __future__ import annotations

from typing import Any

from archived.index import Index
from archived.index.lifecycle import file_counts_by_fs

NOT_RUNNING = "archived serve is not running: no schedule (run one with `archivectl run`)"


def split_service_status(
    index: Index, daemon: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the daemon's status without its services, the services' status for operators)."""
    services: Any = NOT_RUNNING
    if daemon is not None and "services" in daemon:
        daemon = dict(daemon)
        services = daemon.pop("services")
    per_fs: dict[str, dict[str, int]] = {}
    for (uuid, path, status), count in file_counts_by_fs(index).items():
        per_fs.setdefault(f"{path} ({uuid})", {})[status.name] = count
    return daemon, {"services": services, "files_per_file_system": per_fs}
