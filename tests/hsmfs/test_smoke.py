from __future__ import annotations

import os
from pathlib import Path

from tests.mounts import HsmMount


def test_write_read_and_persist_across_remount(hsm: HsmMount) -> None:
    (hsm.mnt / "d").mkdir()
    (hsm.mnt / "d" / "f").write_bytes(b"hello")
    ino = os.stat(hsm.mnt / "d" / "f").st_ino
    assert hsm.stop() == 0
    hsm.start()
    assert (hsm.mnt / "d" / "f").read_bytes() == b"hello"
    assert os.stat(hsm.mnt / "d" / "f").st_ino == ino


def test_mount_point_is_a_fuse_mount(mnt: Path) -> None:
    assert os.path.ismount(mnt)
