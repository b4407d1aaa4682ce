"""The configuration as a tree of JSON nodes: paths (JSON Pointer, RFC 6901), the split of
the tree into shards (one per device, one for the rest), canonical bytes, and tree diffs."""

from __future__ import annotations

import json
from typing import Any

from archived.conf.errors import NotFoundError
from archived.conf.model import UUID_KEY

ROOT = "dicomConfigurationRoot"
DEVICES = "dicomDevicesRoot"
METADATA = "metadataRoot"
DEVICES_PATH = f"/{ROOT}/{DEVICES}"
REST = ""  # shard key of everything that is not a device


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def split_path(path: str) -> list[str]:
    if path in ("", "/"):
        return []
    if not path.startswith("/"):
        raise NotFoundError(f"bad path {path!r}: a path starts with '/', e.g. {DEVICES_PATH}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def join_path(parts: list[str]) -> str:
    return "".join("/" + escape(p) for p in parts)


def device_path(name: str) -> str:
    return f"{DEVICES_PATH}/{escape(name)}"


def canonical(node: Any) -> bytes:
    """Bytes that depend only on content, not on map-key order."""
    return json.dumps(node, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _step(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise NotFoundError(f"no node at {path}; list the parent with `archivectl config list`")


def get_at(tree: Any, parts: list[str], base: tuple[str, ...] = ()) -> Any:
    """The node at `parts` below `tree`; `base` is the path of `tree`, for messages."""
    node = tree
    for depth, token in enumerate(parts):
        node = _step(node, token, join_path([*base, *parts[: depth + 1]]))
    return node


def set_at(tree: Any, parts: list[str], value: Any) -> Any:
    """A new tree with `value` at `parts`; copies only the nodes along the path."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(tree, list):
        if not head.isdigit() or int(head) > len(tree):
            raise NotFoundError(f"no list index {head!r} under the path to {join_path(parts)}")
        copy = list(tree)
        index = int(head)
        if index == len(copy):
            copy.append(set_at({}, rest, value))
        else:
            copy[index] = set_at(copy[index], rest, value)
        return copy
    copy_dict = dict(tree) if isinstance(tree, dict) else {}
    copy_dict[head] = set_at(copy_dict.get(head, {}), rest, value)
    return copy_dict


def remove_at(tree: Any, parts: list[str]) -> Any:
    if not parts:
        return {}
    head, rest = parts[0], parts[1:]
    node = _step(tree, head, join_path(parts[:1]))
    if isinstance(tree, list):
        copy = list(tree)
        if rest:
            copy[int(head)] = remove_at(node, rest)
        else:
            del copy[int(head)]
        return copy
    copy_dict = dict(tree)
    if rest:
        copy_dict[head] = remove_at(node, rest)
    else:
        del copy_dict[head]
    return copy_dict


def assemble(devices: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    """The whole tree from its shards (shares the shard nodes, copies nothing below)."""
    root = dict(rest.get(ROOT, {}))
    root[DEVICES] = dict(devices)
    return {**rest, ROOT: root}


def split(tree: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(devices by name, rest) from a whole tree."""
    if not isinstance(tree, dict):
        raise NotFoundError("the configuration root must be a JSON object")
    root = tree.get(ROOT, {})
    if not isinstance(root, dict):
        raise NotFoundError(f"/{ROOT} must be a JSON object")
    devices = root.get(DEVICES, {})
    if not isinstance(devices, dict):
        raise NotFoundError(f"{DEVICES_PATH} must be a JSON object keyed by device name")
    rest_root = {k: v for k, v in root.items() if k != DEVICES}
    rest = {k: v for k, v in tree.items() if k != ROOT}
    if rest_root:
        rest[ROOT] = rest_root
    return dict(devices), rest


def _uuid_keyed(items: list[Any]) -> dict[str, Any] | None:
    if items and all(isinstance(i, dict) and UUID_KEY in i for i in items):
        keyed = {i[UUID_KEY]: i for i in items}
        if len(keyed) == len(items):
            return keyed
    return None


def diff_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Deepest paths where two trees differ (lists of uuid nodes are matched by uuid)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in old.keys() | new.keys():
            sub = f"{path}/{escape(key)}"
            if key not in old or key not in new:
                out.append(sub)
            else:
                out.extend(diff_paths(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list):
        old_keyed, new_keyed = _uuid_keyed(old), _uuid_keyed(new)
        if old_keyed is not None and new_keyed is not None and old_keyed.keys() == new_keyed.keys():
            out = []
            for index, item in enumerate(new):
                out.extend(diff_paths(old_keyed[item[UUID_KEY]], item, f"{path}/{index}"))
            return out or [path]  # same items, new order
    return [path or "/"]
