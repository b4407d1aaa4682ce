"""Hash-based optimistic locking, as dcm4chee-conf does it.

Hashes are computed on load, never stored, for Device, ApplicationEntity and Connection
nodes. A node's hash covers its own content only: not its hashed children (a Device's
connections and AEs have their own hashes), not secrets, not extensions unknown to this
code; it does not depend on map-key order, and lists of uuid nodes are ordered by uuid.

On merge, for each hashed node of the written device (matched to the stored one by uuid):
- the writer did not change it (written hash == loaded hash): the stored values stay;
- the writer changed it and the stored hash still equals the loaded one: written values win;
- otherwise: OptimisticLockError naming the node's path.
A device merged without loaded hashes (built from scratch) overwrites the stored one.
"""

from __future__ import annotations

import hashlib
from typing import Any

from archived.conf.defaults import filtered, has_secret
from archived.conf.errors import OptimisticLockError
from archived.conf.model import UUID_KEY, ApplicationEntity, Configurable, Connection, Device
from archived.conf.nodes import canonical

CONNECTIONS = "dicomNetworkConnection"
AES = "dicomNetworkAE"
_HASHED_CHILDREN: dict[str, type[Configurable]] = {CONNECTIONS: Connection, AES: ApplicationEntity}


def _ordered(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _ordered(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [_ordered(i) for i in node]
        if items and all(isinstance(i, dict) and UUID_KEY in i for i in items):
            items.sort(key=lambda i: str(i[UUID_KEY]))
        return items
    return node


def node_hash(node: dict[str, Any], cls: type[Configurable]) -> str:
    own = {k: v for k, v in node.items() if not (cls is Device and k in _HASHED_CHILDREN)}
    own = filtered(own, cls, unknown_extensions=False)
    return hashlib.sha256(canonical(_ordered(own))).hexdigest()


def hashes_of(device_node: dict[str, Any]) -> dict[str, str]:
    """uuid -> hash for the device and each of its connections and AEs."""
    out = {str(device_node.get(UUID_KEY)): node_hash(device_node, Device)}
    for key, cls in _HASHED_CHILDREN.items():
        for child in device_node.get(key, []):
            if isinstance(child, dict):
                out[str(child.get(UUID_KEY))] = node_hash(child, cls)
    return out


def stamp(device: Device, hashes: dict[str, str]) -> None:
    """Record on a freshly loaded typed device the hashes it was loaded with."""
    device.__pydantic_private__["_loaded_hashes"] = dict(hashes)  # type: ignore[index]


def loaded_hashes(device: Device) -> dict[str, str]:
    """The hashes a device was loaded with (empty for a device built from scratch)."""
    return dict(device.__pydantic_private__.get("_loaded_hashes") or {})  # type: ignore[union-attr]


def _merge_node(
    stored: dict[str, Any],
    written: dict[str, Any],
    loaded: str | None,
    cls: type[Configurable],
    path: str,
    stored_hash: str | None = None,
) -> dict[str, Any]:
    if loaded is None:
        return written
    stored_hash = stored_hash or node_hash(stored, cls)
    if stored_hash == loaded and written == stored:
        return stored  # the common case, decided without hashing the written node
    if node_hash(written, cls) == loaded and not has_secret(written, cls):
        return stored
    if stored_hash == loaded:
        return written
    raise OptimisticLockError("your change conflicts with theirs", path=path)


def _merge_children(
    stored: list[Any],
    written: list[Any],
    loaded: dict[str, str],
    cls: type[Configurable],
    path: str,
    stored_hashes: dict[str, str],
) -> list[Any]:
    stored_by_uuid = {s.get(UUID_KEY): s for s in stored}
    written_uuids = set()
    out = []
    for index, item in enumerate(written):
        item_uuid = item.get(UUID_KEY)
        written_uuids.add(item_uuid)
        previous = stored_by_uuid.get(item_uuid)
        if previous is not None:
            out.append(
                _merge_node(
                    previous,
                    item,
                    loaded.get(item_uuid),
                    cls,
                    f"{path}/{index}",
                    stored_hashes.get(item_uuid),
                )
            )
        elif item_uuid not in loaded:
            out.append(item)  # added by this writer
        elif node_hash(item, cls) != loaded[item_uuid]:
            raise OptimisticLockError("you changed a node that was removed", path=f"{path}/{index}")
        # else: removed by another writer and untouched by this one: stays removed
    for index, previous in enumerate(stored):
        prev_uuid = previous.get(UUID_KEY)
        if prev_uuid in written_uuids:
            continue
        if prev_uuid not in loaded:
            out.append(previous)  # added by another writer meanwhile
        elif (stored_hashes.get(prev_uuid) or node_hash(previous, cls)) != loaded[prev_uuid]:
            raise OptimisticLockError("you removed a node that was changed", path=f"{path}/{index}")
    return out


def merge(
    stored: dict[str, Any] | None,
    written: dict[str, Any],
    loaded: dict[str, str],
    path: str,
    stored_hashes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The device node to store when `written` (loaded with `loaded` hashes) is merged;
    `stored_hashes` are those of `stored` if already known (the view caches them)."""
    stored_hashes = stored_hashes or {}
    device_loaded = loaded.get(str(written.get(UUID_KEY)))
    if device_loaded is None:
        return written  # not loaded from the store: the writer's device replaces it
    if stored is None or stored.get(UUID_KEY) != written.get(UUID_KEY):
        raise OptimisticLockError("the device was removed or replaced", path=path)
    own_written = {k: v for k, v in written.items() if k not in _HASHED_CHILDREN}
    own_stored = {k: v for k, v in stored.items() if k not in _HASHED_CHILDREN}
    merged = dict(
        _merge_node(
            own_stored,
            own_written,
            device_loaded,
            Device,
            path,
            stored_hashes.get(str(stored.get(UUID_KEY))),
        )
    )
    for key, cls in _HASHED_CHILDREN.items():
        children = _merge_children(
            stored.get(key, []),
            written.get(key, []),
            loaded,
            cls,
            f"{path}/{key}",
            stored_hashes,
        )
        if children:
            merged[key] = children
    return merged
