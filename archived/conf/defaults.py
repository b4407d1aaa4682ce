"""Conversion between typed devices and stored nodes: the defaults filter (values equal to
their defaults are not stored and come back on load), uuids for nodes that lack one, secrets
kept out of everything a reader gets, and unknown extensions kept across a write."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from archived.conf.errors import IntegrityError
from archived.conf.model import UUID_KEY, Configurable, Device
from archived.conf.nodes import escape
from archived.conf.schema import shape, walk

_UUID_NAMESPACE = uuid.UUID("5b0e7c2e-6a8f-4d0e-9d1c-0a3c6f1d2e4b")


def to_node(model: Configurable) -> dict[str, Any]:
    """The stored form of a typed node: only values that differ from their defaults."""
    return model.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def fill_uuids(node: dict[str, Any], cls: type[Configurable], path: str) -> None:
    """Give every node that lacks a uuid a stable one derived from its path (in place)."""
    for sub_path, sub_cls, sub in walk(node, cls, path):
        if shape(sub_cls).has_uuid and UUID_KEY not in sub:
            sub[UUID_KEY] = str(uuid.uuid5(_UUID_NAMESPACE, sub_path))


def validate_device(node: Any, path: str) -> Device:
    """A typed Device from a node; a violation raises IntegrityError naming the JSON path."""
    try:
        return Device.model_validate(node)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = path + "".join("/" + escape(str(loc)) for loc in first["loc"])
        raise IntegrityError(first["msg"], path=where) from None


def normalize_device(node: Any, path: str) -> dict[str, Any]:
    """Validate a stored or hand-written device node and return its canonical stored form."""
    if not isinstance(node, dict):
        raise IntegrityError("a device must be a JSON object", path=path)
    work = json_copy(node)
    fill_uuids(work, Device, path)
    normal = to_node(validate_device(work, path))
    keep_unknown_extensions(work, normal, Device)
    return normal


def _pairs(
    source: Any, target: Any, cls: type[Configurable]
) -> Iterator[tuple[type[Configurable], dict[str, Any], dict[str, Any]]]:
    """Nodes present in both trees: single children by key, list items by uuid."""
    if not (isinstance(source, dict) and isinstance(target, dict)):
        return
    yield cls, source, target
    for child in shape(cls).children:
        s, t = source.get(child.key), target.get(child.key)
        if child.many and isinstance(s, list) and isinstance(t, list):
            if not shape(child.cls).has_uuid:  # nodes without identity pair by position
                for s_item, t_item in zip(s, t, strict=False):
                    yield from _pairs(s_item, t_item, child.cls)
                continue
            by_uuid = {i.get(UUID_KEY): i for i in s if isinstance(i, dict) and UUID_KEY in i}
            for item in t:
                if isinstance(item, dict) and item.get(UUID_KEY) in by_uuid:
                    yield from _pairs(by_uuid[item[UUID_KEY]], item, child.cls)
        elif not child.many:
            yield from _pairs(s, t, child.cls)


def keep_unknown_extensions(source: Any, target: Any, cls: type[Configurable]) -> None:
    """Copy extensions that this code does not know from `source` into `target` (in place)."""
    for sub_cls, s, t in _pairs(source, target, cls):
        for child in shape(sub_cls).children:
            known = shape(child.cls).extensions
            stored = s.get(child.key)
            if known is None or child.many or not isinstance(stored, dict):
                continue
            unknown = {k: v for k, v in stored.items() if k not in known}
            if unknown:
                written = t.setdefault(child.key, {})
                for key, value in unknown.items():
                    written.setdefault(key, value)


def carry_secrets(stored: Any, target: Any, cls: type[Configurable]) -> None:
    """Secrets are write-only: a node written without one keeps the stored one; '' clears."""
    for sub_cls, s, t in _pairs(stored, target, cls):
        for key in shape(sub_cls).secrets:
            if key not in t and key in s:
                t[key] = s[key]
    for _, sub_cls, sub in walk(target, cls, ""):
        for key in shape(sub_cls).secrets:
            if sub.get(key) == "":
                del sub[key]


def with_defaults(stored: Any, typed: Any) -> Any:
    """``stored`` with every value of ``typed`` (the full dump of the same node, defaults
    included) that it lacks: the node as the code sees it. Stored values and keys unknown to
    the model (extensions) win; list items pair by position (the dump keeps the order)."""
    if isinstance(stored, dict) and isinstance(typed, dict):
        merged = {k: with_defaults(stored[k], v) if k in stored else v for k, v in typed.items()}
        merged.update((k, v) for k, v in stored.items() if k not in typed)
        return merged
    if isinstance(stored, list) and isinstance(typed, list) and len(stored) == len(typed):
        return [with_defaults(s, t) for s, t in zip(stored, typed, strict=True)]
    return stored


def json_copy(node: Any) -> Any:
    """A deep copy of a JSON node (several times faster than copy.deepcopy)."""
    return json.loads(json.dumps(node))


def filtered(node: Any, cls: type[Configurable], unknown_extensions: bool = True) -> Any:
    """A copy of `node` without secrets (and, if asked, without unknown extensions); shares
    the leaves with `node`, so neither may be changed in place afterwards."""
    if not isinstance(node, dict):
        return node
    info = shape(cls)
    children = {c.key: c for c in info.children}
    out = {}
    for key, value in node.items():
        if key in info.secrets:
            continue
        if not unknown_extensions and info.extensions is not None and key not in info.extensions:
            continue
        child = children.get(key)
        if child is None:
            out[key] = value
        elif child.many and isinstance(value, list):
            out[key] = [filtered(i, child.cls, unknown_extensions) for i in value]
        else:
            out[key] = filtered(value, child.cls, unknown_extensions)
    return out


def strip_secrets(node: Any, cls: type[Configurable]) -> Any:
    """A copy of `node` without any secret value."""
    return json_copy(filtered(node, cls))


def has_secret(node: Any, cls: type[Configurable]) -> bool:
    """Whether the writer set a secret on the node itself ('' to clear one counts too)."""
    return isinstance(node, dict) and any(node.get(k) is not None for k in shape(cls).secrets)
