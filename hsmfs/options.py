"""Where a mount keeps its things: mount point, cache, state, configuration, object store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .backends import ObjectStore, ObjectStoreError, open_backend
from .config import Config
from .errors import UsageError


@dataclass
class MountOptions:
    mountpoint: Path
    cache_dir: Path
    state_dir: Path
    config_file: Path | None = None
    backend_url: str | None = None  # overrides the configuration's hsm.backend


def backend_url(options: MountOptions, config: Config) -> str:
    """--backend, else the configuration, else the embedded default: a local directory.

    An empty URL is refused: falling back to the local default would put the archive's
    copies somewhere the operator did not ask for."""
    for url, source in ((options.backend_url, "--backend"), (config.hsm.backend, "[hsm] backend")):
        if url is None:
            continue
        if not url.strip():
            raise UsageError(
                f"{source} is empty; give an object store URL (s3://BUCKET/PREFIX?... or "
                "file:///DIR), or leave it out for the embedded default (STATE/objects)"
            )
        return url
    default = options.state_dir / "objects"
    default.mkdir(parents=True, exist_ok=True)
    return f"file://{default}"


def open_store(options: MountOptions, config: Config) -> ObjectStore:
    try:
        return open_backend(
            backend_url(options, config),
            connect_timeout=config.hsm.connect_timeout,
            read_timeout=config.hsm.read_timeout,
        )
    except ObjectStoreError as exc:
        raise UsageError(str(exc)) from None
