"""Invariants every index must satisfy, however damaged or hostile its tar was."""

from __future__ import annotations

import hashlib
import itertools

from hsmfs.tarindex import MemberKind, MemberLookupError, TarIndex, normalize_member_path


def assert_harmless(tar: bytes, index: TarIndex) -> None:
    """Paths stay below the root, links resolve to members, served bytes are the hashed."""
    members = set(index.members.values())
    for member in index:
        assert member.path and normalize_member_path(member.path) == member.path
        parent = index.lookup(member.parent)
        assert parent is not None and parent.is_dir
        assert member.name in index.children(member.parent)
        if member.kind is MemberKind.FILE:
            assert 0 <= member.data_offset and member.data_offset + member.size <= len(tar)
            if index.md5_computed:
                served = tar[member.data_offset : member.data_offset + member.size]
                assert hashlib.md5(served).hexdigest() == member.md5
        try:
            resolved = index.resolve(member.path)
        except MemberLookupError:
            continue
        assert resolved in members
        assert resolved.kind in (MemberKind.FILE, MemberKind.DIR)
        if member.kind is MemberKind.SYMLINK:
            assert_contained(member.path, index.contained_link_target(member))


def assert_contained(link_path: str, target: str) -> None:
    """A relative target that climbs at most to the tar root, then only descends."""
    assert not target.startswith("/")
    parts = target.split("/")
    climbs = len(parts) - len(list(itertools.dropwhile(lambda p: p == "..", parts)))
    assert climbs <= link_path.count("/")
    assert ".." not in parts[climbs:]
