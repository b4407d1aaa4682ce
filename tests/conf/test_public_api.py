"""The public API of archived.conf is the short re-export list in its __init__."""

from __future__ import annotations

import importlib

import archived.conf


def test_all_names_exist_and_nothing_else_is_public() -> None:
    exported = set(archived.conf.__all__)
    assert len(exported) == len(archived.conf.__all__)
    for name in exported:
        assert hasattr(archived.conf, name), name
    public_attrs = {
        name
        for name, value in vars(archived.conf).items()
        if not name.startswith("_") and not isinstance(value, type(importlib))
    }
    assert public_attrs == exported


def test_every_export_is_defined_in_a_submodule_of_the_package() -> None:
    for name in archived.conf.__all__:
        value = getattr(archived.conf, name)
        module = getattr(value, "__module__", "archived.conf")
        assert module.startswith("archived.conf"), (name, module)


def test_docstring_names_the_main_entry_points() -> None:
    doc = archived.conf.__doc__ or ""
    for name in ("open_store", "find_device", "find_ae", "merge_device", "batch", "subscribe",
                 "own_device", "get_node", "persist_node"):  # fmt: skip
        assert name in doc, name
