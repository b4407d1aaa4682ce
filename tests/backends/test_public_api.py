"""hsmfs.backends exports exactly its public API, and every name in it exists."""

from __future__ import annotations

import hsmfs.backends as backends


def test_every_public_class_and_function_is_exported() -> None:
    for name in backends.__all__:
        assert hasattr(backends, name), name
    defined_here = {
        name
        for name, value in vars(backends).items()
        if not name.startswith("_")
        and str(getattr(value, "__module__", "")).startswith("hsmfs.backends")
    }
    assert defined_here == set(backends.__all__) - {"ProgressCallback", "DataCallback"}


def test_exceptions_form_one_hierarchy_with_exit_codes() -> None:
    exported = [getattr(backends, name) for name in backends.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, Exception)]
    assert len(errors) == 9
    for error in errors:
        assert issubclass(error, backends.ObjectStoreError)
        assert isinstance(error.exit_code, int) and 64 <= error.exit_code <= 78
