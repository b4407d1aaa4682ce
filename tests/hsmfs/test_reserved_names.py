"""Names the mount keeps for itself: ``/.hsmfs`` (its key space in the object store, where
the catalog snapshots live) and ``NAME.tar!MEMBER`` (the syntax of tar members).

Creating either is refused; entries of such names made before the rule (an older hsmfs)
can still be renamed away and removed, and a file under ``/.hsmfs`` is never migrated
over the snapshot.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from hsmfs.cache import CacheDir
from hsmfs.catalog import ROOT_INO, Catalog
from tests.mounts import HsmMount, wait_for

CREATORS: dict[str, Callable[[Path], object]] = {
    "mkdir": lambda p: os.mkdir(p),
    "create": lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)),
    "mknod": lambda p: os.mknod(p, stat.S_IFREG | 0o644),
    "symlink": lambda p: os.symlink("x", p),
    "link": lambda p: os.link(p.parent / "plain", p),
    "rename": lambda p: os.rename(p.parent / "plain", p),
}


def refused(action: Callable[[Path], object], path: Path) -> int:
    with pytest.raises(OSError) as caught:
        action(path)
    return caught.value.errno or 0


@pytest.mark.parametrize("how", sorted(CREATORS))
def test_the_snapshot_name_at_the_root_cannot_be_made(hsm: HsmMount, how: str) -> None:
    (hsm.mnt / "plain").write_bytes(b"x")
    assert refused(CREATORS[how], hsm.mnt / ".hsmfs") == errno.EPERM
    assert not os.path.lexists(hsm.mnt / ".hsmfs")
    assert "/.hsmfs" in hsm.log.read_text()  # the log line says why
    os.mkdir(hsm.mnt / "sub")  # only the root's name is hsmfs's own
    (hsm.mnt / "plain").rename(hsm.mnt / "sub" / ".hsmfs")


@pytest.mark.parametrize("how", sorted(CREATORS))
def test_tar_member_names_cannot_be_made(hsm: HsmMount, how: str) -> None:
    (hsm.mnt / "plain").write_bytes(b"x")
    # Before the tar exists: such a file would hide the member forever after.
    assert refused(CREATORS[how], hsm.mnt / "x.tar!y") == errno.EPERM
    assert "reserved for the members of tar archives" in hsm.log.read_text()
    (hsm.mnt / "x.tar").write_bytes(b"")  # once it exists, the name is inside the tar
    assert refused(CREATORS[how], hsm.mnt / "x.tar!y") == errno.EROFS
    (hsm.mnt / "a!b").write_bytes(b"fine")  # a bang elsewhere is an ordinary name


def add_legacy_entries(hsm: HsmMount, entries: dict[bytes, bytes]) -> None:
    """Files at the root as an older hsmfs let them be made (mount stopped meanwhile)."""
    assert hsm.stop() == 0
    catalog = Catalog(hsm.state / "catalog")
    cache = CacheDir(hsm.cache)
    try:
        with catalog.write() as txn:
            for path, data in entries.items():
                *dirs, name = path.split(b"/")
                parent = ROOT_INO
                for part in dirs:
                    found = txn.lookup(parent, part)
                    if found is None:
                        node = txn.new_inode(stat.S_IFDIR | 0o755, 0, 0, parent=parent)
                        txn.add_entry(parent, part, node.ino)
                        up = txn.get_inode(parent)
                        assert up is not None
                        up.nlink += 1
                        txn.put_inode(up)
                        found = node.ino
                    parent = found
                inode = txn.new_inode(stat.S_IFREG | 0o644, 0, 0)
                inode.size = len(data)
                txn.put_inode(inode)
                txn.add_entry(parent, name, inode.ino)
                path_of_data = cache.path(inode.ino)
                path_of_data.parent.mkdir(parents=True, exist_ok=True)
                path_of_data.write_bytes(data)
                txn.enqueue(inode.ino, 0)
        catalog.sync()
    finally:
        catalog.close()
    hsm.start()


def test_a_legacy_member_named_file_can_be_removed(hsm: HsmMount) -> None:
    add_legacy_entries(hsm, {b"x.tar!y": b"made before the rule"})
    (hsm.mnt / "x.tar").write_bytes(b"")
    shadow = hsm.mnt / "x.tar!y"
    assert shadow.read_bytes() == b"made before the rule"
    shadow.rename(hsm.mnt / "kept")  # moved away, or removed: not EROFS
    assert (hsm.mnt / "kept").read_bytes() == b"made before the rule"
    add_legacy_entries(hsm, {b"z.tar!y": b"another"})
    (hsm.mnt / "z.tar").write_bytes(b"")
    (hsm.mnt / "z.tar!y").unlink()
    assert not os.path.lexists(hsm.mnt / "z.tar!y")


def test_a_legacy_file_under_the_snapshot_name_is_never_migrated(hsm: HsmMount) -> None:
    add_legacy_entries(hsm, {b".hsmfs/catalog.mdb": b"a user's file"})
    user_file = hsm.mnt / ".hsmfs" / "catalog.mdb"
    os.setxattr(user_file, "user.hsm.action", b"archive")
    wait_for(lambda: "rename /.hsmfs to migrate" in hsm.log.read_text(), what="the refusal")
    assert os.getxattr(user_file, "user.hsm.state") == b"dirty"
    assert user_file.read_bytes() == b"a user's file"
    objects = hsm.state / "objects"
    assert not (objects / ".hsmfs" / "catalog.mdb").exists() or (
        (objects / ".hsmfs" / "catalog.mdb").read_bytes() != b"a user's file"
    )
    # Moved out of the reserved name, it migrates like any file.
    (hsm.mnt / ".hsmfs").rename(hsm.mnt / "was-hsmfs")
    moved = hsm.mnt / "was-hsmfs" / "catalog.mdb"
    os.setxattr(moved, "user.hsm.action", b"archive")
    wait_for(lambda: os.getxattr(moved, "user.hsm.state") == b"archived", what="migration")
    assert (objects / "was-hsmfs" / "catalog.mdb").read_bytes() == b"a user's file"
