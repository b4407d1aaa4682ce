"""Which index file a command uses, and why: the one place that decides it.

Precedence, first found wins:
  1. ``--index PATH`` on the command line (archived serve, archivectl run|study|status);
  2. ``$ARCHIVED_INDEX`` (systemd: archived.env);
  3. IndexPath of the archive's device in the configuration store (default
     /var/lib/archived/index.sqlite).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archived.conf import ArchiveDeviceExtension, ConfigStore, NotFoundError

ENV_VAR = "ARCHIVED_INDEX"
CHOICES = "pass --index, set $ARCHIVED_INDEX or IndexPath in the configuration"


@dataclass(frozen=True)
class IndexLocation:
    path: Path
    source: str  # where the path came from, for messages

    def missing(self) -> str:
        """The message for an index file that is not there."""
        return f"{self.path}: no index there (path from {self.source}); {CHOICES}"


def locate_index(given: str | None, configured: Callable[[], IndexLocation]) -> IndexLocation:
    """The index file by the precedence above; ``configured`` is only called when needed."""
    if given:
        return IndexLocation(Path(given), "--index")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return IndexLocation(Path(from_env), f"${ENV_VAR}")
    return configured()


def configured_index(store: ConfigStore) -> IndexLocation:
    """IndexPath of the store's own device; its default when the device has none yet.

    Reads only: a missing device is not created (archivectl's read commands use this).
    """
    try:
        ext = store.own_device().archive
    except NotFoundError:
        ext = None
    path = (ext or ArchiveDeviceExtension()).index_path
    return IndexLocation(Path(path), f"IndexPath of device {store.device_name!r} in {store.uri}")
