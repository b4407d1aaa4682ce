"""The running server's statistics as a small JSON file next to the index (archivectl status)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATUS_FILE_NAME = "archived.status.json"


def status_path(index_path: Path) -> Path:
    return index_path.parent / STATUS_FILE_NAME


def write_status(path: Path, statistics: dict[str, Any]) -> None:
    """Replace the status file atomically (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**statistics, "pid": os.getpid(), "written": time.time()}))
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
