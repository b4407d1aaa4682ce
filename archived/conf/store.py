"""ConfigStore: the typed and node-level API over a storage backend, with the in-memory
view, transactions (batch), optimistic locking and change notifications."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from archived.conf.backends import open_backend, resolve_uri
from archived.conf.backends.base import Backend
from archived.conf.defaults import carry_secrets, keep_unknown_extensions, to_node
from archived.conf.errors import NotFoundError, ReadOnlyConfigError
from archived.conf.integrity import check_all
from archived.conf.model import (
    DEFAULT_DEVICE_NAME,
    ApplicationEntity,
    Device,
    default_archive_device,
)
from archived.conf.nodes import (
    DEVICES_PATH,
    assemble,
    canonical,
    device_path,
    get_at,
    remove_at,
    set_at,
    split,
    split_path,
)
from archived.conf.notify import (
    DEFAULT_POLL_INTERVAL,
    Callback,
    ChangeEvent,
    Subscribers,
    Subscription,
    Watcher,
)
from archived.conf.olock import loaded_hashes, merge
from archived.conf.view import DeviceEntry, State, build_state, changed_paths, entry_from_node

T = TypeVar("T")


class _Transaction:
    """The working state of one write transaction (what a batch sees of its own writes)."""

    def __init__(self, base: State) -> None:
        self.devices: dict[str, DeviceEntry] = dict(base.devices)
        self.rest = base.rest
        self.puts: dict[str, bytes | None] = {}

    def put_device(self, name: str, node: dict[str, Any] | None) -> None:
        stored = self.devices.get(name)
        if node is None:
            if stored is not None:
                del self.devices[name]
                self.puts[name] = None
            return
        entry = entry_from_node(name, node)
        if stored is not None:
            carry_secrets(stored.node, entry.node, Device)
            keep_unknown_extensions(stored.node, entry.node, Device)
            entry = DeviceEntry(name, entry.node, canonical(entry.node))
            if entry.raw == stored.raw:
                return  # nothing changed
        entry.index  # noqa: B018 - checks within the device now, not at commit
        self.devices[name] = entry
        self.puts[name] = entry.raw

    def put_rest(self, rest: dict[str, Any]) -> None:
        if rest != self.rest:
            self.rest = rest
            self.puts[""] = canonical(rest) if rest else None

    def tree(self) -> dict[str, Any]:
        return assemble({n: e.node for n, e in self.devices.items()}, self.rest)

    def put_tree(self, tree: Any) -> None:
        devices, rest = split(tree)
        for name in self.devices.keys() - devices.keys():
            self.put_device(name, None)
        for name, node in devices.items():
            current = self.devices.get(name)
            if current is None or node is not current.node:  # untouched subtrees keep identity
                self.put_device(name, node)
        self.put_rest(rest)


class ConfigStore:
    """The configuration of all devices; see the package docstring for the API tour."""

    def __init__(
        self,
        backend: Backend,
        device_name: str = DEFAULT_DEVICE_NAME,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.uri = backend.uri
        self.device_name = device_name
        self._backend = backend
        self._normalize = not backend.stores_normalized
        # Held while installing a new State and across each write transaction, so the
        # watcher never installs a state older than the one a local commit installs.
        self._install_lock = threading.Lock()
        self._local = threading.local()
        self._subscribers = Subscribers()
        self._state = build_state(backend.read(), None, self._normalize)
        self._stats = {"commits": 0, "remote_refreshes": 0, "notifications": 0}
        self._watcher = Watcher(self._poll, poll_interval)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._watcher.stop()
        self._backend.close()

    def __enter__(self) -> ConfigStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        state = self._state
        return {
            "uri": self.uri,
            "devices": len(state.devices),
            "subscribers": len(self._subscribers),
            "poll_interval": self._watcher.interval,
            **self._stats,
        }

    # ------------------------------------------------------------------ typed reads

    def _reading(self) -> State | _Transaction:
        txn = getattr(self._local, "txn", None)
        return txn if txn is not None else self._state

    def _entry(self, name: str) -> DeviceEntry:
        entry = self._reading().devices.get(name)
        if entry is None:
            raise NotFoundError(
                f"no device {name!r} in {self.uri}; list them with `archivectl config list`"
            )
        return entry

    def list_device_names(self) -> list[str]:
        return sorted(self._reading().devices)

    def find_device(self, name: str) -> Device:
        """A fresh, mutable copy of the device, ready to change and merge_device()."""
        return self._entry(name).fresh()

    def _ae_owner(self, ae_title: str) -> str:
        reading = self._reading()
        if isinstance(reading, State):
            owner = reading.ae_owner.get(ae_title)
        else:
            owner = next(
                (e.name for e in reading.devices.values() if ae_title in e.index.ae_titles), None
            )
        if owner is None:
            raise NotFoundError(
                f"no AE {ae_title!r} in {self.uri}; register it with "
                f"`archivectl ae add {ae_title} HOST PORT`"
            )
        return owner

    def find_device_by_ae(self, ae_title: str) -> Device:
        return self.find_device(self._ae_owner(ae_title))

    def find_ae(self, ae_title: str) -> ApplicationEntity:
        ae = self.find_device_by_ae(ae_title).find_ae(ae_title)
        assert ae is not None
        return ae

    def own_device(self) -> Device:
        """This process's device, shared and read-only; refreshed on every change."""
        return self._entry(self.device_name).shared

    def ensure_own_device(self) -> Device:
        """own_device(), creating the default archive device first if there is none."""
        if self.device_name not in self._state.devices:

            def create() -> None:
                if self.device_name not in self._reading().devices:
                    self.merge_device(default_archive_device(self.device_name))

            self.batch(create)
        return self.own_device()

    # ------------------------------------------------------------------ typed writes

    def merge_device(self, device: Device) -> None:
        """Store `device` with optimistic locking (see archived.conf.olock)."""
        if device.frozen:
            raise ReadOnlyConfigError(f"device {device.name!r}")
        written = to_node(device)
        hashes = loaded_hashes(device)
        path = device_path(device.name)

        def action(txn: _Transaction) -> None:
            stored = txn.devices.get(device.name)
            if stored is None:
                txn.put_device(device.name, merge(None, written, hashes, path))
            else:
                txn.put_device(
                    device.name, merge(stored.node, written, hashes, path, stored.hashes)
                )

        self._write(action)

    def remove_device(self, name: str) -> None:
        def action(txn: _Transaction) -> None:
            if name not in txn.devices:
                raise NotFoundError(f"no device {name!r} in {self.uri}; nothing removed")
            txn.put_device(name, None)

        self._write(action)

    def batch(self, fn: Callable[[], T]) -> T:
        """Run fn as one atomic transaction: all its writes or none; nested writes join it."""
        return self._write(lambda txn: fn())

    # ------------------------------------------------------------------ node API

    def _public_tree(self) -> dict[str, Any]:
        reading = self._reading()
        if isinstance(reading, State):
            return reading.public_tree()
        return assemble({n: e.public_node for n, e in reading.devices.items()}, reading.rest)

    def get_node(self, path: str = "/", *, defaults: bool = False) -> Any:
        """The node at a JSON Pointer path (secrets left out).

        Values equal to their defaults are not stored; ``defaults=True`` fills them in
        below a device (a device that fails validation is shown as stored).
        """
        parts = split_path(path)
        if len(parts) >= 3 and "/" + "/".join(parts[:2]) == DEVICES_PATH:
            entry = self._entry(parts[2])
            node = entry.effective_node if defaults and entry.error is None else entry.public_node
            return get_at(node, parts[3:], tuple(parts[:3]))
        return get_at(self._public_tree(), parts)

    def persist_node(self, path: str, node: Any) -> None:
        """Replace the node at `path` (parents are created); validated before commit."""
        parts = split_path(path)
        self._write(lambda txn: txn.put_tree(set_at(txn.tree(), parts, node)))

    def remove_node(self, path: str) -> None:
        parts = split_path(path)
        self._write(lambda txn: txn.put_tree(remove_at(txn.tree(), parts)))

    def find_ae_path(self, ae_title: str) -> str:
        """Query: the path of the AE with this title."""
        owner = self._ae_owner(ae_title)
        return self._entry(owner).index.ae_titles[ae_title].removesuffix("/dicomAETitle")

    def find_uuid_path(self, node_uuid: str) -> str:
        """Query: the path of the node with this uuid (a dictionary lookup in the view)."""
        path = self._state.uuid_paths.get(node_uuid)
        if path is None:
            raise NotFoundError(f"no node with uuid {node_uuid} in {self.uri}")
        return path

    # ------------------------------------------------------------------ notifications

    def subscribe(self, callback: Callback) -> Subscription:
        """Call `callback(ChangeEvent)` after each commit, local or in another process."""
        return self._subscribers.add(callback)

    def _install(self, state: State, origin: str) -> ChangeEvent:
        old, self._state = self._state, state
        return ChangeEvent(changed_paths(old, state), origin)  # type: ignore[arg-type]

    def _notify(self, event: ChangeEvent) -> None:
        if event.paths:
            self._stats["notifications"] += 1
            self._subscribers.dispatch(event)

    def _poll(self) -> None:
        if self._backend.generation() == self._state.generation:
            return
        with self._install_lock:
            snapshot = self._backend.read()
            if snapshot.generation == self._state.generation:
                return
            event = self._install(build_state(snapshot, self._state, self._normalize), "remote")
            self._stats["remote_refreshes"] += 1
        self._notify(event)

    # ------------------------------------------------------------------ transactions

    def _write(self, action: Callable[[_Transaction], T]) -> T:
        txn = getattr(self._local, "txn", None)
        if txn is not None:
            return action(txn)  # nested: joins the running transaction
        with self._install_lock, self._backend.transaction() as backend_txn:
            snapshot = backend_txn.snapshot
            base = self._state
            if snapshot.generation != base.generation:
                base = build_state(snapshot, base, self._normalize)
            txn = _Transaction(base)
            self._local.txn = txn
            try:
                result = action(txn)
            finally:
                self._local.txn = None
            if not txn.puts:
                return result
            check_all(entry.index for entry in txn.devices.values())
            generation = backend_txn.commit(txn.puts)
            event = self._install(State(generation, txn.devices, txn.rest), "local")
            self._stats["commits"] += 1
        self._notify(event)
        return result


def open_store(
    uri: str | None = None,
    *,
    device_name: str = DEFAULT_DEVICE_NAME,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> ConfigStore:
    """Open the store at `uri` (else $ARCHIVED_CONFIG, else lmdb:///var/lib/archived/conf)."""
    return ConfigStore(open_backend(resolve_uri(uri)), device_name, poll_interval)
