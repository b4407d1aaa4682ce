"""Introspection of the typed model: which JSON keys hold child nodes, references, secrets,
uuids and extensions. Lets the node-level code (defaults, olock, integrity) walk raw JSON."""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from archived.conf.fields import SECRET, UUID_REF
from archived.conf.model import (
    AE_EXTENSIONS,
    DEVICE_EXTENSIONS,
    UUID_KEY,
    AEExtensions,
    Configurable,
    DeviceExtensions,
)


@dataclass(frozen=True)
class Child:
    key: str  # JSON key
    cls: type[Configurable]
    many: bool  # a list of nodes rather than one node


@dataclass(frozen=True)
class Shape:
    children: tuple[Child, ...]
    refs: tuple[tuple[str, bool], ...]  # (JSON key, is a list of refs)
    secrets: tuple[str, ...]
    has_uuid: bool
    extensions: dict[str, type[Configurable]] | None  # for an extensions container


def _markers(annotation: Any, found: set[object]) -> None:
    for meta in getattr(annotation, "__metadata__", ()):
        found.add(meta)
    for arg in typing.get_args(annotation):
        _markers(arg, found)


def _configurable_in(annotation: Any) -> tuple[type[Configurable] | None, bool]:
    origin = typing.get_origin(annotation)
    if origin is list:
        inner, _ = _configurable_in(typing.get_args(annotation)[0])
        return inner, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner, many = _configurable_in(arg)
            if inner is not None:
                return inner, many
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, Configurable):
        return annotation, False
    return None, False


@functools.cache
def shape(cls: type[Configurable]) -> Shape:
    children, refs, secrets = [], [], []
    for name, info in cls.model_fields.items():
        key = info.alias or name
        found: set[object] = set(info.metadata)
        _markers(info.annotation, found)
        inner, many = _configurable_in(info.annotation)
        if inner is not None:
            children.append(Child(key, inner, many))
        if UUID_REF in found:
            refs.append((key, typing.get_origin(info.annotation) is list))
        if SECRET in found:
            secrets.append(key)
    extensions = {DeviceExtensions: DEVICE_EXTENSIONS, AEExtensions: AE_EXTENSIONS}.get(cls)
    return Shape(
        tuple(children), tuple(refs), tuple(secrets), UUID_KEY in _aliases(cls), extensions
    )


def _aliases(cls: type[Configurable]) -> set[str]:
    return {info.alias or name for name, info in cls.model_fields.items()}


def walk(node: Any, cls: type[Configurable], path: str) -> Iterator[tuple[str, type, dict]]:
    """Every configurable node below (and including) `node`, with its JSON pointer path."""
    if not isinstance(node, dict):
        return
    yield path, cls, node
    for child in shape(cls).children:
        value = node.get(child.key)
        if child.many and isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, child.cls, f"{path}/{child.key}/{index}")
        elif not child.many:
            yield from walk(value, child.cls, f"{path}/{child.key}")
