"""Fixtures of the configuration-store tests: real LMDB directories and JSON files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from archived.conf import ConfigStore, open_store

HELPERS = Path(__file__).with_name("helpers.py")


@pytest.fixture(params=["lmdb", "json"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "lmdb":
        return f"lmdb://{tmp_path}/conf"
    return f"json://{tmp_path}/conf.json"


@pytest.fixture
def lmdb_uri(tmp_path: Path) -> str:
    return f"lmdb://{tmp_path}/conf"


@pytest.fixture
def store(store_uri: str) -> Iterator[ConfigStore]:
    with open_store(store_uri) as opened:
        opened.ensure_own_device()
        yield opened


def helper_command(*args: str) -> list[str]:
    """Command line of a helper process (tests/conf/helpers.py) run with this interpreter."""
    return [sys.executable, str(HELPERS), *args]
