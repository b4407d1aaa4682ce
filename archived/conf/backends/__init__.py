"""Storage backends of the configuration store, chosen by URI (lmdb:///DIR, json:///FILE)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from archived.conf.backends.base import Backend, BackendTransaction, Snapshot
from archived.conf.errors import StoreUnavailableError

DEFAULT_URI = "lmdb:///var/lib/archived/conf"
ENV_VAR = "ARCHIVED_CONFIG"

__all__ = [
    "DEFAULT_URI",
    "ENV_VAR",
    "Backend",
    "BackendTransaction",
    "Snapshot",
    "open_backend",
    "resolve_uri",
]


def resolve_uri(uri: str | None = None) -> str:
    """The given URI, else $ARCHIVED_CONFIG, else the default lmdb:///var/lib/archived/conf."""
    return uri or os.environ.get(ENV_VAR) or DEFAULT_URI


def open_backend(uri: str) -> Backend:
    parsed = urlparse(uri)
    if parsed.netloc or not parsed.path.startswith("/"):
        raise StoreUnavailableError(
            "write an absolute path after three slashes, e.g. lmdb:///var/lib/archived/conf",
            uri=uri,
        )
    if parsed.scheme == "lmdb":
        from archived.conf.backends.lmdbstore import LmdbBackend

        return LmdbBackend(parsed.path, uri)
    if parsed.scheme == "json":
        from archived.conf.backends.jsonfile import JsonFileBackend

        return JsonFileBackend(parsed.path, uri)
    raise StoreUnavailableError("unknown scheme; use lmdb:///DIR or json:///FILE", uri=uri)
