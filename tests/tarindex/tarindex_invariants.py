"""Invariants every index must satisfy, however damaged or hostile its tar was."""

from __future__ import annotations

import hashlib

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
            target = index.contained_link_target(member)
            depth = member.path.count("/")
            assert not target.startswith("/")
            assert target.split("/")[: depth + 1].count("..") <= depth
