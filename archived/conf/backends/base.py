"""The storage backend interface: whole snapshots of shard bytes, and exclusive write
transactions across processes. Shards: one per device (keyed by name), one for the rest ('')."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """A committed state: an opaque generation token and canonical JSON bytes per shard."""

    generation: Hashable
    shards: dict[str, bytes]


class BackendTransaction(ABC):
    """An exclusive write transaction; `snapshot` is the state it started from."""

    snapshot: Snapshot

    @abstractmethod
    def commit(self, puts: dict[str, bytes | None]) -> Hashable:
        """Write the shards (None deletes one), make them durable; the new generation."""


class Backend(ABC):
    uri: str
    # Whether stored device nodes are already in canonical (validated, defaults-filtered) form.
    stores_normalized: bool

    @abstractmethod
    def read(self) -> Snapshot: ...

    @abstractmethod
    def generation(self) -> Hashable:
        """A token that changes with every commit; cheap enough to poll."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[BackendTransaction]:
        """Exclusive across threads and processes; aborts unless commit() was called."""

    @abstractmethod
    def close(self) -> None: ...
