"""The ObjectStore interface, its exceptions, options and the @retry decorator.

Every backend is synchronous (boto3 is); hsmfs calls it from worker threads
(trio.to_thread.run_sync under a CapacityLimiter of `options.max_pool_connections`).
All methods are safe to call from several threads at once.

Exit codes follow sysexits(3), so a command that fails on a backend error can
`sys.exit(exc.exit_code)` after printing `str(exc)` (one line, no traceback).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar

log = logging.getLogger(__name__)

MiB = 1024 * 1024

# Called with the number of bytes transferred since the previous call.
ProgressCallback = Callable[[int], None]
# Called with the downloaded bytes themselves, in order, from the pass that hashes them.
DataCallback = Callable[[memoryview], None]

# Object metadata key under which every backend stores the MD5 of the whole object.
MD5_METADATA_KEY = "md5"


# --- exceptions -------------------------------------------------------------------------


class ObjectStoreError(Exception):
    """Base of all object store errors; the message names the object and what to do."""

    exit_code = 70  # EX_SOFTWARE


class BadBackendURL(ObjectStoreError):
    """The backend URL or an option is malformed or unknown."""

    exit_code = 64  # EX_USAGE


class NoSuchObject(ObjectStoreError):
    """The key does not exist in the store."""

    exit_code = 66  # EX_NOINPUT


class TemporaryFailure(ObjectStoreError):
    """The store is unreachable, timed out, throttled or had an internal error: retry later."""

    exit_code = 75  # EX_TEMPFAIL


class PermanentFailure(ObjectStoreError):
    """The store refused the request and retrying will not help (bucket missing, bad config)."""

    exit_code = 69  # EX_UNAVAILABLE


class AccessDenied(PermanentFailure):
    """The credentials do not allow the request."""

    exit_code = 77  # EX_NOPERM


class ChecksumMismatch(ObjectStoreError):
    """Bytes read from the store do not match the MD5 or size it recorded for the object."""

    exit_code = 65  # EX_DATAERR


class ObjectChanged(ChecksumMismatch):
    """The object is no longer the one expected (its ETag changed): not the copy we stored."""


class UploadNotVerified(ChecksumMismatch):
    """After an upload the store does not confirm the size and checksum of the local file."""


def is_temp_failure(exc: BaseException) -> bool:
    """True if retrying the operation that raised `exc` may succeed."""
    if isinstance(exc, TemporaryFailure):
        return True
    if isinstance(exc, ObjectStoreError):
        return False
    return isinstance(exc, ConnectionError | TimeoutError)


# --- options and retry ------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    deadline: float = 60.0  # seconds from the first attempt; no retry starts after it

    def delay(self, attempt: int) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class StoreOptions:
    """Tunables shared by all backends; `open_backend(url, **options)` fills them."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_pool_connections: int = 10  # botocore pool; size the caller's CapacityLimiter to it
    transfer_concurrency: int = 8  # threads (and connections) one large transfer uses
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB  # part size of uploads
    download_chunksize: int = 64 * MiB  # range size of parallel downloads
    retry_attempts: int = 5
    retry_base_delay: float = 0.2
    retry_max_delay: float = 5.0
    retry_deadline: float = 60.0

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> StoreOptions:
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise BadBackendURL(
                f"unknown backend option(s) {', '.join(unknown)}; valid: {', '.join(known)}"
            )
        converted: dict[str, Any] = {}
        for name, value in options.items():
            kind = float if known[name] == "float" else int
            try:
                converted[name] = kind(value)
            except (TypeError, ValueError):
                raise BadBackendURL(
                    f"backend option {name}={value!r} is not a {kind.__name__}"
                ) from None
            if converted[name] < 0 or (name != "retry_base_delay" and converted[name] == 0):
                raise BadBackendURL(f"backend option {name}={value!r} must be positive")
        if converted.get("transfer_concurrency", cls.transfer_concurrency) > converted.get(
            "max_pool_connections", cls.max_pool_connections
        ):
            raise BadBackendURL(
                "backend option transfer_concurrency must not exceed max_pool_connections"
            )
        return cls(**converted)

    @property
    def call_time_bound(self) -> float:
        """Seconds after which a small call (head, ping, a range read's next chunk) has
        failed at the latest when the endpoint is down or hung: retries stop starting at
        the deadline, and the last attempt may still connect and wait for an answer.
        Choose stage_timeout and friends above it (large transfers take longer)."""
        return self.retry_deadline + self.connect_timeout + self.read_timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.retry_attempts, self.retry_base_delay, self.retry_max_delay, self.retry_deadline
        )


P = ParamSpec("P")
R = TypeVar("R")


class Retryable(Protocol):
    """What @retry needs of the object whose method it wraps."""

    options: StoreOptions
    stats: StoreStatistics


StoreT = TypeVar("StoreT", bound=Retryable)


def retry(
    method: Callable[Concatenate[StoreT, P], R],
) -> Callable[Concatenate[StoreT, P], R]:
    """Retry a store method on temporary failures, following `self.options.retry_policy`.

    The last temporary failure is re-raised once attempts or the deadline are used up,
    so a dead endpoint fails in bounded time.
    """

    @functools.wraps(method)
    def wrapper(self: StoreT, *args: P.args, **kwargs: P.kwargs) -> R:
        policy = self.options.retry_policy
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if not is_temp_failure(exc):
                    raise
                self.stats.record_error(exc)
                delay = policy.delay(attempt)
                if attempt >= policy.attempts or time.monotonic() + delay - started > (
                    policy.deadline
                ):
                    raise
                log.info("%s (attempt %d, retrying in %.2f s)", exc, attempt, delay)
                self.stats.count("retries")
                time.sleep(delay)
                attempt += 1

    return wrapper


# --- results and statistics -------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object."""

    key: str
    size: int
    md5: str | None  # hex MD5 of the whole object, if the store recorded one
    mtime: float  # seconds since the epoch
    metadata: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None


@dataclass
class StoreStatistics:
    """Counters an operator reads in `hsmctl status`; updated from many threads."""

    counters: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + amount

    def record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.last_error = str(exc)
            self.last_error_at = time.time()
            self.counters["errors"] = self.counters.get("errors", 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.counters,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }


# --- readers ----------------------------------------------------------------------------


class ObjectReader(ABC):
    """A byte range of one object, streamed: iterate for chunks as they arrive, or read(n).

    `info` describes the whole object (size, md5 from its metadata); `start` and `end`
    (exclusive) the range being read.
    """

    chunk_size = 256 * 1024

    def __init__(self, info: ObjectInfo, start: int, end: int) -> None:
        self.info = info
        self.start = start
        self.end = end
        self.position = start

    @abstractmethod
    def _read(self, size: int) -> bytes:
        """Up to `size` bytes (fewer only at the end of the range)."""

    def read(self, size: int = -1) -> bytes:
        remaining = self.end - self.position
        size = remaining if size < 0 else min(size, remaining)
        if size <= 0:
            return b""
        data = self._read(size)
        self.position += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(self.chunk_size):
            yield chunk

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EmptyReader(ObjectReader):
    """A zero-length range: nothing to fetch."""

    def _read(self, size: int) -> bytes:
        return b""

    def close(self) -> None:
        pass


# --- the interface ----------------------------------------------------------------------


class ObjectStore(ABC):
    """A flat namespace of keys holding immutable byte strings with an MD5 each."""

    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        self.stats = StoreStatistics()

    @abstractmethod
    def describe(self) -> str:
        """The backend URL with every secret masked, for logs and `config show`."""

    @abstractmethod
    def ping(self) -> None:
        """Raise TemporaryFailure if unreachable, PermanentFailure if misconfigured."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size, md5, mtime and metadata of `key`, or None if it does not exist."""

    @abstractmethod
    def upload(
        self,
        key: str,
        local_path: Path,
        *,
        md5: str | None = None,
        parts: tuple[int, list[bytes]] | None = None,
        metadata: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """Store the file under `key`; return only once the store confirmed size and MD5.

        `parts`: (part size, MD5 digest of each part) if the caller hashed the file in
        parts of that size; an S3 store whose part size matches then verifies the ETag
        without reading the file again.
        `md5`: the file's MD5 if the caller already knows it (checked, not trusted; on
        S3 it saves hashing the file before the upload starts).
        Raises UploadNotVerified if the store does not confirm; the object may then
        exist but must not be trusted. The key is overwritten in place: to keep an older
        verified copy until the new one is confirmed, upload under a new key.
        `progress` is called from transfer threads, possibly several at once; after a
        retry its increments count the file again from the start.
        """

    @abstractmethod
    def open_range(self, key: str, start: int = 0, end: int | None = None) -> ObjectReader:
        """Stream bytes [start, end) of `key` (end None: to the end of the object)."""

    @abstractmethod
    def download(
        self,
        key: str,
        local_path: Path,
        *,
        start: int = 0,
        progress: ProgressCallback | None = None,
        known: ObjectInfo | None = None,
        on_data: DataCallback | None = None,
    ) -> ObjectInfo:
        """Fetch `key` into `local_path`, keeping its first `start` bytes (a resumed stage).

        `progress` receives increments of the contiguous prefix of `local_path` that is
        complete, so a reader may serve bytes below `start + sum(increments)` at once
        (called from the calling thread). `on_data` receives the bytes of that prefix
        themselves, from byte 0 on and in order, from the same pass that computes the MD5
        (called before `progress` reports them), so a caller can check them (block CRCs)
        without reading the file back; an exception it raises ends the download.
        A `start` beyond the local file's length is lowered to it; beyond the object's
        size, the download starts over. Failures writing `local_path` (ENOSPC, say)
        surface as OSError, not as store errors.
        `known`: what the caller already knows of the object (size, md5, etag from the
        upload); an S3 store then skips its HEAD request, which shortens the time to the
        first byte, and If-Match on the etag still refuses a different object.
        The whole file is verified against the object's MD5 (ChecksumMismatch otherwise,
        with the file left as it is for the caller to discard).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abstractmethod
    def abort_stale_uploads(self, started_before: float, *, dry_run: bool = False) -> int:
        """Remove what interrupted uploads left behind that began before `started_before`
        (seconds since the epoch): S3's unfinished multipart uploads under the prefix,
        which cost storage but are never listed as objects; file://'s temporary files.
        Returns how many were removed (with `dry_run`: found, and left alone). Call it
        only while no upload of this store's prefix can be running from before that time
        (hsmfs: at mount, and from fsck)."""

    @abstractmethod
    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order; md5 may be None (use head)."""

    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Store a small object (a catalog snapshot, say), verified like upload()."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """A small object's bytes, verified against its MD5; NoSuchObject if missing."""

    def statistics(self) -> dict[str, Any]:
        """Request, byte, retry and error counters plus the last error message."""
        return self.stats.snapshot()

    def close(self) -> None:  # noqa: B027 - backends without resources keep the default
        """Release connections and threads."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def check_key(key: str) -> str:
    """Reject keys that are not a relative path of plain names (both backends map keys
    to a tree, so `..`, empty components and NUL would escape or alias it)."""
    parts = key.split("/")
    if (
        not key
        or "\0" in key
        or len(key.encode()) > 1024
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ObjectStoreError(
            f"invalid object key {key!r}: use a relative path of non-empty names "
            "without '.' or '..', at most 1024 bytes"
        )
    return key


def verify_download(
    what: str, info: ObjectInfo, size: int, md5: str, local_path: Path | None
) -> None:
    """Raise ChecksumMismatch unless `size` and `md5` match what the store recorded."""
    into = f" into {local_path}" if local_path else ""
    if size != info.size:
        raise ChecksumMismatch(
            f"{what}: fetched {size} bytes{into}, the store says {info.size}; "
            "fetch it again or mark the copy lost"
        )
    if info.md5 is not None and md5 != info.md5:
        raise ChecksumMismatch(
            f"{what}: MD5 of the bytes fetched{into} is {md5}, the store recorded "
            f"{info.md5}; the stored copy is damaged: mark it lost and archive again"
        )
