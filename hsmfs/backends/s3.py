"""s3://BUCKET/PREFIX through boto3: verified multipart uploads, parallel ranged downloads.

Upload verification: S3 takes metadata before the data, so the file's MD5 must be known
when the upload starts; unless the caller passes it, the file is hashed first (whole
file and, for multipart, every part of the size s3transfer will use, on two threads).
With the MD5 given, the same hashing runs alongside the upload. Afterwards HEAD must
report the file's size, the MD5 in the metadata, and the ETag S3 computed from the bytes
it received (the MD5 for a single PUT; the MD5 of the part MD5s plus "-N" for N parts).
Any difference raises UploadNotVerified.

Downloads fetch `download_chunksize` ranges in parallel, each with If-Match on the ETag
seen first, and hash the contiguous prefix as it grows (see ranges.py).

botocore's own retries are off: @retry (common.py) is the only retry layer, so the
configured attempts and deadline bound how long an unreachable endpoint can stall a call.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.config
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from .common import (
    MD5_METADATA_KEY,
    AccessDenied,
    DataCallback,
    EmptyReader,
    NoSuchObject,
    ObjectChanged,
    ObjectInfo,
    ObjectReader,
    ObjectStore,
    ObjectStoreError,
    PermanentFailure,
    ProgressCallback,
    StoreOptions,
    TemporaryFailure,
    UploadNotVerified,
    check_key,
    retry,
    verify_download,
)
from .digest import FileDigest, digest_file, digest_from_parts
from .ranges import RangeTracker, hash_region

STREAM_CHUNK = 1024 * 1024
THROTTLING_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "TooManyRequests", "RequestTimeout", "InternalError", "ServiceUnavailable",
}  # fmt: skip
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")


def mask_url(url: str) -> str:
    """`url` without user name and password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class S3Store(ObjectStore):
    """Objects under `prefix` in one S3 bucket."""

    list_page_size = 1000  # keys per ListObjectsV2 request (S3's maximum)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        addressing: str = "auto",
        verify: bool | str = True,
        profile: str | None = None,
        options: StoreOptions | None = None,
    ) -> None:
        super().__init__(options or StoreOptions())
        opts = self.options
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.region = region
        self.addressing = addressing
        self.verify = verify
        try:
            session = boto3.session.Session(profile_name=profile)
        except botocore.exceptions.ProfileNotFound:
            raise PermanentFailure(
                f"AWS profile {profile!r} not found; check ~/.aws/config or the backend URL"
            ) from None
        config = botocore.config.Config(
            region_name=region,
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            max_pool_connections=opts.max_pool_connections,
            retries={"mode": "standard", "total_max_attempts": 1},
            s3={"addressing_style": addressing},
        )
        self.client: Any = session.client("s3", endpoint_url=endpoint, verify=verify, config=config)
        self.transfer_config = TransferConfig(
            multipart_threshold=opts.multipart_threshold,
            multipart_chunksize=opts.multipart_chunksize,
            max_concurrency=opts.transfer_concurrency,
            preferred_transfer_client="classic",  # the ETag math relies on its part sizes
        )
        self._downloaders = ThreadPoolExecutor(
            opts.max_pool_connections, thread_name_prefix="s3-range"
        )

    def describe(self) -> str:
        query = [f"addressing={self.addressing}", f"verify={str(self.verify).lower()}"]
        if self.endpoint:
            query.insert(0, f"endpoint={mask_url(self.endpoint)}")
        if self.region:
            query.insert(1, f"region={self.region}")
        return f"s3://{self.bucket}/{self.prefix}?{'&'.join(query)}"

    def close(self) -> None:
        self._downloaders.shutdown(wait=True)
        self.client.close()

    # --- keys and errors ----------------------------------------------------------------

    def _full_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _name(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key or ''}"

    def _translate(self, exc: BaseException, key: str | None) -> BaseException:
        """The store exception for a boto3/botocore error about `key` (None: the bucket)."""
        what = self._name(key)
        if isinstance(exc, ObjectStoreError):
            return exc
        if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
            return self._translate(exc.__context__, key)
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            message = error.get("Message") or code
            if code == "NoSuchBucket":
                return PermanentFailure(
                    f"{what}: bucket {self.bucket} does not exist; create it or fix the backend URL"
                )
            if code in NOT_FOUND_CODES:
                return NoSuchObject(f"{what}: no such object")
            if code in DENIED_CODES or status == 403:
                return AccessDenied(
                    f"{what}: access denied ({code}); check the AWS credentials "
                    "(environment, profile or credentials file) and the bucket policy"
                )
            if code == "PreconditionFailed":
                return ObjectChanged(
                    f"{what}: the object was replaced while it was being read (ETag changed); "
                    "read it again"
                )
            if status >= 500 or status == 429 or code in THROTTLING_CODES:
                return TemporaryFailure(f"{what}: {code} (HTTP {status}): {message}; will retry")
            return ObjectStoreError(f"{what}: {code} (HTTP {status}): {message}")
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return AccessDenied(
                f"{what}: no usable AWS credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a credentials file"
            )
        if isinstance(exc, botocore.exceptions.SSLError):
            return PermanentFailure(
                f"{what}: TLS failure ({exc}); check the endpoint's certificate or set "
                "verify=CA_BUNDLE in the backend URL"
            )
        if isinstance(
            exc,
            botocore.exceptions.IncompleteReadError
            | botocore.exceptions.ResponseStreamingError
            | botocore.exceptions.ConnectionClosedError,
        ):
            return TemporaryFailure(
                f"{what}: the connection to the endpoint dropped ({type(exc).__name__}); will retry"
            )
        if isinstance(
            exc,
            botocore.exceptions.HTTPClientError
            | botocore.exceptions.ConnectionError
            | ConnectionError
            | TimeoutError,
        ):
            endpoint = mask_url(self.endpoint) if self.endpoint else "S3"
            return TemporaryFailure(
                f"{what}: endpoint {endpoint} unreachable or timed out "
                f"({type(exc).__name__}); check the network and the endpoint"
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return ObjectStoreError(f"{what}: {exc}")
        return exc

    @contextlib.contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        """Raise boto3/botocore errors about `key` as store errors; anything else (an
        OSError of a local file, say) as it is."""
        try:
            yield
        except Exception as exc:
            translated = self._translate(exc, key)
            if translated is exc:
                raise
            raise translated from exc

    def _call(self, key: str | None, operation: str, **params: Any) -> Any:
        """One S3 request, with errors translated."""
        self.stats.count("requests")
        with self._errors(key):
            return getattr(self.client, operation)(Bucket=self.bucket, **params)

    def _info(self, key: str, response: Mapping[str, Any], size: int) -> ObjectInfo:
        metadata = dict(response.get("Metadata", {}))
        return ObjectInfo(
            key=key,
            size=size,
            md5=metadata.get(MD5_METADATA_KEY),
            mtime=response["LastModified"].timestamp(),
            metadata=metadata,
            etag=str(response.get("ETag", "")).strip('"') or None,
        )

    # --- small operations ---------------------------------------------------------------

    @retry
    def ping(self) -> None:
        with self._errors(None):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
                    raise PermanentFailure(
                        f"{self._name(None)}: bucket {self.bucket} does not exist; create it "
                        "or fix the backend URL"
                    ) from exc
                raise

    @retry
    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self._call(key, "head_object", Key=self._full_key(key))
        except NoSuchObject:
            return None
        return self._info(key, response, response["ContentLength"])

    @retry
    def delete(self, key: str) -> None:
        self._call(key, "delete_object", Key=self._full_key(key))
        self.stats.count("deletes")

    @retry
    def _uploads_page(self, key_marker: str | None, id_marker: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"Prefix": self.prefix}
        if key_marker:
            params["KeyMarker"] = key_marker
            params["UploadIdMarker"] = id_marker or ""
        return self._call(None, "list_multipart_uploads", **params)

    @retry
    def _abort_upload(self, full_key: str, upload_id: str) -> None:
        try:
            key = full_key[len(self.prefix) :]
            self._call(key, "abort_multipart_upload", Key=full_key, UploadId=upload_id)
        except ObjectStoreError as exc:
            if "NoSuchUpload" not in str(exc):  # finished or aborted meanwhile
                raise

    def abort_stale_uploads(self, started_before: float, *, dry_run: bool = False) -> int:
        aborted = 0
        key_marker: str | None = None
        id_marker: str | None = None
        while True:
            page = self._uploads_page(key_marker, id_marker)
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < started_before:
                    if not dry_run:
                        self._abort_upload(upload["Key"], upload["UploadId"])
                    aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            key_marker = page.get("NextKeyMarker")
            id_marker = page.get("NextUploadIdMarker")
            if not key_marker:
                return aborted

    @retry
    def _list_page(self, prefix: str, token: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"Prefix": self.prefix + prefix, "MaxKeys": self.list_page_size}
        if token:
            params["ContinuationToken"] = token
        return self._call(prefix, "list_objects_v2", **params)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            page = self._list_page(prefix, token)
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"][len(self.prefix) :],
                    size=item["Size"],
                    md5=None,
                    mtime=item["LastModified"].timestamp(),
                    etag=str(item.get("ETag", "")).strip('"') or None,
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    @retry
    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        digest = hashlib.md5(data)
        self._call(
            key,
            "put_object",
            Key=self._full_key(key),
            Body=data,
            ContentMD5=base64.b64encode(digest.digest()).decode(),
            Metadata={**(metadata or {}), MD5_METADATA_KEY: digest.hexdigest()},
        )
        self.stats.count("bytes_up", len(data))
        return self._verify_upload(
            key, FileDigest(len(data), digest.hexdigest(), digest.hexdigest())
        )

    @retry
    def get_bytes(self, key: str) -> bytes:
        response = self._call(key, "get_object", Key=self._full_key(key))
        with self._errors(key):
            data = response["Body"].read()
        info = self._info(key, response, response["ContentLength"])
        verify_download(self._name(key), info, len(data), hashlib.md5(data).hexdigest(), None)
        self.stats.count("bytes_down", len(data))
        return data

    # --- upload -------------------------------------------------------------------------

    def _part_size(self, size: int) -> int | None:
        """The part size s3transfer will use for a file of `size` bytes (None: one PUT)."""
        if size < self.transfer_config.multipart_threshold:
            return None
        return ChunksizeAdjuster().adjust_chunksize(self.transfer_config.multipart_chunksize, size)

    @retry
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
        """See ObjectStore.upload. S3 takes metadata before the data, so without `md5` the
        file is hashed first; with it, hashing runs alongside the upload (and a single
        PUT needs none: S3's ETag is the MD5 of what it received)."""
        with ThreadPoolExecutor(1, thread_name_prefix="s3-digest") as background:
            try:
                size = os.stat(local_path).st_size
                part_size = self._part_size(size)
                if md5 is None:
                    digest: FileDigest | Future[FileDigest] = digest_file(local_path, part_size)
                elif part_size is None:
                    digest = FileDigest(size, md5, md5)
                elif parts is not None and parts[0] == part_size:
                    # hashed while written: the ETag check below proves what S3 received
                    digest = digest_from_parts(size, md5, part_size, parts[1])
                else:
                    digest = background.submit(digest_file, local_path, part_size)
            except OSError as exc:
                raise ObjectStoreError(
                    f"cannot read {local_path} to upload: {exc.strerror}"
                ) from exc
            claimed = md5 or cast(FileDigest, digest).md5
            self.stats.count("requests")
            with self._errors(key):
                self.client.upload_file(
                    str(local_path),
                    self.bucket,
                    self._full_key(key),
                    ExtraArgs={"Metadata": {**(metadata or {}), MD5_METADATA_KEY: claimed}},
                    Config=self.transfer_config,
                    Callback=progress,
                )
            try:
                read = digest.result() if isinstance(digest, Future) else digest
            except OSError as exc:
                raise ObjectStoreError(f"cannot read {local_path}: {exc.strerror}") from exc
        if read.md5 != claimed:
            raise UploadNotVerified(
                f"{self._name(key)}: {local_path} has MD5 {read.md5}, not {claimed}; the "
                "file changed since it was hashed: archive it again"
            )
        self.stats.count("uploads")
        self.stats.count("bytes_up", size)
        return self._verify_upload(key, read, local_path)

    def _verify_upload(
        self, key: str, digest: FileDigest, local_path: Path | None = None
    ) -> ObjectInfo:
        response = self._call(key, "head_object", Key=self._full_key(key))
        info = self._info(key, response, response["ContentLength"])
        source = f" from {local_path}" if local_path else ""
        problems = []
        if info.size != digest.size:
            problems.append(f"size {info.size} != {digest.size}")
        if info.etag != digest.etag:
            problems.append(f"ETag {info.etag} != expected {digest.etag}")
        if info.md5 != digest.md5:
            problems.append(f"md5 metadata {info.md5} != {digest.md5}")
        if problems:
            raise UploadNotVerified(
                f"{self._name(key)}: upload{source} not confirmed ({'; '.join(problems)}); "
                "the file may have changed during the upload: archive it again"
            )
        return info

    # --- reading ------------------------------------------------------------------------

    def _get(self, key: str, start: int, end: int | None, etag: str | None = None) -> Any:
        params: dict[str, Any] = {"Key": self._full_key(key)}
        if start or end is not None:
            params["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if etag:
            params["IfMatch"] = f'"{etag}"'
        return self._call(key, "get_object", **params)

    @retry
    def open_range(self, key: str, start: int = 0, end: int | None = None) -> ObjectReader:
        if end is not None and end <= start:
            return self._empty_reader(key, start)
        try:
            response = self._get(key, start, end)
        except ObjectStoreError as exc:
            if isinstance(exc.__cause__, botocore.exceptions.ClientError) and (
                exc.__cause__.response.get("Error", {}).get("Code") == "InvalidRange"
            ):
                return self._empty_reader(key, start)  # start is at or past the end
            raise
        total = response["ContentLength"]
        if match := CONTENT_RANGE.match(response.get("ContentRange", "")):
            total = int(match.group(1))
        info = self._info(key, response, total)
        self.stats.count("range_reads")
        return S3Reader(self, response, info, start, start + response["ContentLength"])

    def _empty_reader(self, key: str, start: int) -> ObjectReader:
        info = self.head(key)
        if info is None:
            raise NoSuchObject(f"{self._name(key)}: no such object")
        return EmptyReader(info, start, start)

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
        info = known if known is not None and known.etag else self.head(key)
        if info is None:
            raise NoSuchObject(f"{self._name(key)}: no such object")
        md5 = hashlib.md5()
        fd = os.open(local_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            start = min(start, os.fstat(fd).st_size)
            if start > info.size:
                start = 0  # the partial file is not a prefix of this object
            tracker = RangeTracker(start, info.size, self.options.download_chunksize)
            running = self._start_ranges(key, info, fd, tracker)
            try:
                hash_region(fd, 0, start, md5, on_data)  # while the first ranges arrive
                hashed = start
                while hashed < info.size:
                    available = tracker.wait_beyond(hashed)
                    hash_region(fd, hashed, available, md5, on_data)
                    if progress:
                        progress(available - hashed)
                    hashed = available
            finally:
                tracker.cancelled.set()
                wait(running())  # no thread may write to fd once it is closed
            os.ftruncate(fd, info.size)
        finally:
            os.close(fd)
        self.stats.count("downloads")
        verify_download(self._name(key), info, info.size, md5.hexdigest(), local_path)
        return info

    def _start_ranges(
        self, key: str, info: ObjectInfo, fd: int, tracker: RangeTracker
    ) -> Callable[[], list[Future[None]]]:
        """Fetch the tracker's ranges, `transfer_concurrency` at a time, on the shared pool;
        return a function listing the futures started so far."""
        pending = deque(range(len(tracker.ranges)))
        started: list[Future[None]] = []
        lock = threading.Lock()

        def launch() -> None:
            with lock:
                if not pending or tracker.cancelled.is_set():
                    return
                index = pending.popleft()
                future = self._downloaders.submit(self._fetch_range, key, info, fd, tracker, index)
                started.append(future)
            future.add_done_callback(finished)

        def finished(future: Future[None]) -> None:
            error = None if future.cancelled() else future.exception()
            if error is not None:
                tracker.fail(error)
            else:
                launch()

        for _ in range(self.options.transfer_concurrency):
            launch()

        def running() -> list[Future[None]]:
            with lock:
                return list(started)

        return running

    @retry
    def _fetch_range(
        self, key: str, info: ObjectInfo, fd: int, tracker: RangeTracker, index: int
    ) -> None:
        """Write range `index` of the object version `info` into `fd`, resuming where an
        earlier attempt stopped."""
        offset, stop = tracker.position(index), tracker.end(index)
        if offset >= stop:
            return
        response = self._get(key, offset, stop, info.etag)
        body = response["Body"]
        try:
            while offset < stop and not tracker.cancelled.is_set():
                with self._errors(key):
                    data = body.read(min(STREAM_CHUNK, stop - offset))
                if not data:
                    raise TemporaryFailure(
                        f"{self._name(key)}: connection closed at byte {offset}; will retry"
                    )
                written = 0
                while written < len(data):
                    written += os.pwrite(fd, data[written:], offset + written)
                offset += len(data)
                tracker.advance(index, len(data))
                self.stats.count("bytes_down", len(data))
        finally:
            body.close()


class S3Reader(ObjectReader):
    """A ranged GET streamed from the socket; after a dropped connection it asks again
    from its position (If-Match on the ETag, so it never mixes two object versions)."""

    def __init__(
        self, store: S3Store, response: Mapping[str, Any], info: ObjectInfo, start: int, end: int
    ) -> None:
        super().__init__(info, start, end)
        self._store = store
        self._body: Any = response["Body"]
        self.options = store.options  # for @retry
        self.stats = store.stats

    @retry
    def _read(self, size: int) -> bytes:
        key = self.info.key
        if self._body is None:
            self._body = self._store._get(key, self.position, self.end, self.info.etag)["Body"]
        try:
            with self._store._errors(key):
                data = self._body.read(size)
            if not data:
                raise TemporaryFailure(
                    f"{self._store._name(key)}: connection closed at byte {self.position}; "
                    "will retry"
                )
        except Exception:
            self.close()  # the next attempt asks again from self.position
            raise
        self.stats.count("bytes_down", len(data))
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
