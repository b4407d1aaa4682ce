"""fsck finds and repairs each kind of damage it is shown (catalog damaged by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hsmfs.cache import CacheDir
from hsmfs.catalog import ROOT_INO, Catalog, Txn
from hsmfs.fsck import Fsck
from tests.mounts import HsmMount


@pytest.fixture
def populated(tmp_path: Path) -> Iterator[HsmMount]:
    """A stopped file system holding d/f ("data"), d/g ("more"), e/ and a hard link."""
    mount = HsmMount(tmp_path).start()
    try:
        (mount.mnt / "d").mkdir()
        (mount.mnt / "e").mkdir()
        (mount.mnt / "d" / "f").write_bytes(b"data")
        (mount.mnt / "d" / "g").write_bytes(b"more")
        os.link(mount.mnt / "d" / "g", mount.mnt / "e" / "g2")
        assert mount.stop() == 0
        yield mount
    finally:
        mount.cleanup()


def fsck(mount: HsmMount, repair: bool = True) -> list[str]:
    catalog = Catalog(mount.state / "catalog")
    try:
        return [f.check for f in Fsck(catalog, CacheDir(mount.cache), repair=repair).run()]
    finally:
        catalog.close()


def ino_of(catalog: Catalog, *path: bytes) -> int:
    with catalog.read() as txn:
        ino = ROOT_INO
        for name in path:
            found = txn.lookup(ino, name)
            assert found is not None
            ino = found
        return ino


def damage(mount: HsmMount, func: Callable[[Catalog, Txn], object]) -> None:
    catalog = Catalog(mount.state / "catalog")
    try:
        with catalog.write() as txn:
            func(catalog, txn)
    finally:
        catalog.close()


def test_clean_file_system_has_no_findings(populated: HsmMount) -> None:
    assert fsck(populated) == []


def test_wrong_link_count_is_fixed(populated: HsmMount) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        inode = txn.get_inode(ino_of(catalog, b"d", b"g"))
        inode.nlink = 7
        txn.put_inode(inode)

    damage(populated, corrupt)
    assert fsck(populated) == ["link_counts"]
    assert fsck(populated) == []
    populated.start()
    assert os.stat(populated.mnt / "d" / "g").st_nlink == 2


def test_dangling_entry_is_removed(populated: HsmMount) -> None:
    damage(populated, lambda c, txn: txn.add_entry(ROOT_INO, b"ghost", 9999))
    assert "dangling_entries" in fsck(populated)
    populated.start()
    assert not (populated.mnt / "ghost").exists()


def test_unreachable_inode_goes_to_lost_and_found(populated: HsmMount) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        txn.remove_entry(ino_of(catalog, b"d"), b"f")

    damage(populated, corrupt)
    assert "unreachable" in fsck(populated)
    assert fsck(populated) == []
    populated.start()
    found = list((populated.mnt / "lost+found").iterdir())
    assert [p.read_bytes() for p in found] == [b"data"]


def test_cache_file_without_inode_is_deleted(populated: HsmMount) -> None:
    stray = CacheDir(populated.cache).path(123456)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"garbage")
    assert fsck(populated) == ["cache_orphans"]
    assert not stray.exists()


def test_missing_data_marks_file_lost_and_reads_fail_with_eio(populated: HsmMount) -> None:
    catalog = Catalog(populated.state / "catalog")
    ino = ino_of(catalog, b"d", b"f")
    catalog.close()
    CacheDir(populated.cache).path(ino).unlink()
    assert fsck(populated) == ["missing_data"]
    populated.start()
    assert os.getxattr(populated.mnt / "d" / "f", "user.hsm.state") == b"lost"
    with pytest.raises(OSError) as exc:
        (populated.mnt / "d" / "f").read_bytes()
    assert exc.value.errno == 5  # EIO, never wrong bytes


def test_size_mismatch_takes_the_cache_file_size(populated: HsmMount) -> None:
    catalog = Catalog(populated.state / "catalog")
    ino = ino_of(catalog, b"d", b"f")
    catalog.close()
    with open(CacheDir(populated.cache).path(ino), "ab") as f:
        f.write(b"+tail")
    assert fsck(populated) == ["sizes"]
    populated.start()
    assert (populated.mnt / "d" / "f").read_bytes() == b"data+tail"


def test_stale_readdir_index_and_parent_pointer_are_fixed(populated: HsmMount) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        d = txn.get_inode(ino_of(catalog, b"d"))
        d.parent = ino_of(catalog, b"e")
        txn.put_inode(d)
        txn.raw.put(
            (ROOT_INO).to_bytes(8, "big") + (99999).to_bytes(8, "big"),
            b"zombie",
            db=catalog.db[b"cookies"],
        )

    damage(populated, corrupt)
    assert sorted(fsck(populated)) == ["cookie_index", "directory_parents"]
    populated.start()
    assert sorted(os.listdir(populated.mnt)) == ["d", "e"]
    assert os.stat(populated.mnt / "d" / "..").st_ino == os.stat(populated.mnt).st_ino


def test_dry_run_reports_but_changes_nothing(populated: HsmMount) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        inode = txn.get_inode(ino_of(catalog, b"d", b"f"))
        inode.nlink = 3
        txn.put_inode(inode)

    damage(populated, corrupt)
    assert fsck(populated, repair=False) == ["link_counts"]
    assert fsck(populated, repair=False) == ["link_counts"]


def test_cli_exit_codes(populated: HsmMount) -> None:
    cmd = [sys.executable, "-m", "hsmfs.cli", "fsck", "--state", str(populated.state),
           "--cache", str(populated.cache)]  # fmt: skip
    clean = subprocess.run(cmd, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    damage(populated, lambda c, txn: txn.add_entry(ROOT_INO, b"ghost", 4242))
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 4 and "ghost" in dry.stdout
    fixed = subprocess.run(cmd, capture_output=True, text=True)
    assert fixed.returncode == 1 and "repaired" in fixed.stdout


def test_fsck_refuses_a_mounted_state_directory(populated: HsmMount) -> None:
    populated.start()
    cmd = [sys.executable, "-m", "hsmfs.cli", "fsck", "--state", str(populated.state),
           "--cache", str(populated.cache)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 3
    assert "in use" in result.stderr and "Traceback" not in result.stderr
