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
from dataclasses import dataclass, field
from pathlib import Path

from archived.conf import ArchiveDeviceExtension, ConfigStore, NotFoundError

ENV_VAR = "ARCHIVED_INDEX"
CHOICES = "pass --index, set $ARCHIVED_INDEX or IndexPath in the configuration"


@dataclass(frozen=True)
class IndexLocation:
    path: Path
    source: str  # where the path came from, for messages
    looked_at: tuple[str, ...] = field(default=(), compare=False)  # the places tried before

    def missing(self) -> str:
        """The message for an index file that is not there, naming every place looked at."""
        before = "".join(f"{place}; " for place in self.looked_at)
        return (
            f"{self.path}: no index there (looked at: {before}{self.source}: {self.path}); "
            f"`archived serve` creates it when it starts: start it first, or {CHOICES}"
        )


def locate_index(given: str | None, configured: Callable[[], IndexLocation]) -> IndexLocation:
    """The index file by the precedence above; ``configured`` is only called when needed."""
    if given:
        return IndexLocation(Path(given), "--index")
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return IndexLocation(Path(from_env), f"${ENV_VAR}", ("--index: not given",))
    location = configured()
    looked = ("--index: not given", f"${ENV_VAR}: not set")
    return IndexLocation(location.path, location.source, looked)


def configured_index(store: ConfigStore) -> IndexLocation:
    """IndexPath of the store's own device; its default when the device has none yet.

    Reads only: a missing device is not created (archivectl's read commands use this).
    """
    try:
        ext = store.own_device().archive
    except NotFoundError:
        ext = None
    path = (ext or ArchiveDeviceExtension()).index_path
    unset = "" if ext is not None and "index_path" in ext.model_fields_set else " (unset: default)"
    source = f"IndexPath of device {store.device_name!r} in {store.uri}{unset}"
    return IndexLocation(Path(path), source)
