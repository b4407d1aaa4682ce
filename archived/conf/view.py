"""The in-memory view: one immutable State per committed generation. Parsing, hashing,
typing and indexing of a device happen at most once per stored version of that device."""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from archived.conf.backends import Snapshot
from archived.conf.defaults import strip_secrets, validate_device, with_defaults
from archived.conf.errors import IntegrityError
from archived.conf.integrity import DeviceIndex, check_device, index_device
from archived.conf.model import Device
from archived.conf.nodes import assemble, canonical, device_path, diff_paths
from archived.conf.olock import hashes_of, stamp


class DeviceEntry:
    """One stored version of one device; derived forms are computed on first use."""

    def __init__(self, name: str, node: Any, raw: bytes, error: IntegrityError | None = None):
        self.name = name
        self.node = node  # normalized stored form, secrets included
        self.raw = raw
        self.error = error  # a hand-edited device that does not validate

    def _valid(self) -> None:
        if self.error is not None:
            raise self.error

    @functools.cached_property
    def public_node(self) -> Any:
        return strip_secrets(self.node, Device)

    @functools.cached_property
    def effective_node(self) -> Any:
        """public_node with every setting left at its default (never stored) filled in."""
        typed = self.shared.model_dump(mode="json", by_alias=True)
        return with_defaults(self.public_node, strip_secrets(typed, Device))

    @functools.cached_property
    def hashes(self) -> dict[str, str]:
        self._valid()
        return hashes_of(self.node)

    @functools.cached_property
    def shared(self) -> Device:
        """The read-only typed device handed to every component of this process."""
        device = self.fresh()
        device.freeze()
        return device

    @functools.cached_property
    def index(self) -> DeviceIndex:
        self._valid()
        return index_device(self.name, self.node)

    def fresh(self) -> Device:
        """A new mutable typed copy, stamped with the hashes it was loaded with."""
        self._valid()
        device = validate_device(self.public_node, device_path(self.name))
        stamp(device, self.hashes)
        return device


def entry_from_node(name: str, node: Any) -> DeviceEntry:
    """An entry for a node written now: validated and normalized (raises IntegrityError)."""
    normal = check_device(name, node)
    return DeviceEntry(name, normal, canonical(normal))


def _entry_from_raw(name: str, raw: bytes, normalize: bool) -> DeviceEntry:
    node = json.loads(raw)
    if not normalize:
        return DeviceEntry(name, node, raw)
    try:
        return entry_from_node(name, node)
    except IntegrityError as exc:
        return DeviceEntry(name, node, raw, error=exc)


@dataclass
class State:
    """A committed configuration: device entries and the rest of the tree."""

    generation: Hashable
    devices: dict[str, DeviceEntry]
    rest: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def ae_owner(self) -> dict[str, str]:
        """AE title -> name of the device that holds it."""
        return {
            title: entry.name
            for entry in self.devices.values()
            if entry.error is None
            for title in entry.index.ae_titles
        }

    @functools.cached_property
    def uuid_paths(self) -> dict[str, str]:
        """uuid -> JSON path of the node, for every node of every valid device."""
        out: dict[str, str] = {}
        for entry in self.devices.values():
            if entry.error is None:
                out.update(entry.index.uuids)
        return out

    def public_tree(self) -> dict[str, Any]:
        return assemble({n: e.public_node for n, e in sorted(self.devices.items())}, self.rest)


def build_state(snapshot: Snapshot, previous: State | None, normalize: bool) -> State:
    """The State of a snapshot, reusing the entries of devices whose bytes did not change."""
    old = previous.devices if previous else {}
    devices = {}
    for name, raw in snapshot.shards.items():
        if not name:
            continue
        entry = old.get(name)
        devices[name] = (
            entry if entry and entry.raw == raw else _entry_from_raw(name, raw, normalize)
        )
    rest_raw = snapshot.shards.get("")
    rest = json.loads(rest_raw) if rest_raw else {}
    return State(snapshot.generation, devices, rest)


def changed_paths(old: State, new: State) -> tuple[str, ...]:
    """Paths that differ between two states (device nodes diffed field by field)."""
    paths: list[str] = []
    for name in sorted(old.devices.keys() | new.devices.keys()):
        before, after = old.devices.get(name), new.devices.get(name)
        if before is after:
            continue
        if before is None or after is None:
            paths.append(device_path(name))
        elif before.raw != after.raw:
            paths.extend(diff_paths(before.node, after.node, device_path(name)))
    if old.rest != new.rest:
        paths.extend(p for p in diff_paths(old.rest, new.rest) if p != "/")
    return tuple(sorted(set(paths)))
