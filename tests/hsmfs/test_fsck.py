"""fsck finds and repairs each kind of damage it is shown (catalog damaged by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hsmfs.cache import CacheDir
from hsmfs.catalog import ROOT_INO, Catalog, Txn, u64
from hsmfs.fsck import Fsck
from tests.mounts import HsmMount

pytestmark = pytest.mark.fuse  # it starts mounts of its own


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


def link(parent: int, name: bytes) -> bytes:
    """A link as ``names`` and ``other_links`` record it: parent ino + name."""
    return u64(parent) + name


def recorded_links(mount: HsmMount, *path: bytes) -> tuple[bytes | None, set[bytes]]:
    """(``names`` value, ``other_links`` of) the inode at ``path``."""
    catalog = Catalog(mount.state / "catalog")
    try:
        ino = ino_of(catalog, *path)
        with catalog.read() as txn:
            others = {key[8:] for key, _ in txn.scan_prefix(b"other_links", u64(ino))}
            return txn.get_raw(b"names", u64(ino)), others
    finally:
        catalog.close()


def catalog_contents(mount: HsmMount) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every record of every sub-database, byte for byte."""
    catalog = Catalog(mount.state / "catalog", readonly=True)
    try:
        with catalog.read() as txn:
            return {name: list(txn.scan_prefix(name, b"")) for name in catalog.db}
    finally:
        catalog.close()


def test_clean_file_system_has_no_findings(populated: HsmMount) -> None:
    assert fsck(populated) == []


def test_a_healthy_catalog_is_left_untouched(populated: HsmMount) -> None:
    mnt = populated.start().mnt
    for name in ("h2", "h3"):  # three links; then the named one goes, and one is renamed
        os.link(mnt / "d" / "f", mnt / "e" / name)
    os.unlink(mnt / "d" / "f")
    os.rename(mnt / "e" / "h3", mnt / "d" / "h3")
    os.rename(mnt / "e", mnt / "d" / "e")  # a directory's name moves too
    (mnt / "d" / "e" / "single").write_bytes(b"one link")
    assert populated.stop() == 0
    before = catalog_contents(populated)
    assert before[b"other_links"]  # the hard links are really there
    assert fsck(populated) == []
    assert fsck(populated, repair=False) == []
    assert catalog_contents(populated) == before


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


def findings(mount: HsmMount) -> list[tuple[str, bool]]:
    catalog = Catalog(mount.state / "catalog")
    try:
        return [(f.message, f.repaired) for f in Fsck(catalog, CacheDir(mount.cache)).run()]
    finally:
        catalog.close()


def test_the_object_key_index_is_repaired_and_shared_keys_are_reported(
    populated: HsmMount,
) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        f, g = ino_of(catalog, b"d", b"f"), ino_of(catalog, b"d", b"g")
        txn.put_raw(b"hsm", u64(f), json.dumps({"key": "d/g"}).encode())  # g's key too
        txn.put_raw(b"hsm", u64(g), json.dumps({"key": "d/g"}).encode())  # not indexed
        txn.put_raw(b"keys", b"gone.bin", u64(f))  # a key f's record does not hold

    damage(populated, corrupt)
    found = findings(populated)
    assert [repaired for _, repaired in found] == [True, False, True], found
    dropped, shared, added = (message for message, _ in found)
    assert "gone.bin" in dropped and "d/g" in added
    assert "d/g" in shared and "hsmctl recheck" in shared
    # Repaired where it can be; the shared key stays, for the operator to recheck.
    assert findings(populated) == [(shared, False)]
    catalog = Catalog(populated.state / "catalog")
    try:
        with catalog.read() as txn:
            assert txn.key_owner("gone.bin") is None
            assert txn.key_owner("d/g") == ino_of(catalog, b"d", b"f")
    finally:
        catalog.close()


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


# -- names and other_links --------------------------------------------------------------
def test_lost_name_of_a_hard_linked_file_is_restored(populated: HsmMount) -> None:
    damage(populated, lambda c, txn: txn.delete_raw(b"names", u64(ino_of(c, b"d", b"g"))))
    catalog = Catalog(populated.state / "catalog")
    d, e = ino_of(catalog, b"d"), ino_of(catalog, b"e")
    catalog.close()
    assert fsck(populated) == ["names", "other_links"]
    assert fsck(populated) == []
    # The other link took the name (as when the named link is removed); the old name
    # became an other link.
    assert recorded_links(populated, b"d", b"g") == (link(e, b"g2"), {link(d, b"g")})
    populated.start()
    os.unlink(populated.mnt / "e" / "g2")
    assert populated.stop() == 0
    assert recorded_links(populated, b"d", b"g") == (link(d, b"g"), set())
    assert fsck(populated) == []


def test_name_that_is_no_entry_is_replaced_and_a_missing_one_restored(
    populated: HsmMount,
) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        e = ino_of(catalog, b"e")
        txn.put_raw(b"names", u64(ino_of(catalog, b"d", b"f")), link(e, b"gone"))
        txn.delete_raw(b"names", u64(e))  # a directory: its name is in every path below it

    damage(populated, corrupt)
    assert fsck(populated) == ["names", "names"]
    assert fsck(populated) == []
    catalog = Catalog(populated.state / "catalog")
    d = ino_of(catalog, b"d")
    with catalog.read() as txn:
        assert txn.path_of(ino_of(catalog, b"e", b"g2")) == "d/g"
    catalog.close()
    assert recorded_links(populated, b"d", b"f") == (link(d, b"f"), set())
    assert recorded_links(populated, b"e") == (link(ROOT_INO, b"e"), set())


def test_stale_and_missing_other_links_are_fixed(populated: HsmMount) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        e = ino_of(catalog, b"e")
        f, g = ino_of(catalog, b"d", b"f"), ino_of(catalog, b"d", b"g")
        txn.put_raw(b"other_links", u64(f) + link(e, b"old-f"), b"")  # f has one link
        txn.put_raw(b"other_links", u64(g) + link(e, b"old-g"), b"")
        txn.delete_raw(b"other_links", u64(g) + link(e, b"g2"))
        txn.put_raw(b"names", u64(4242), link(e, b"ghost"))  # no such inode
        txn.put_raw(b"other_links", u64(4242) + link(e, b"ghost2"), b"")

    damage(populated, corrupt)
    assert sorted(fsck(populated)) == ["names"] + ["other_links"] * 4
    assert fsck(populated) == []
    catalog = Catalog(populated.state / "catalog")
    d, e = ino_of(catalog, b"d"), ino_of(catalog, b"e")
    with catalog.read() as txn:
        assert txn.get_raw(b"names", u64(4242)) is None
        assert list(txn.scan_prefix(b"other_links", u64(4242))) == []
    catalog.close()
    assert recorded_links(populated, b"d", b"f") == (link(d, b"f"), set())
    assert recorded_links(populated, b"d", b"g") == (link(d, b"g"), {link(e, b"g2")})
    # The restored other link takes over the name when the named link goes.
    populated.start()
    os.unlink(populated.mnt / "d" / "g")
    assert populated.stop() == 0
    assert recorded_links(populated, b"e", b"g2") == (link(e, b"g2"), set())


def test_dry_run_reports_link_index_damage_as_a_repair_would(populated: HsmMount) -> None:
    def corrupt(catalog: Catalog, txn: Txn) -> None:
        txn.delete_raw(b"names", u64(ino_of(catalog, b"d", b"g")))
        txn.put_raw(b"other_links", u64(ino_of(catalog, b"d", b"f")) + b"x" * 9, b"")

    damage(populated, corrupt)
    before = catalog_contents(populated)
    expected = ["names", "other_links", "other_links"]
    assert fsck(populated, repair=False) == expected
    assert catalog_contents(populated) == before
    cmd = [sys.executable, "-m", "hsmfs.cli", "fsck", "--state", str(populated.state),
           "--cache", str(populated.cache)]  # fmt: skip
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 4, dry.stdout + dry.stderr
    assert "has no name" in dry.stdout and "stale other link" in dry.stdout
    assert catalog_contents(populated) == before
    fixed = subprocess.run(cmd, capture_output=True, text=True)
    assert fixed.returncode == 1 and fixed.stdout.count("[repaired]") == len(expected)
    assert fsck(populated) == []
