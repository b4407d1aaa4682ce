"""json:///FILE - the whole configuration in one JSON file, for development and hand
editing. Writers hold an flock on FILE.lock; a commit replaces the file atomically
(write, fsync, rename), so readers see either the old or the new file."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from archived.conf.backends.base import Backend, BackendTransaction, Snapshot
from archived.conf.errors import StoreUnavailableError
from archived.conf.nodes import assemble, canonical, split


class _Transaction(BackendTransaction):
    def __init__(self, backend: JsonFileBackend) -> None:
        self._backend = backend
        self.snapshot = backend.read()
        self.committed = False

    def commit(self, puts: dict[str, bytes | None]) -> tuple[int, int, int] | None:
        shards = dict(self.snapshot.shards)
        for shard, value in puts.items():
            if value is None:
                shards.pop(shard, None)
            else:
                shards[shard] = value
        devices = {name: json.loads(shards[name]) for name in sorted(shards) if name}
        rest = json.loads(shards[""]) if "" in shards else {}
        self._backend._write(assemble(devices, rest))
        self.committed = True
        return self._backend.generation()


class JsonFileBackend(Backend):
    stores_normalized = False

    def __init__(self, path: str, uri: str) -> None:
        self.uri = uri
        self._path = os.path.abspath(path)
        self._lock_path = self._path + ".lock"
        self._thread_lock = threading.Lock()  # flock does not exclude threads of one process
        try:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"{exc}", uri=uri) from None

    def generation(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def read(self) -> Snapshot:
        for _ in range(5):  # a concurrent rename between stat and open: try again
            generation = self.generation()
            try:
                with open(self._path, encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                return Snapshot(None, {})
            if self.generation() == generation:
                break
        try:
            tree = json.loads(text)
            devices, rest = split(tree)
        except (json.JSONDecodeError, Exception) as exc:
            raise StoreUnavailableError(
                f"{exc}; fix the file by hand or restore it", uri=self.uri
            ) from None
        shards = {name: canonical(node) for name, node in devices.items()}
        if rest:
            shards[""] = canonical(rest)
        return Snapshot(generation, shards)

    def _write(self, tree: dict[str, Any]) -> None:
        directory = os.path.dirname(self._path)
        fd, tmp = tempfile.mkstemp(prefix=".conf-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(tree, f, indent=2, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        with self._thread_lock, open(self._lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield _Transaction(self)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def close(self) -> None:
        pass
