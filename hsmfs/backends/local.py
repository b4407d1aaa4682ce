"""file:///DIR: a plain directory as the object store (a second disk or a NAS mount).

Object `a/b/c` is the file `DIR/a/b/c` holding exactly the object's bytes, so the tree is
readable without hsmfs. MD5 and metadata live in one extended attribute of that file,
set on the temporary file before it is renamed into place: a crash leaves either the old
object or the new one with matching metadata, never a half object under the final name.
Temporary files live in `DIR/.hsm-tmp/` and are never listed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from .common import (
    MD5_METADATA_KEY,
    AccessDenied,
    DataCallback,
    NoSuchObject,
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

XATTR = "user.hsmfs.object"
TMP_DIR = ".hsm-tmp"
COPY_CHUNK = 1024 * 1024
STALE_TEMP_AGE = 3600.0  # seconds; older temporary files are leftovers of a crash

TEMPORARY_ERRNOS = {
    errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.ETIMEDOUT, errno.EHOSTDOWN,
    errno.EHOSTUNREACH, errno.ENOTCONN, errno.ESTALE, errno.EAGAIN, errno.EINTR,
}  # fmt: skip


class LocalStore(ObjectStore):
    """Objects as files below one directory."""

    def __init__(self, root: Path, options: StoreOptions | None = None) -> None:
        super().__init__(options or StoreOptions())
        self.root = root
        self.tmp_dir = root / TMP_DIR

    def describe(self) -> str:
        return self.root.as_uri()

    # --- paths and errors ---------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] == TMP_DIR:
            raise ObjectStoreError(f"invalid object key {key!r}: {TMP_DIR}/ is reserved")
        return self.root / key

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate OSError into the store's exceptions, naming `what`."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.ENOENT:
                raise NoSuchObject(f"{what}: no such object in {self.root}") from exc
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise AccessDenied(
                    f"{what}: {reason}; make {self.root} writable for hsmfs"
                ) from exc
            if exc.errno == errno.ENOTSUP:
                raise PermanentFailure(
                    f"{self.root}: the file system does not support user extended "
                    "attributes; put the object store on ext4, xfs or a NAS that does"
                ) from exc
            if exc.errno in TEMPORARY_ERRNOS:
                raise TemporaryFailure(f"{what}: {reason}; will retry") from exc
            raise ObjectStoreError(f"{what}: {reason}") from exc

    def _info(self, key: str, fd: int) -> ObjectInfo:
        st = os.fstat(fd)
        try:
            recorded = json.loads(os.getxattr(fd, XATTR))
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            recorded = {}  # a file put there by someone else: no md5 known
        metadata = dict(recorded.get("metadata", {}))
        return ObjectInfo(
            key=key,
            size=st.st_size,
            md5=metadata.get(MD5_METADATA_KEY),
            mtime=st.st_mtime,
            metadata=metadata,
        )

    # --- writing ------------------------------------------------------------------------

    def _make_tmp_dir(self) -> None:
        try:
            self.tmp_dir.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise PermanentFailure(
                f"{self.root}: object store directory does not exist; create it or fix the "
                "backend URL"
            ) from None

    def _remove_stale_temporaries(
        self, started_before: float | None = None, *, dry_run: bool = False
    ) -> int:
        cutoff = time.time() - STALE_TEMP_AGE if started_before is None else started_before
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.tmp_dir):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        if not dry_run:
                            os.unlink(entry.path)
                        removed += 1
        return removed

    def abort_stale_uploads(self, started_before: float, *, dry_run: bool = False) -> int:
        with self._errors(str(self.tmp_dir)):
            return self._remove_stale_temporaries(started_before, dry_run=dry_run)

    def _store(
        self,
        key: str,
        source: BinaryIO,
        metadata: Mapping[str, str] | None,
        progress: ProgressCallback | None,
        expected_md5: str | None = None,
    ) -> ObjectInfo:
        """Copy `source` to a temporary file, hashing on the way, then rename it to `key`."""
        final = self._path(key)
        what = f"{self.describe()}/{key}"
        with self._errors(what):
            self._make_tmp_dir()
            fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
            try:
                md5 = hashlib.md5()
                written = 0
                with os.fdopen(fd, "wb", closefd=False) as out:
                    while chunk := source.read(COPY_CHUNK):
                        md5.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                        if progress:
                            progress(len(chunk))
                os.fsync(fd)
                if os.fstat(fd).st_size != written:
                    raise UploadNotVerified(
                        f"{what}: stored {os.fstat(fd).st_size} bytes, wrote {written}; "
                        "check the file system of the object store"
                    )
                if expected_md5 is not None and md5.hexdigest() != expected_md5:
                    raise UploadNotVerified(
                        f"{what}: the bytes read have MD5 {md5.hexdigest()}, not "
                        f"{expected_md5}; the file changed: archive it again"
                    )
                recorded = {**(metadata or {}), MD5_METADATA_KEY: md5.hexdigest()}
                os.setxattr(fd, XATTR, json.dumps({"metadata": recorded}).encode())
                info = self._info(key, fd)
                self._rename_into_place(tmp_name, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
                raise
            finally:
                os.close(fd)
        self.stats.count("uploads")
        self.stats.count("bytes_up", written)
        return info

    def _rename_into_place(self, tmp_name: str, final: Path) -> None:
        # delete() prunes empty directories, so a parent may vanish between mkdir and
        # rename: try again a few times before giving up.
        for attempt in range(3):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp_name, final)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

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
        try:
            source = open(local_path, "rb")
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {local_path} to upload: {exc.strerror}") from exc
        with source:
            return self._store(key, source, metadata, progress, expected_md5=md5)

    @retry
    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        return self._store(key, io.BytesIO(data), metadata, None)

    @retry
    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._errors(f"{self.describe()}/{key}"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            self.stats.count("deletes")
            parent = path.parent
            while parent != self.root:
                try:
                    parent.rmdir()
                except OSError:
                    break  # not empty (or just refilled): keep it
                parent = parent.parent

    # --- reading ------------------------------------------------------------------------

    @retry
    def ping(self) -> None:
        with self._errors(str(self.root)):
            self._make_tmp_dir()
            fd, tmp_name = tempfile.mkstemp(dir=self.tmp_dir, prefix="ping-")
            try:
                os.setxattr(fd, XATTR, b"{}")
            finally:
                os.close(fd)
                os.unlink(tmp_name)
            self._remove_stale_temporaries()

    @retry
    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        with self._errors(f"{self.describe()}/{key}"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                return self._info(key, fd)
            finally:
                os.close(fd)

    @retry
    def open_range(self, key: str, start: int = 0, end: int | None = None) -> ObjectReader:
        path = self._path(key)
        with self._errors(f"{self.describe()}/{key}"):
            handle = open(path, "rb", buffering=0)
            try:
                info = self._info(key, handle.fileno())
                stop = info.size if end is None else min(end, info.size)
                handle.seek(start)
            except BaseException:
                handle.close()
                raise
        self.stats.count("range_reads")
        return LocalReader(self, handle, info, start, max(start, stop))

    @retry
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
        # Errors of the object are the store's; errors of local_path (the caller's cache
        # file, ENOSPC say) stay OSError for the caller to handle.
        what = f"{self.describe()}/{key}"
        with self._errors(what):
            source = open(self._path(key), "rb")
        with source, open(local_path, "a+b") as out:
            with self._errors(what):
                info = self._info(key, source.fileno())
            if start > info.size:
                start = 0  # the partial file is not a prefix of this object
            md5 = hashlib.md5()
            out.seek(0)
            remaining = start
            while remaining and (chunk := out.read(min(COPY_CHUNK, remaining))):
                md5.update(chunk)
                if on_data is not None:
                    on_data(memoryview(chunk))
                remaining -= len(chunk)
            start -= remaining  # the file was shorter than claimed: resume there
            out.truncate(start)  # append mode: every write goes to the end, i.e. here
            received = 0
            with self._errors(what):
                source.seek(start)
            while True:
                with self._errors(what):
                    chunk = source.read(COPY_CHUNK)
                if not chunk:
                    break
                md5.update(chunk)
                out.write(chunk)
                received += len(chunk)
                if on_data is not None or progress is not None:
                    out.flush()  # what they are told of is in the file
                if on_data is not None:
                    on_data(memoryview(chunk))
                if progress:
                    progress(len(chunk))
        self.stats.count("downloads")
        self.stats.count("bytes_down", received)
        verify_download(what, info, start + received, md5.hexdigest(), local_path)
        return info

    @retry
    def get_bytes(self, key: str) -> bytes:
        what = f"{self.describe()}/{key}"
        with self._errors(what), open(self._path(key), "rb") as source:
            info = self._info(key, source.fileno())
            data = source.read()
        verify_download(what, info, len(data), hashlib.md5(data).hexdigest(), None)
        self.stats.count("bytes_down", len(data))
        return data

    @retry
    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        directory = prefix.rpartition("/")[0]
        base = self._path(directory) if directory else self.root  # no escaping the root
        infos: list[ObjectInfo] = []
        with self._errors(f"{self.describe()}/{prefix}"):
            for dirpath, dirnames, filenames in os.walk(base):
                if Path(dirpath) == self.root:
                    dirnames[:] = [d for d in dirnames if d != TMP_DIR]
                for name in filenames:
                    path = Path(dirpath, name)
                    key = path.relative_to(self.root).as_posix()
                    if not key.startswith(prefix):
                        continue
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except FileNotFoundError:
                        continue  # deleted while listing
                    try:
                        infos.append(self._info(key, fd))
                    finally:
                        os.close(fd)
        self.stats.count("lists")
        return iter(sorted(infos, key=lambda info: info.key.encode()))


class LocalReader(ObjectReader):
    """A range of one object file."""

    def __init__(
        self, store: LocalStore, handle: BinaryIO, info: ObjectInfo, start: int, end: int
    ) -> None:
        super().__init__(info, start, end)
        self._store = store
        self._handle = handle

    def _read(self, size: int) -> bytes:
        with self._store._errors(f"{self._store.describe()}/{self.info.key}"):
            data = self._handle.read(size)
        self._store.stats.count("bytes_down", len(data))
        return data

    def close(self) -> None:
        self._handle.close()
