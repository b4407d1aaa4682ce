"""Object stores behind hsmfs: `open_backend(url, **options)` is the way in.

    s3://BUCKET/PREFIX?endpoint=URL&region=R&addressing=path|virtual|auto&verify=true|false|CA
        &profile=NAME      (credentials: the standard AWS environment, profile or file)
    file:///DIR           a plain directory (the embedded default)

Options (StoreOptions fields) tune timeouts, connection pool, part size and retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .common import (
    AccessDenied,
    BadBackendURL,
    ChecksumMismatch,
    DataCallback,
    NoSuchObject,
    ObjectChanged,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    ObjectStoreError,
    PermanentFailure,
    ProgressCallback,
    RetryPolicy,
    StoreOptions,
    TemporaryFailure,
    UploadNotVerified,
    is_temp_failure,
    retry,
)

__all__ = [
    "AccessDenied",
    "BadBackendURL",
    "ChecksumMismatch",
    "DataCallback",
    "NoSuchObject",
    "ObjectChanged",
    "ObjectInfo",
    "ObjectReader",
    "ObjectStore",
    "ObjectStoreError",
    "PermanentFailure",
    "ProgressCallback",
    "RetryPolicy",
    "StoreOptions",
    "TemporaryFailure",
    "UploadNotVerified",
    "is_temp_failure",
    "open_backend",
    "retry",
]

S3_PARAMETERS = ("endpoint", "region", "addressing", "verify", "profile")
ADDRESSING_STYLES = ("auto", "path", "virtual")


def open_backend(url: str, **options: Any) -> ObjectStore:
    """The object store for `url`; raises BadBackendURL naming what is wrong."""
    parts = urlsplit(url)
    store_options = StoreOptions.from_mapping(options)
    if parts.scheme == "file":
        return _open_local(url, parts.netloc, parts.path, parts.query, store_options)
    if parts.scheme == "s3":
        return _open_s3(url, parts.netloc, parts.path, parts.query, store_options)
    raise BadBackendURL(
        f"backend URL {_without_query(url)!r}: unknown scheme; use s3://BUCKET/PREFIX or "
        "file:///DIR"
    )


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]  # the query may hold an endpoint with a password


def _open_local(url: str, host: str, path: str, query: str, options: StoreOptions) -> ObjectStore:
    from .local import LocalStore

    if host not in ("", "localhost") or not path.startswith("/") or query:
        raise BadBackendURL(
            f"backend URL {_without_query(url)!r}: use file:///ABSOLUTE/DIR without a host or query"
        )
    return LocalStore(Path(unquote(path)), options)


def _open_s3(url: str, bucket: str, path: str, query: str, options: StoreOptions) -> ObjectStore:
    from .s3 import S3Store

    shown = _without_query(url)
    if not bucket:
        raise BadBackendURL(f"backend URL {shown!r}: no bucket; use s3://BUCKET/PREFIX")
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise BadBackendURL(f"backend URL {shown!r}: malformed query string") from None
    unknown = sorted(set(params) - set(S3_PARAMETERS))
    if unknown:
        raise BadBackendURL(
            f"backend URL {shown!r}: unknown parameter(s) {', '.join(unknown)}; valid: "
            f"{', '.join(S3_PARAMETERS)}"
        )
    addressing = params.get("addressing", "auto")
    if addressing not in ADDRESSING_STYLES:
        raise BadBackendURL(
            f"backend URL {shown!r}: addressing={addressing}; use one of "
            f"{', '.join(ADDRESSING_STYLES)}"
        )
    verify: bool | str = params.get("verify", "true")
    if verify in ("true", "false"):
        verify = verify == "true"
    endpoint = params.get("endpoint") or None
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        raise BadBackendURL(f"backend URL {shown!r}: endpoint must be an http:// or https:// URL")
    return S3Store(
        bucket,
        unquote(path).lstrip("/"),
        endpoint=endpoint,
        region=params.get("region") or None,
        addressing=addressing,
        verify=verify,
        profile=params.get("profile") or None,
        options=options,
    )
