from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mounts import HsmMount


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[HsmMount]:
    """A live hsmfs mount on a fresh state and cache directory."""
    mount = HsmMount(tmp_path).start()
    try:
        yield mount
    finally:
        mount.cleanup()


@pytest.fixture
def mnt(hsm: HsmMount) -> Path:
    return hsm.mnt
