"""rename(2) in the catalog: replace, RENAME_NOREPLACE and RENAME_EXCHANGE, with the
checks POSIX asks for (a directory never moves into its own subtree, a non-empty
directory is never replaced)."""

from __future__ import annotations

import errno

import pyfuse3

from .catalog import ROOT_INO, Inode, Txn
from .errnos import existing, fail


def rename_entry(
    txn: Txn,
    parent_inode_old: int,
    name_old: bytes,
    parent_inode_new: int,
    name_new: bytes,
    flags: int,
) -> Inode | None:
    """Move ``name_old`` to ``name_new`` in one transaction; returns the inode it replaced
    if that lost its last link (the caller deletes or parks it, in the same transaction).
    """
    src_ino = txn.lookup(parent_inode_old, name_old)
    if src_ino is None:
        raise fail(errno.ENOENT)
    dst_ino = txn.lookup(parent_inode_new, name_new)
    old_parent = existing(txn, parent_inode_old)
    if parent_inode_new == parent_inode_old:
        new_parent = old_parent  # one object, so no update to it is lost
    else:
        new_parent = existing(txn, parent_inode_new)
    src = existing(txn, src_ino)
    if flags & pyfuse3.RENAME_EXCHANGE:
        if dst_ino is None:
            raise fail(errno.ENOENT)
        _exchange(txn, old_parent, name_old, src, new_parent, name_new, dst_ino)
        return None
    if dst_ino is not None and flags & pyfuse3.RENAME_NOREPLACE:
        raise fail(errno.EEXIST)
    if dst_ino == src_ino:
        return None  # two names of one inode: POSIX says do nothing
    if src.is_dir:
        check_not_ancestor(txn, src_ino, parent_inode_new)
    dst = None
    if dst_ino is not None:
        dst = existing(txn, dst_ino)
        if src.is_dir and not dst.is_dir:
            raise fail(errno.ENOTDIR)
        if dst.is_dir and not src.is_dir:
            raise fail(errno.EISDIR)
        if dst.is_dir and txn.has_entries(dst_ino):
            raise fail(errno.ENOTEMPTY)
        txn.remove_entry(parent_inode_new, name_new)
    txn.remove_entry(parent_inode_old, name_old)
    txn.add_entry(parent_inode_new, name_new, src_ino)
    src.touch(mtime=False)
    if src.is_dir and parent_inode_old != parent_inode_new:
        src.parent = parent_inode_new
        old_parent.nlink -= 1
        new_parent.nlink += 1
    if dst is not None:
        if dst.is_dir:
            dst.nlink = 0
            new_parent.nlink -= 1
        else:
            dst.nlink -= 1
        dst.touch(mtime=False)
        txn.put_inode(dst)
    old_parent.touch()
    new_parent.touch()
    txn.put_inode(src)
    txn.put_inode(old_parent)
    if new_parent.ino != old_parent.ino:
        txn.put_inode(new_parent)
    return dst if dst is not None and dst.nlink == 0 else None


def _exchange(
    txn: Txn,
    old_parent: Inode,
    name_old: bytes,
    src: Inode,
    new_parent: Inode,
    name_new: bytes,
    dst_ino: int,
) -> None:
    dst = existing(txn, dst_ino)
    if old_parent.ino != new_parent.ino:
        if src.is_dir:
            check_not_ancestor(txn, src.ino, new_parent.ino)
        if dst.is_dir:
            check_not_ancestor(txn, dst.ino, old_parent.ino)
    txn.remove_entry(old_parent.ino, name_old)
    txn.remove_entry(new_parent.ino, name_new)
    txn.add_entry(old_parent.ino, name_old, dst.ino)
    txn.add_entry(new_parent.ino, name_new, src.ino)
    if src.is_dir != dst.is_dir and old_parent.ino != new_parent.ino:
        moved_dir_to_new = 1 if src.is_dir else -1
        new_parent.nlink += moved_dir_to_new
        old_parent.nlink -= moved_dir_to_new
    if src.is_dir:
        src.parent = new_parent.ino
    if dst.is_dir:
        dst.parent = old_parent.ino
    src.touch(mtime=False)
    dst.touch(mtime=False)
    old_parent.touch()
    new_parent.touch()
    for node in {n.ino: n for n in (src, dst, old_parent, new_parent)}.values():
        txn.put_inode(node)


def check_not_ancestor(txn: Txn, moved_dir: int, new_parent: int) -> None:
    """A directory must not move into itself or its own subtree (EINVAL)."""
    ino = new_parent
    while True:
        if ino == moved_dir:
            raise fail(errno.EINVAL)
        if ino == ROOT_INO:
            return
        ino = existing(txn, ino).parent
