"""Object keys follow names: a hard-linked file whose first link is removed is migrated
under a link that remains, also in a catalog of the first format, upgraded."""

from __future__ import annotations

import os
from pathlib import Path

from hsmfs.catalog import Catalog, u64
from tests.hsm.conftest import MountFactory, file_store
from tests.hsm.support import Store, hsm_attr, wait_state
from tests.mounts import wait_for

# Files stay dirty until the test asks for their migration (user.hsm.action=archive).
ON_REQUEST = "[hsm]\nmigrate_after = 3600\nscan_interval = 0.2\nsnapshot_interval = 1\n"


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def archive(path: Path) -> None:
    os.setxattr(path, "user.hsm.action", b"archive")
    wait_state(path, "archived")


def test_hard_link_whose_first_name_is_removed_migrates_under_a_remaining_name(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, ON_REQUEST)
    first = hsm.mnt / "a" / "first"
    links = {"b/second": hsm.mnt / "b" / "second", "c/third": hsm.mnt / "c" / "third"}
    data = os.urandom(100_000)
    write_file(first, data)
    for link in links.values():
        link.parent.mkdir()
        os.link(first, link)
    first.unlink()
    archive(links["b/second"])
    key = hsm_attr(links["b/second"], "key")
    assert key in links
    assert store.keys() == {key}
    assert store.get(key) == data

    links.pop(key).unlink()  # the name the object is under goes too: the last link takes over
    [(last_key, last)] = links.items()
    with open(last, "ab") as f:
        f.write(b"more")
    archive(last)
    assert hsm_attr(last, "key") == last_key
    # The copy under the removed name goes once replaced (after the next snapshot).
    wait_for(lambda: store.keys() == {last_key}, what="the superseded object to go")
    assert store.get(last_key) == data + b"more"


def downgrade_to_format_1(state: Path, lost_first_name: int) -> None:
    """Make the catalog what format 1 left: no index of other links, and no name at all
    for a hard-linked file whose first link was removed."""
    catalog = Catalog(state / "catalog")
    try:
        with catalog.write() as txn:
            txn.raw.drop(txn.db(b"other_links"), delete=False)
            txn.raw.delete(u64(lost_first_name), db=txn.db(b"names"))
            txn.set_meta(b"version", b"1")
        catalog.sync()
    finally:
        catalog.close()


def test_catalog_of_format_1_is_upgraded_and_keeps_a_name_for_hard_links(
    tmp_path: Path, make_mount: MountFactory
) -> None:
    store = file_store(tmp_path)
    hsm = make_mount(store, ON_REQUEST)
    linked = hsm.mnt / "a" / "linked"
    other = hsm.mnt / "b" / "other"
    write_file(linked, b"linked")
    other.parent.mkdir()
    os.link(linked, other)
    orphaned_first = hsm.mnt / "c" / "first"  # its first link goes before the downgrade
    survivor = hsm.mnt / "d" / "survivor"
    write_file(orphaned_first, b"survivor")
    survivor.parent.mkdir()
    os.link(orphaned_first, survivor)
    orphaned_first.unlink()
    survivor_ino = os.stat(survivor).st_ino
    assert hsm.stop() == 0
    downgrade_to_format_1(hsm.state, survivor_ino)

    hsm.start()
    assert "upgraded from format version 1 to" in hsm.log.read_text()
    linked.unlink()
    archive(other)
    archive(survivor)
    assert hsm_attr(other, "key") == "b/other"
    assert hsm_attr(survivor, "key") == "d/survivor"
    assert store.keys() == {"b/other", "d/survivor"}
