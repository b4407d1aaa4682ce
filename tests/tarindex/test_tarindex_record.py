"""Member records and keys round-trip, and an LMDB prefix scan lists a directory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import lmdb
import pytest

from hsmfs.tarindex import (
    MEMBER_RECORD_VERSION,
    MemberKind,
    RecordFormatError,
    TarMember,
    children_prefix,
    decode_member,
    encode_member,
    index_tar,
    member_key,
    split_member_key,
)
from tests.tarindex.tarindex_builders import Entry, build_tar


def test_round_trip_of_every_field() -> None:
    member = TarMember(
        path="CF024730/000004A0",
        kind=MemberKind.FILE,
        header_offset=1024,
        data_offset=1536,
        size=2**40,
        mode=0o640,
        mtime_ns=-1_000_000_001,
        md5="0123456789abcdef0123456789abcdef",
        md5_checked=True,
    )
    record = encode_member(member)
    assert record[0] == MEMBER_RECORD_VERSION and len(record) == 53
    assert decode_member(member.path, record) == member
    link = TarMember("l", MemberKind.SYMLINK, 0, 512, 0, 0o777, 0, linkname="caf\udce9/x")
    assert decode_member("l", encode_member(link)) == link


def test_unknown_version_and_damage_are_reported() -> None:
    record = encode_member(TarMember("a", MemberKind.DIR, 0, 512, 0, 0o755, 0))
    with pytest.raises(RecordFormatError, match="format version 99"):
        decode_member("a", bytes([99]) + record[1:])
    with pytest.raises(RecordFormatError, match="re-index the tar"):
        decode_member("a", record[:10])
    with pytest.raises(RecordFormatError, match="unknown kind 7"):
        decode_member("a", record[:1] + bytes([7]) + record[2:])


def test_keys_round_trip_and_group_children() -> None:
    for path in ("a", "a/b", "caf\udce9/x/y"):
        key = member_key(42, path)
        assert split_member_key(key) == (42, path)
        parent = path.rpartition("/")[0]
        assert key.startswith(children_prefix(42, parent))
    assert not member_key(42, "a/b/c").startswith(children_prefix(42, "a"))
    assert not member_key(43, "a").startswith(children_prefix(42, ""))


def test_lmdb_prefix_scan_lists_children_like_the_index(tmp_path: Path) -> None:
    entries = [Entry(f"s{i % 3}/dir{i % 2}/f{i:03}", bytes([i])) for i in range(60)]
    entries.append(Entry("s0/link", kind=tarfile.SYMTYPE, target="dir0/f000"))
    index = index_tar(io.BytesIO(build_tar(entries)))
    env = lmdb.open(str(tmp_path / "catalog"), map_size=1 << 24)
    try:
        with env.begin(write=True) as txn:
            for key, value in index.records(tar_inode=7):
                assert txn.put(key, value, append=True)  # records() is in key order
        with env.begin() as txn:
            for directory in ("", "s0", "s1/dir1"):
                cursor = txn.cursor()
                prefix = children_prefix(7, directory)
                names, members = [], []
                cursor.set_range(prefix)
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    path = split_member_key(key)[1]
                    names.append(path.rpartition("/")[2])
                    members.append(decode_member(path, value))
                assert tuple(names) == index.children(directory)
                assert members == [index.lookup(m.path) for m in members]
    finally:
        env.close()
