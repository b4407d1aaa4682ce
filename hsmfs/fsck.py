"""hsmfs fsck: check the catalog against itself and against the cache; repair what it can.

Each ``check_*`` method looks for one kind of damage, reports every finding, and repairs
it unless this is a dry run. Given the object store (``--backend`` or the configuration's),
fsck also removes what killed uploads left there. Exit codes (as e2fsck): 0 clean, 1
damage found and repaired, 4 damage left (dry run, or not repairable).
"""

from __future__ import annotations

import json
import stat
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .backends import ObjectStore, ObjectStoreError
from .cache import CacheDir
from .catalog import FIRST_COOKIE, ROOT_INO, Catalog, HsmState, Txn, u64
from .errors import CatalogError
from .lock import StateLock

LOST_AND_FOUND = b"lost+found"


@dataclass
class Finding:
    check: str
    message: str
    repaired: bool


class Fsck:
    """The checks of one state directory, its cache and (optionally) its object store.

    Run it only under the state lock: no daemon may change the catalog meanwhile, and no
    upload of the mount can be running (unfinished ones are leftovers)."""

    def __init__(
        self,
        catalog: Catalog,
        cache: CacheDir,
        *,
        repair: bool = True,
        backend: ObjectStore | None = None,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.repair = repair
        self.backend = backend
        self.findings: list[Finding] = []
        self._check = ""

    def found(self, message: str, *, repairable: bool = True) -> bool:
        """Record a finding; True if the caller should repair it."""
        repair = self.repair and repairable
        self.findings.append(Finding(self._check, message, repair))
        return repair

    def run(self) -> list[Finding]:
        checks = [
            self.check_orphans,
            self.check_dangling_entries,
            self.check_cookie_index,
            self.check_unreachable,
            self.check_link_counts,
            self.check_directory_parents,
            self.check_names,
            self.check_other_links,
            self.check_cache_orphans,
            self.check_missing_data,
            self.check_sizes,
            self.check_counters,
            self.check_object_keys,
        ]
        for check in checks:
            self._check = check.__name__.removeprefix("check_")
            raw = self.catalog.env.begin(write=True)
            try:
                check(Txn(self.catalog, raw))
            except BaseException:
                raw.abort()
                raise
            if self.repair:
                raw.commit()
            else:
                raw.abort()
        self.catalog.sync()
        if self.backend is not None:
            self._check = "uploads"
            self.check_unfinished_uploads(self.backend)
        return self.findings

    def check_unfinished_uploads(self, backend: ObjectStore) -> None:
        """Uploads a killed daemon left unfinished cost storage (S3 multipart uploads are
        never listed as objects); none can be running while fsck holds the state lock."""
        try:
            count = backend.abort_stale_uploads(time.time(), dry_run=not self.repair)
        except ObjectStoreError as exc:
            self.found(f"cannot look for unfinished uploads: {exc}", repairable=False)
            return
        if count:
            self.found(f"{count} unfinished upload(s) in {backend.describe()}; aborting them")

    def check_orphans(self, txn: Txn) -> None:
        """Inodes unlinked while open are deleted at the next mount; do it now."""
        for ino in txn.members(b"orphans"):
            inode = txn.get_inode(ino)
            if inode is not None and inode.nlink > 0:
                if self.found(f"inode {ino} is listed as unlinked but has {inode.nlink} link(s)"):
                    txn.remove_from(b"orphans", ino)
            elif self.found(f"inode {ino} was unlinked while open; deleting it"):
                txn.delete_inode(ino)
                self.cache.remove(ino)

    def check_dangling_entries(self, txn: Txn) -> None:
        """Directory entries must name an existing inode in an existing directory."""
        for parent, entry in list(txn.all_entries()):
            parent_inode = txn.get_inode(parent)
            if parent_inode is None or not parent_inode.is_dir:
                problem = f"entry {entry.name!r} is in inode {parent}, which is not a directory"
            elif txn.get_inode(entry.ino) is None:
                problem = (
                    f"entry {entry.name!r} in directory {parent} names missing inode {entry.ino}"
                )
            else:
                continue
            if self.found(problem + "; removing the entry"):
                txn.remove_entry(parent, entry.name)

    def check_cookie_index(self, txn: Txn) -> None:
        """The readdir index and the name index must describe the same entries."""
        by_key = {(parent, entry.name): entry.cookie for parent, entry in txn.all_entries()}
        seen = set()
        for parent, cookie, name in list(txn.all_cookies()):
            if by_key.get((parent, name)) != cookie:
                if self.found(f"readdir index of directory {parent} has a stale entry {name!r}"):
                    txn.delete_cookie(parent, cookie)
            else:
                seen.add((parent, name))
        for parent, name in by_key.keys() - seen:
            if self.found(f"entry {name!r} of directory {parent} is missing from readdir"):
                ino = txn.lookup(parent, name)
                assert ino is not None
                txn.delete_dentry(parent, name)
                txn.add_entry(parent, name, ino)

    def check_unreachable(self, txn: Txn) -> None:
        """Linked inodes without any directory entry go to /lost+found."""
        referenced = {entry.ino for _, entry in txn.all_entries()}
        orphans = set(txn.members(b"orphans"))
        for inode in list(txn.inodes()):
            if inode.ino == ROOT_INO or inode.ino in referenced or inode.ino in orphans:
                continue
            if inode.nlink == 0:
                if self.found(f"inode {inode.ino} has no links and no entry; deleting it"):
                    txn.delete_inode(inode.ino)
                    self.cache.remove(inode.ino)
                continue
            name = f"#{inode.ino}".encode()
            if self.found(
                f"inode {inode.ino} is unreachable; moving it to /lost+found/{name.decode()}"
            ):
                lost_found = self._lost_and_found(txn)
                txn.add_entry(lost_found, name, inode.ino)
                if inode.is_dir:
                    inode.parent = lost_found
                    txn.put_inode(inode)

    def _lost_and_found(self, txn: Txn) -> int:
        ino = txn.lookup(ROOT_INO, LOST_AND_FOUND)
        if ino is not None:
            return ino
        node = txn.new_inode(stat.S_IFDIR | 0o700, 0, 0, parent=ROOT_INO)
        txn.add_entry(ROOT_INO, LOST_AND_FOUND, node.ino)
        root = txn.get_inode(ROOT_INO)
        assert root is not None
        root.nlink += 1
        txn.put_inode(root)
        return node.ino

    def check_link_counts(self, txn: Txn) -> None:
        """nlink: the number of entries naming a file; 2 + subdirectories for a directory."""
        names: Counter[int] = Counter()
        subdirs: Counter[int] = Counter()
        for parent, entry in txn.all_entries():
            names[entry.ino] += 1
            child = txn.get_inode(entry.ino)
            if child is not None and child.is_dir:
                subdirs[parent] += 1
        for inode in list(txn.inodes()):
            if inode.ino not in names and inode.ino != ROOT_INO:
                continue  # orphans, handled above
            expected = 2 + subdirs[inode.ino] if inode.is_dir else names[inode.ino]
            if inode.nlink != expected and self.found(
                f"inode {inode.ino} has link count {inode.nlink}, expected {expected}; fixing"
            ):
                inode.nlink = expected
                txn.put_inode(inode)

    def check_directory_parents(self, txn: Txn) -> None:
        """A directory's ".." must be the directory that holds its entry."""
        for parent, entry in list(txn.all_entries()):
            child = txn.get_inode(entry.ino)
            if child is not None and child.is_dir and child.parent != parent:
                if self.found(
                    f"directory {entry.ino} says its parent is {child.parent}, not {parent}"
                ):
                    child.parent = parent
                    txn.put_inode(child)

    def check_names(self, txn: Txn) -> None:
        """``names`` must hold one of an inode's entries (a file's path, its object key),
        and nothing for an inode without entries."""
        links = links_by_inode(txn)
        names = names_by_inode(txn)
        others = other_links_by_inode(txn)
        for ino in sorted(links.keys() | names.keys()):
            current = names.get(ino)
            if txn.get_inode(ino) is None:  # entries naming it are dangling_entries' part
                if current is not None and self.found(
                    f"inode {ino} does not exist but is named by {describe(current)}; "
                    "removing the name"
                ):
                    txn.delete_raw(b"names", u64(ino))
                continue
            expected = expected_name(links.get(ino, set()), current, others.get(ino, set()))
            if expected == current:
                continue
            if expected is None:
                assert current is not None
                message = f"inode {ino} has no entries but is named by {describe(current)}"
                message += "; removing the name"
            elif current is None:
                message = f"inode {ino} has no name; naming it by {describe(expected)}"
            else:
                message = (
                    f"inode {ino} is named by {describe(current)}, which is not one of its "
                    f"entries; naming it by {describe(expected)}"
                )
            if self.found(message):
                if expected is None:
                    txn.delete_raw(b"names", u64(ino))
                else:  # an other link that becomes the name leaves other_links, as in use
                    txn.put_raw(b"names", u64(ino), expected)
                    txn.delete_raw(b"other_links", u64(ino) + expected)

    def check_other_links(self, txn: Txn) -> None:
        """``other_links`` must hold exactly an inode's entries other than its name: the
        links that take over the name when it is removed."""
        links = links_by_inode(txn)
        names = names_by_inode(txn)
        others = other_links_by_inode(txn)
        for ino in sorted(links.keys() | others.keys()):
            recorded = others.get(ino, set())
            if txn.get_inode(ino) is None:  # entries naming it are dangling_entries' part
                stale, missing, whose = recorded, set(), f"inode {ino}, which does not exist,"
            else:
                entries = links.get(ino, set())
                name = expected_name(entries, names.get(ino), recorded)
                expected = entries - {name}
                # In a dry run, the link that check_names makes the name is still here.
                moving = {name} if name != names.get(ino) else set()
                stale, missing = recorded - expected - moving, expected - recorded
                whose = f"inode {ino}"
            for link in sorted(stale):
                if self.found(f"{whose} has a stale other link, {describe(link)}; removing it"):
                    txn.delete_raw(b"other_links", u64(ino) + link)
            for link in sorted(missing):
                if self.found(f"{whose} is missing its other link {describe(link)}; adding it"):
                    txn.put_raw(b"other_links", u64(ino) + link, b"")

    def check_cache_orphans(self, txn: Txn) -> None:
        """Cache files of inodes the catalog does not know are garbage."""
        for ino, path in list(self.cache.inodes()):
            inode = txn.get_inode(ino) if ino > 0 else None
            if inode is None or not inode.is_reg:
                if self.found(f"cache file {path} belongs to no file; deleting it"):
                    path.unlink(missing_ok=True)

    def check_missing_data(self, txn: Txn) -> None:
        """A file whose only data should be in the cache but is not there is lost."""
        for inode in list(txn.inodes()):
            if not inode.is_reg or inode.hsm_state in (HsmState.RELEASED, HsmState.LOST):
                continue
            if not self.cache.exists(inode.ino):
                if inode.hsm_state == HsmState.ARCHIVED:
                    message = f"file inode {inode.ino} has no cache data; marking it released"
                    new_state = HsmState.RELEASED  # the object store still has a copy
                elif inode.size == 0:
                    continue  # normal: an empty file gets its cache file when first opened
                else:
                    message = f"file inode {inode.ino} has lost its data; marking it lost"
                    new_state = HsmState.LOST
                if self.found(message):
                    inode.hsm_state = new_state
                    txn.put_inode(inode)

    def check_sizes(self, txn: Txn) -> None:
        """For local data the cache file is the truth: every acknowledged byte is there."""
        for inode in list(txn.inodes()):
            if not inode.is_reg or inode.hsm_state != HsmState.DIRTY:
                continue
            size = self.cache.size(inode.ino)
            if size is not None and size != inode.size:
                if self.found(
                    f"file inode {inode.ino} has size {inode.size}, its data {size}; fixing"
                ):
                    inode.size = size
                    txn.put_inode(inode)

    def check_counters(self, txn: Txn) -> None:
        """The next inode number and entry cookie must be above every one in use."""
        max_ino = max((inode.ino for inode in txn.inodes()), default=ROOT_INO)
        max_cookie = max((cookie for _, cookie, _ in txn.all_cookies()), default=FIRST_COOKIE)
        for key, floor in ((b"next_ino", max_ino + 1), (b"next_cookie", max_cookie + 1)):
            if int(txn.meta(key) or b"0") < floor and self.found(
                f"counter {key.decode()} is below {floor}; raising it"
            ):
                txn.set_meta(key, str(floor).encode())

    def check_object_keys(self, txn: Txn) -> None:
        """``keys`` names, for every object key, the one file whose copy it is: an upload
        never takes another file's key. Two files recording one key share an object that
        the later upload overwrote; ``hsmctl recheck`` finds which one lost its copy."""
        recorded: defaultdict[str, list[int]] = defaultdict(list)
        for ino_key, value in txn.scan_prefix(b"hsm", b""):
            key = json.loads(bytes(value)).get("key")
            if key:
                recorded[key].append(int.from_bytes(ino_key, "big"))
        indexed = {k.decode(): int.from_bytes(v, "big") for k, v in txn.scan_prefix(b"keys", b"")}
        for key, owner in indexed.items():
            if owner not in recorded.get(key, []) and self.found(
                f"object {key} is indexed for inode {owner}, whose copy is elsewhere; "
                "dropping the index entry"
            ):
                txn.delete_raw(b"keys", key.encode())
        for key, inos in sorted(recorded.items()):
            if len(inos) > 1:
                self.found(
                    f"inodes {', '.join(map(str, sorted(inos)))} all record object {key}; "
                    "only one can have its copy there: run `hsmctl recheck` on those files",
                    repairable=False,
                )
            if indexed.get(key) not in inos and self.found(
                f"object {key} of inode {inos[0]} is missing from the key index; adding it"
            ):
                txn.put_raw(b"keys", key.encode(), u64(inos[0]))


def links_by_inode(txn: Txn) -> dict[int, set[bytes]]:
    """Every directory entry as a link (parent ino + name), by the inode it names."""
    links: defaultdict[int, set[bytes]] = defaultdict(set)
    for parent, entry in txn.all_entries():
        links[entry.ino].add(u64(parent) + entry.name)
    return dict(links)


def names_by_inode(txn: Txn) -> dict[int, bytes]:
    return {int.from_bytes(key, "big"): link for key, link in txn.scan_prefix(b"names", b"")}


def other_links_by_inode(txn: Txn) -> dict[int, set[bytes]]:
    others: defaultdict[int, set[bytes]] = defaultdict(set)
    for key, _ in txn.scan_prefix(b"other_links", b""):
        others[int.from_bytes(key[:8], "big")].add(key[8:])
    return dict(others)


def expected_name(links: set[bytes], name: bytes | None, others: set[bytes]) -> bytes | None:
    """The link that should name an inode: its name if that is one of its entries, else
    the first of its other links that is (the one the catalog would promote), else its
    first entry; None without entries."""
    if name in links:
        return name
    return min(others & links, default=None) or min(links, default=None)


def describe(link: bytes) -> str:
    return f"entry {link[8:]!r} in directory {int.from_bytes(link[:8], 'big')}"


def run_fsck(
    state_dir: Path, cache_dir: Path, *, repair: bool, backend: ObjectStore | None = None
) -> int:
    console = Console(stderr=False, highlight=False)
    if not (state_dir / "catalog" / "data.mdb").exists():
        raise CatalogError(f"no hsmfs catalog in {state_dir}; check the --state path")
    with StateLock(state_dir, "hsmfs fsck"):
        catalog = Catalog(state_dir / "catalog")
        try:
            fsck = Fsck(catalog, CacheDir(cache_dir), repair=repair, backend=backend)
            findings = fsck.run()
        finally:
            catalog.close()
    for f in findings:
        action = "repaired" if f.repaired else "NOT repaired"
        # One line per finding; names and paths are data, never markup (nor is the action).
        console.print(f"[bold]{f.check}[/]: {escape(f.message)} \\[{action}]", soft_wrap=True)
    if not findings:
        console.print(f"hsmfs fsck: {state_dir} is clean")
        return 0
    left = sum(1 for f in findings if not f.repaired)
    console.print(f"hsmfs fsck: {len(findings)} finding(s), {left} left unrepaired")
    return 4 if left else 1
