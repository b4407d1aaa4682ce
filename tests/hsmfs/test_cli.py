"""The hsmfs command line: daemon start-up, umount that waits, the state lock, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmfs.catalog import Catalog
from hsmfs.lock import StateLock
from tests.mounts import HsmMount

pytestmark = pytest.mark.fuse  # it starts mounts of its own


def hsmfs(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmfs.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hsmfs: error: ")
    return lines[0]


@pytest.fixture
def daemon_dirs(tmp_path: Path) -> Iterator[HsmMount]:
    """Directories for a daemon that `hsmfs mount` starts in the background."""
    dirs = HsmMount(tmp_path)
    dirs.mnt.mkdir()
    yield dirs
    if os.path.ismount(dirs.mnt):
        pid = json.loads(os.getxattr(dirs.mnt, "user.hsm.daemon"))["pid"]
        os.kill(pid, signal.SIGTERM)
    dirs.cleanup()


def test_mount_returns_once_live_and_umount_waits_for_exit(daemon_dirs: HsmMount) -> None:
    d = daemon_dirs
    result = hsmfs("mount", d.mnt, "--cache", d.cache, "--state", d.state)
    assert result.returncode == 0, result.stderr
    # Live the moment the command returned, with no waiting.
    assert os.path.ismount(d.mnt)
    (d.mnt / "f").write_bytes(b"written")
    info = json.loads(os.getxattr(d.mnt, "user.hsm.daemon"))
    pid = int(info["pid"])
    assert alive(pid)
    assert str(pid) in result.stdout

    result = hsmfs("umount", d.mnt)
    assert result.returncode == 0, result.stderr
    # Gone the moment the command returned: the daemon exited, flushed, released its lock.
    assert not os.path.ismount(d.mnt)
    assert not alive(pid)
    catalog = Catalog(d.state / "catalog", readonly=True)
    try:
        with catalog.read() as txn:
            assert txn.meta(b"clean") == b"1"
    finally:
        catalog.close()
    with StateLock(d.state, "test"):
        pass
    remount = HsmMount(d.root).start()
    try:
        assert (remount.mnt / "f").read_bytes() == b"written"
    finally:
        remount.cleanup()


def test_second_mount_of_one_state_directory_is_refused(hsm: HsmMount, tmp_path: Path) -> None:
    other = tmp_path / "other-mnt"
    other.mkdir()
    for mode in ([], ["--foreground"]):
        result = hsmfs("mount", other, "--cache", hsm.cache, "--state", hsm.state, *mode)
        line = assert_one_line_error(result, 3)
        assert str(hsm.state) in line and "in use" in line
        assert "umount" in line  # says what to do
        assert not os.path.ismount(other)
    assert (hsm.mnt / ".").stat()  # the first mount is untouched
    assert os.path.ismount(hsm.mnt)


def test_umount_of_a_stale_mount_after_kill(hsm: HsmMount) -> None:
    (hsm.mnt / "f").write_bytes(b"kept")
    hsm.kill()
    with pytest.raises(OSError):
        os.listdir(hsm.mnt)
    result = hsmfs("umount", hsm.mnt)
    assert result.returncode == 0, result.stderr
    assert "stale" in result.stdout
    assert not os.path.ismount(hsm.mnt)
    assert os.listdir(hsm.mnt) == []
    hsm.start()
    assert (hsm.mnt / "f").read_bytes() == b"kept"


def test_mount_over_a_stale_mount_after_kill(hsm: HsmMount) -> None:
    (hsm.mnt / "f").write_bytes(b"kept")
    hsm.kill()
    hsm.start()  # no umount in between: the daemon clears the dead mount itself
    assert (hsm.mnt / "f").read_bytes() == b"kept"


def test_umount_of_a_plain_directory(tmp_path: Path) -> None:
    line = assert_one_line_error(hsmfs("umount", tmp_path), 6)
    assert str(tmp_path) in line


def test_mount_on_a_missing_mount_point(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = hsmfs("mount", missing, "--cache", tmp_path / "c", "--state", tmp_path / "s")
    line = assert_one_line_error(result, 4)
    assert str(missing) in line


def test_mount_on_an_existing_mount_point(hsm: HsmMount, tmp_path: Path) -> None:
    result = hsmfs("mount", hsm.mnt, "--cache", tmp_path / "c", "--state", tmp_path / "s")
    line = assert_one_line_error(result, 4)
    assert str(hsm.mnt) in line


def test_bad_configuration_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "hsmfs.toml"
    config.write_text("[fs]\nentry_timeout = -1\n")
    (tmp_path / "mnt").mkdir()
    result = hsmfs("mount", tmp_path / "mnt", "--cache", tmp_path / "c", "--state",
                   tmp_path / "s", "--config", config)  # fmt: skip
    line = assert_one_line_error(result, 2)
    assert str(config) in line and "entry_timeout" in line
    assert not os.path.ismount(tmp_path / "mnt")


@pytest.mark.parametrize("source", ["--backend", "[hsm] backend"])
def test_an_empty_backend_is_refused_not_replaced_by_the_default(
    tmp_path: Path, source: str
) -> None:
    (tmp_path / "mnt").mkdir()
    args: list[str | Path] = ["mount", tmp_path / "mnt", "--cache", tmp_path / "c",
                              "--state", tmp_path / "s"]  # fmt: skip
    if source == "--backend":
        args += ["--backend", ""]
    else:
        config = tmp_path / "hsmfs.toml"
        config.write_text('[hsm]\nbackend = ""\n')
        args += ["--config", config]
    line = assert_one_line_error(hsmfs(*args), 2)
    assert source in line and "is empty" in line
    assert not os.path.ismount(tmp_path / "mnt")
    assert not (tmp_path / "s" / "objects").exists()  # no copies went to the default
