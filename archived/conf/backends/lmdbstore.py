"""lmdb:///DIR - the default backend. LMDB gives ACID transactions, one writer at a time
across processes (its robust writer mutex survives a writer killed mid-transaction), and
readers that always see a committed snapshot."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import lmdb

from archived.conf.backends.base import Backend, BackendTransaction, Snapshot
from archived.conf.errors import StoreUnavailableError

_GENERATION = b"g"
_REST = b"r"
_DEVICE = b"d/"
MAP_SIZE = 1 << 30  # sparse; the configuration of a large site is a few MB

# LMDB must not open the same environment twice in one process: share it, counted.
_envs: dict[str, tuple[lmdb.Environment, int]] = {}
_envs_lock = threading.Lock()


def _acquire(path: str, uri: str) -> lmdb.Environment:
    with _envs_lock:
        if path in _envs:
            env, count = _envs[path]
            _envs[path] = (env, count + 1)
            return env
        try:
            os.makedirs(path, exist_ok=True)
            env = lmdb.open(path, map_size=MAP_SIZE, max_dbs=0, subdir=True)
            env.reader_check()  # free reader slots of processes that died
        except (OSError, lmdb.Error) as exc:
            raise StoreUnavailableError(
                f"{exc}; check the directory and its permissions", uri=uri
            ) from None
        _envs[path] = (env, 1)
        return env


def _release(path: str) -> None:
    with _envs_lock:
        env, count = _envs[path]
        if count == 1:
            del _envs[path]
            env.close()
        else:
            _envs[path] = (env, count - 1)


def _key(shard: str) -> bytes:
    return _DEVICE + shard.encode() if shard else _REST


def _snapshot(txn: lmdb.Transaction) -> Snapshot:
    raw_gen = txn.get(_GENERATION)
    shards: dict[str, bytes] = {}
    rest = txn.get(_REST)
    if rest is not None:
        shards[""] = bytes(rest)
    cursor = txn.cursor()
    if cursor.set_range(_DEVICE):
        for raw_key, value in cursor:
            key = bytes(raw_key)
            if not key.startswith(_DEVICE):
                break
            shards[key[len(_DEVICE) :].decode()] = bytes(value)
    return Snapshot(int.from_bytes(raw_gen) if raw_gen else 0, shards)


class _Transaction(BackendTransaction):
    def __init__(self, txn: lmdb.Transaction) -> None:
        self._txn = txn
        self.snapshot = _snapshot(txn)
        self.committed = False

    def commit(self, puts: dict[str, bytes | None]) -> int:
        for shard, value in puts.items():
            if value is None:
                self._txn.delete(_key(shard))
            else:
                self._txn.put(_key(shard), value)
        generation = int(self.snapshot.generation) + 1  # type: ignore[call-overload]
        self._txn.put(_GENERATION, generation.to_bytes(8))
        self._txn.commit()
        self.committed = True
        return generation


class LmdbBackend(Backend):
    stores_normalized = True

    def __init__(self, path: str, uri: str) -> None:
        self.uri = uri
        self._path = os.path.realpath(path)
        self._env = _acquire(self._path, uri)
        self._closed = False

    def read(self) -> Snapshot:
        with self._env.begin() as txn:
            return _snapshot(txn)

    def generation(self) -> int:
        with self._env.begin() as txn:
            raw = txn.get(_GENERATION)
        return int.from_bytes(raw) if raw else 0

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        txn = self._env.begin(write=True)
        wrapper: _Transaction | None = None
        try:
            wrapper = _Transaction(txn)
            yield wrapper
        finally:
            if wrapper is None or not wrapper.committed:
                txn.abort()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._path)
