"""kill -9 of the daemon, then a new mount: fsync'd data intact, catalog consistent.

The mounts here sync the catalog only when asked (a one-hour timer), so whatever the
new mount gets back it owes to fsync or to crash recovery, not to a lucky timer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmfs.catalog import ROOT_INO, Catalog
from tests.hsmfs.test_persistence import populate, snapshot
from tests.mounts import HsmMount, wait_for

pytestmark = pytest.mark.fuse  # it starts mounts of its own

NO_TIMER = "[fs]\nsync_interval = 3600\n"


@pytest.fixture
def crashable(tmp_path: Path) -> Iterator[HsmMount]:
    mount = HsmMount(tmp_path, config_text=NO_TIMER).start()
    try:
        yield mount
    finally:
        mount.cleanup()


def fsck_dry_run(hsm: HsmMount) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmfs.cli", "fsck", "--dry-run",
         "--state", str(hsm.state), "--cache", str(hsm.cache)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_clean_after_stop(hsm: HsmMount) -> None:
    assert hsm.stop() == 0
    result = fsck_dry_run(hsm)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is clean" in result.stdout


def catalog_size(hsm: HsmMount, name: bytes) -> int:
    """The size the on-disk catalog records for a file in the root (daemon not running)."""
    catalog = Catalog(hsm.state / "catalog", readonly=True)
    try:
        with catalog.read() as txn:
            ino = txn.lookup(ROOT_INO, name)
            assert ino is not None
            inode = txn.get_inode(ino)
            assert inode is not None
            return inode.size
    finally:
        catalog.close()


def close_dead(fd: int) -> None:
    """Close a descriptor whose daemon is gone (the kernel may report the lost flush)."""
    try:
        os.close(fd)
    except OSError:
        pass


def test_fsynced_files_survive_kill(crashable: HsmMount) -> None:
    mnt = crashable.mnt
    (mnt / "d").mkdir()
    expected: dict[str, bytes] = {}
    open_fds: list[int] = []
    for i in range(20):
        data = os.urandom(1000 * i * i + 1)
        path = mnt / "d" / f"f{i}"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, data[: len(data) // 2])
        os.write(fd, data[len(data) // 2 :])
        os.fsync(fd)
        if i % 2:
            os.close(fd)
        else:
            # Left open: its size lives in the daemon's memory until fsync commits it.
            open_fds.append(fd)
        expected[f"f{i}"] = data
    crashable.kill()
    for fd in open_fds:
        close_dead(fd)
    crashable.start()
    for name, data in expected.items():
        path = mnt / "d" / name
        assert os.stat(path).st_size == len(data), name
        assert path.read_bytes() == data, name
    assert_clean_after_stop(crashable)


def test_file_open_for_writing_at_kill_gets_its_size_back(crashable: HsmMount) -> None:
    mnt = crashable.mnt
    data = os.urandom(3 * 1024 * 1024 + 7)
    fd = os.open(mnt / "growing", os.O_CREAT | os.O_WRONLY, 0o644)
    for off in range(0, len(data), 256 * 1024):
        os.write(fd, data[off : off + 256 * 1024])
    crashable.kill()
    close_dead(fd)
    # The catalog never heard of the new size; only recovery can give it back.
    assert catalog_size(crashable, b"growing") == 0
    crashable.start()
    assert os.stat(mnt / "growing").st_size == len(data)
    assert (mnt / "growing").read_bytes() == data
    assert_clean_after_stop(crashable)


def test_recovered_size_after_shrinking_write(crashable: HsmMount) -> None:
    mnt = crashable.mnt
    (mnt / "f").write_bytes(b"x" * 100_000)
    fd = os.open(mnt / "f", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"short")
    crashable.kill()
    close_dead(fd)
    crashable.start()
    assert (mnt / "f").read_bytes() == b"short"
    assert_clean_after_stop(crashable)


def test_unlinked_open_file_is_purged_after_kill(crashable: HsmMount) -> None:
    mnt = crashable.mnt
    (mnt / "keep").write_bytes(b"keep")
    (mnt / "gone").write_bytes(b"gone" * 1000)
    fd = os.open(mnt / "gone", os.O_RDONLY)
    os.unlink(mnt / "gone")
    crashable.kill()
    close_dead(fd)
    crashable.start()
    assert os.listdir(mnt) == ["keep"]
    data_files = [p for p in (crashable.cache / "data").rglob("*") if p.is_file()]
    assert len(data_files) == 1  # only "keep" has data in the cache
    assert_clean_after_stop(crashable)


def test_tree_survives_kill_after_fsyncdir(crashable: HsmMount) -> None:
    populate(crashable.mnt)
    dfd = os.open(crashable.mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    before = snapshot(crashable.mnt)
    crashable.kill()
    crashable.start()
    assert snapshot(crashable.mnt) == before
    assert_clean_after_stop(crashable)


def test_kill_during_a_storm_of_namespace_changes(crashable: HsmMount) -> None:
    mnt = crashable.mnt
    (mnt / "stable").mkdir()
    for i in range(10):
        (mnt / "stable" / f"f{i}").write_bytes(b"%d" % i)
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    stop = threading.Event()
    done = [0]

    def storm(worker: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                base = mnt / f"w{worker}-{i}"
                base.mkdir()
                (base / "f").write_bytes(b"data" * 100)
                os.link(base / "f", base / "g")
                os.rename(base / "f", base / "h")
                os.unlink(base / "g")
                if i % 2:
                    os.unlink(base / "h")
                    os.rmdir(base)
                i += 1
                done[0] += 1
            except OSError:
                return  # the daemon is gone

    threads = [threading.Thread(target=storm, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: done[0] >= 30, what="the storm to get going")
    crashable.kill()
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    crashable.start()
    for i in range(10):
        assert (mnt / "stable" / f"f{i}").read_bytes() == b"%d" % i
    for path in mnt.rglob("*"):
        os.lstat(path)  # every listed name resolves
    assert_clean_after_stop(crashable)


def test_recovery_removes_cache_files_of_no_inode(crashable: HsmMount) -> None:
    """The state a kill leaves between a catalog commit and the matching cache change."""
    mnt = crashable.mnt
    (mnt / "kept").write_bytes(b"kept")
    (mnt / "deleted").write_bytes(b"deleted data")
    kept = os.stat(mnt / "kept").st_ino
    deleted = os.stat(mnt / "deleted").st_ino
    data_of_deleted = crashable.cache / "data" / f"{deleted & 0xFF:02x}" / f"{deleted:x}"
    assert data_of_deleted.read_bytes() == b"deleted data"
    saved = data_of_deleted.read_bytes()
    os.unlink(mnt / "deleted")
    crashable.kill()
    # An unlink whose data was not removed yet, and a create that never committed.
    data_of_deleted.parent.mkdir(exist_ok=True)
    data_of_deleted.write_bytes(saved)
    never = deleted + 1
    uncommitted = crashable.cache / "data" / f"{never & 0xFF:02x}" / f"{never:x}"
    uncommitted.parent.mkdir(exist_ok=True)
    uncommitted.write_bytes(b"")
    crashable.start()
    assert not data_of_deleted.exists()
    assert not uncommitted.exists()
    assert (mnt / "kept").read_bytes() == b"kept"
    assert os.stat(mnt / "kept").st_ino == kept
    (mnt / "new").write_bytes(b"new")  # takes the number the lost create had
    assert (mnt / "new").read_bytes() == b"new"
    assert_clean_after_stop(crashable)
