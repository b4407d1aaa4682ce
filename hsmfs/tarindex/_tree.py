"""The directory tree of one tar: lookup, children, and link resolution inside the tar."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ._errors import MemberLookupError
from ._member import NO_OFFSET, MemberKind, TarMember
from ._names import lexical_join, parent_of, sort_key
from ._record import encode_member, member_key

MAX_LINK_HOPS = 40  # as Linux's MAXSYMLINKS
IMPLICIT_DIR_MODE = 0o755


def _directory(path: str, mtime_ns: int) -> TarMember:
    return TarMember(
        path=path,
        kind=MemberKind.DIR,
        header_offset=NO_OFFSET,
        data_offset=NO_OFFSET,
        size=0,
        mode=IMPLICIT_DIR_MODE,
        mtime_ns=mtime_ns,
        implicit=True,
    )


@dataclass
class TarIndex:
    """Every member of one tar by path, the tree they form, and whether the tar is valid.

    `invalid` is None for a good tar, else a one-line reason naming the member at fault;
    `problems` holds every reason found. `skipped` lists members deliberately not indexed
    (devices, FIFOs). Paths are normalized (see normalize_member_path); "" is the root.
    """

    members: dict[str, TarMember]
    children_of: dict[str, tuple[str, ...]]
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    has_md5sum: bool = False
    md5_computed: bool = False
    tar_size: int = 0

    @property
    def invalid(self) -> str | None:
        if not self.problems:
            return None
        more = len(self.problems) - 1
        return self.problems[0] + (f" (and {more} more problems)" if more else "")

    @property
    def root(self) -> TarMember:
        return self.members[""]

    def __len__(self) -> int:
        """The number of members, implicit directories included, the root not."""
        return len(self.members) - 1

    def __iter__(self) -> Iterator[TarMember]:
        return (member for path, member in self.members.items() if path)

    def lookup(self, path: str) -> TarMember | None:
        """The member at exactly this normalized path (links not followed); O(1)."""
        return self.members.get(path)

    def children(self, directory: str) -> Sequence[str]:
        """Names in `directory`, sorted by their bytes; MemberLookupError if not a dir."""
        member = self.members.get(directory)
        if member is None:
            raise MemberLookupError.not_found(directory)
        if not member.is_dir:
            raise MemberLookupError.not_a_directory(directory)
        return self.children_of.get(directory, ())

    def resolve(self, path: str, *, follow_last: bool = True) -> TarMember:
        """The member `path` leads to, following symbolic and hard links inside the tar.

        An absolute link target starts at the tar root and ".." stops at the root, so no
        path leaves the tar. Raises MemberLookupError with errno ENOENT, ENOTDIR or ELOOP.
        """
        pending = _components_reversed(path)
        current: list[str] = []
        member = self.root
        hops = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if current:
                    current.pop()
                    member = self.members["/".join(current)]
                continue
            if not member.is_dir:
                raise MemberLookupError.not_a_directory(path)
            child = self.members.get("/".join([*current, part]))
            if child is None:
                raise MemberLookupError.not_found(path)
            is_link = child.kind in (MemberKind.SYMLINK, MemberKind.HARDLINK)
            if is_link and (pending or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise MemberLookupError.too_many_links(path)
                if not child.linkname:
                    raise MemberLookupError.not_found(path)
                # A hard link names its target from the root; a symlink from its directory.
                if child.kind is MemberKind.HARDLINK or child.linkname.startswith("/"):
                    current, member = [], self.root
                pending.extend(_components_reversed(child.linkname))
                continue
            current.append(part)
            member = child
        return member

    def contained_link_target(self, member: TarMember) -> str:
        """A relative target for `member` (a symlink) that cannot climb out of the tar.

        Serve this from readlink instead of the stored target: the kernel follows it
        within the tar's root directory, whatever the archive said.
        """
        target = lexical_join(member.parent, member.linkname)
        depth = len(member.parent.split("/")) if member.parent else 0
        return "/".join([".."] * depth + ([target] if target else [])) or "."

    def records(self, tar_inode: int) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs for the catalog, sorted by key (LMDB's append order)."""
        pairs = (
            (member_key(tar_inode, path), encode_member(member))
            for path, member in self.members.items()
            if path
        )
        return iter(sorted(pairs))

    def statistics(self) -> dict[str, int | bool | str | None]:
        counts = {kind: 0 for kind in MemberKind}
        for member in self:
            counts[member.kind] += 1
        return {
            "members": len(self),
            "files": counts[MemberKind.FILE],
            "directories": counts[MemberKind.DIR],
            "symlinks": counts[MemberKind.SYMLINK],
            "hardlinks": counts[MemberKind.HARDLINK],
            "file_bytes": sum(m.size for m in self if m.kind is MemberKind.FILE),
            "tar_bytes": self.tar_size,
            "has_md5sum": self.has_md5sum,
            "skipped": len(self.skipped),
            "invalid": self.invalid,
        }


def _components_reversed(path: str) -> list[str]:
    return [part for part in reversed(path.split("/")) if part not in ("", ".")]


class TreeBuilder:
    """Collects members in tar order into a TarIndex: later duplicates win, as in tar."""

    def __init__(self) -> None:
        self._members: dict[str, TarMember] = {"": _directory("", 0)}
        self._children: dict[str, set[str]] = {"": set()}

    def get(self, path: str) -> TarMember | None:
        return self._members.get(path)

    def add(self, member: TarMember) -> str | None:
        """Add `member`; return why it was refused (it would break the tree), or None."""
        path = member.path
        if not path:
            if not member.is_dir:
                return f"a {member.kind.name.lower()} member has an empty name"
            self._members[""] = member
            return None
        ancestors = _ancestors(path)
        for ancestor in ancestors:
            existing = self._members.get(ancestor)
            if existing is not None and not existing.is_dir:
                return f"member {path} lies below {ancestor}, which is not a directory"
        if not member.is_dir and self._children.get(path):
            return f"member {path} would replace a directory that holds members"
        for ancestor in ancestors:
            if ancestor not in self._members:
                self._insert(_directory(ancestor, member.mtime_ns))
        self._insert(member)
        return None

    def _insert(self, member: TarMember) -> None:
        self._members[member.path] = member
        self._children[member.parent].add(member.name)
        if member.is_dir:
            self._children.setdefault(member.path, set())
        else:
            self._children.pop(member.path, None)

    def build(self) -> TarIndex:
        children = {
            path: tuple(sorted(names, key=sort_key)) for path, names in self._children.items()
        }
        return TarIndex(members=self._members, children_of=children)


def _ancestors(path: str) -> list[str]:
    """The directories above `path`, outermost first: "a/b/c" -> a, a/b."""
    result = []
    parent = parent_of(path)
    while parent:
        result.append(parent)
        parent = parent_of(parent)
    result.reverse()
    return result
