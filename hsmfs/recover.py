"""hsmfs recover: rebuild a mount's state and cache directories from the object store.

``recover`` restores the newest catalog snapshot (snapshot.py) and reconciles it with a
listing of the bucket: files whose object exists come back ``released`` at the same path
with the same attributes; files archived after the snapshot, and files whose object was
replaced after it, take their attributes from their object metadata; files that never
reached the store are marked ``lost``. Without a snapshot, every object is rebuilt from
its metadata at its key's path. Objects the snapshot lists as deferred deletions belong
to no file: they are not rebuilt (the mount deletes them after its first snapshot).
"""

from __future__ import annotations

import logging
import shutil
import stat
import tempfile
from pathlib import Path

from rich.progress import Progress

from .backends import NoSuchObject, ObjectInfo, ObjectStore
from .cache import CacheDir
from .catalog import ROOT_INO, Catalog, HsmState, Inode, Txn
from .errors import CatalogError
from .lock import StateLock
from .members import is_tar_name, store_index
from .snapshot import SNAPSHOT_KEY
from .tarindex import index_tar

log = logging.getLogger(__name__)

OWN_PREFIX = ".hsmfs/"  # hsmfs's own objects: never rebuilt as files from metadata


def recover(backend: ObjectStore, state_dir: Path, cache_dir: Path) -> dict[str, int]:
    """Rebuild the state and cache directories from the object store alone."""
    catalog_dir = state_dir / "catalog"
    if (catalog_dir / "data.mdb").exists():
        raise CatalogError(
            f"{state_dir} already holds a catalog; recover only into an empty state "
            "directory (move the old one aside first)"
        )
    with StateLock(state_dir, "hsmfs recover"):
        catalog_dir.mkdir(parents=True, exist_ok=True)
        try:
            backend.download(SNAPSHOT_KEY, catalog_dir / "data.mdb")
            from_snapshot = True
        except NoSuchObject:
            (catalog_dir / "data.mdb").unlink(missing_ok=True)
            from_snapshot = False
            log.warning("no catalog snapshot in %s: rebuilding from metadata", backend.describe())
        objects = {i.key: i for i in backend.list_objects("") if i.key != SNAPSHOT_KEY}
        shutil.rmtree(cache_dir / "data", ignore_errors=True)
        CacheDir(cache_dir)
        catalog = Catalog(catalog_dir)
        counts = {"released": 0, "lost": 0, "rebuilt": 0, "from_snapshot": int(from_snapshot)}
        try:
            with catalog.write() as txn:
                referenced = _reconcile(txn, backend, objects, counts, state_dir)
                unowned = set(txn.deferred_deletes())
                with Progress(transient=True) as progress:
                    task = progress.add_task("rebuilding from object metadata", total=len(objects))
                    for key, info in objects.items():
                        progress.advance(task)
                        if key not in referenced | unowned and not key.startswith(OWN_PREFIX):
                            _rebuild(txn, backend, key, info, state_dir)
                            counts["rebuilt"] += 1
                txn.set_meta(b"clean", b"1")
            catalog.sync()
        finally:
            catalog.close()
    return counts


def _reconcile(
    txn: Txn,
    backend: ObjectStore,
    objects: dict[str, ObjectInfo],
    counts: dict[str, int],
    workdir: Path,
) -> set[str]:
    """Every file of the snapshot becomes released (object present) or lost (absent).

    An object that differs from the snapshot's record was uploaded after the snapshot: it
    holds the newest data, so the file takes its attributes from it (the record's block
    checksums would fail its stage)."""
    for name in (b"open_writes", b"orphans", b"staging"):
        for ino in txn.members(name):
            txn.remove_from(name, ino)
    for ino, _ in txn.queue():
        txn.dequeue(ino)
    referenced: set[str] = set()
    for inode in list(txn.inodes()):
        if not inode.is_reg:
            continue
        record = txn.hsm_record(inode.ino)
        key = record.get("key")
        info = objects.get(key) if key else None
        head = None
        if not key:  # dirty at the snapshot: maybe archived since, under its path
            key, info, head = _archived_since(txn, backend, objects, inode)
        elif info is not None:
            replaced = info.size != inode.size or _object_md5(backend, info) != record.get("md5")
            head = backend.head(key) if replaced else None
        if head is not None:
            assert key is not None and info is not None
            _apply_object(txn, backend, inode, key, info, head, workdir)
            referenced.add(key)
            counts["released"] += 1
            continue
        if key and info is not None and inode.hsm_state != HsmState.DIRTY:
            inode.hsm_state = HsmState.RELEASED
            referenced.add(key)
            counts["released"] += 1
        else:
            inode.hsm_state = HsmState.LOST
            counts["lost"] += 1
            log.error("%s: no copy in the object store; marked lost", txn.path_of(inode.ino))
        txn.put_inode(inode)
    return referenced


def _archived_since(
    txn: Txn, backend: ObjectStore, objects: dict[str, ObjectInfo], inode: Inode
) -> tuple[str | None, ObjectInfo | None, ObjectInfo | None]:
    """(key, listing, HEAD) of the object a file dirty at the snapshot was migrated to
    after it: at its path (or the ``PATH~INO`` of a name taken), from this very inode."""
    path = txn.path_of(inode.ino)
    if path is None:
        return None, None, None
    for key in (path, f"{path}~{inode.ino}"):
        info = objects.get(key)
        if info is None:
            continue
        head = backend.head(key)
        if head is not None and head.metadata.get("hsmfs-ino") == str(inode.ino):
            return key, info, head
    return None, None, None


def _object_md5(backend: ObjectStore, info: ObjectInfo) -> str | None:
    """The MD5 of a listed object: from the listing when it tells (file://, or the ETag of
    a single-part S3 upload), else from a HEAD."""
    if info.md5:
        return info.md5
    if info.etag and "-" not in info.etag:
        return info.etag
    head = backend.head(info.key)
    return head.md5 if head is not None else None


def _rebuild(txn: Txn, backend: ObjectStore, key: str, info: ObjectInfo, workdir: Path) -> None:
    """Create the file an object was migrated from, at its key's path."""
    head = backend.head(key)
    parent = ROOT_INO
    *dirs, name = key.split("/")
    for part in dirs:
        child = txn.lookup(parent, part.encode())
        if child is None:
            node = txn.new_inode(stat.S_IFDIR | 0o755, 0, 0, parent=parent)
            txn.add_entry(parent, part.encode(), node.ino)
            up = txn.get_inode(parent)
            assert up is not None
            up.nlink += 1
            txn.put_inode(up)
            child = node.ino
        parent = child
    if txn.lookup(parent, name.encode()) is not None:
        log.warning("%s exists in the snapshot under another object; kept that one", key)
        return
    inode = txn.new_inode(stat.S_IFREG | 0o644, 0, 0)
    txn.add_entry(parent, name.encode(), inode.ino)
    _apply_object(txn, backend, inode, key, info, head, workdir)


def _apply_object(
    txn: Txn,
    backend: ObjectStore,
    inode: Inode,
    key: str,
    info: ObjectInfo,
    head: ObjectInfo | None,
    workdir: Path,
) -> None:
    """Make ``inode`` the released file of its object: attributes from the object's
    metadata, a record without block checksums, the member index of a tar."""
    meta = dict(head.metadata if head is not None else info.metadata)
    mode = int(meta.get("hsmfs-mode", "0o100644"), 8)
    inode.mode = mode if stat.S_ISREG(mode) else stat.S_IFREG | 0o644
    inode.uid = int(meta.get("hsmfs-uid", "0"))
    inode.gid = int(meta.get("hsmfs-gid", "0"))
    inode.size = info.size
    inode.mtime_ns = inode.ctime_ns = int(meta.get("hsmfs-mtime-ns", int(info.mtime * 1e9)))
    inode.hsm_state = HsmState.RELEASED
    txn.put_inode(inode)
    md5 = head.md5 if head is not None else info.md5
    txn.set_hsm_record(
        inode.ino, {"key": key, "md5": md5, "size": info.size, "archived_at": info.mtime}
    )
    if is_tar_name(key.rsplit("/", 1)[-1]):
        _index_from_store(txn, backend, key, inode.ino, workdir)


def _index_from_store(txn: Txn, backend: ObjectStore, key: str, tar: int, workdir: Path) -> None:
    """A tar rebuilt from the bucket gets its member index back (one download, discarded)."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="recover-") as tmp:
        local = Path(tmp) / "tar"
        backend.download(key, local)
        with open(local, "rb") as f:
            index = index_tar(f)
    store_index(txn, tar, index)
    if index.invalid:
        log.error("recovered tar %s is invalid: %s", key, index.invalid)
