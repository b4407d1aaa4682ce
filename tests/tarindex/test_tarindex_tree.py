"""The tree view: implicit directories, sorted children, O(1) lookup, link resolution."""

from __future__ import annotations

import errno
import io
import tarfile

import pytest

from hsmfs.tarindex import NO_OFFSET, MemberKind, MemberLookupError, TarIndex, index_tar
from tests.tarindex.tarindex_builders import Entry, build_tar

ENTRIES = [
    Entry("study/series/b", b"b"),
    Entry("study/series/a", b"a"),
    Entry("study/series/B", b"B"),
    Entry("study/series/é", b"e"),
    Entry("study/other", kind=tarfile.DIRTYPE, mode=0o700),
    Entry("study/latest", kind=tarfile.SYMTYPE, target="series"),
    Entry("study/abs", kind=tarfile.SYMTYPE, target="/study/series/a"),
]


@pytest.fixture(scope="module")
def index() -> TarIndex:
    result = index_tar(io.BytesIO(build_tar(ENTRIES)))
    assert result.invalid is None
    return result


def test_implicit_directories_appear(index: TarIndex) -> None:
    for path in ("study", "study/series"):
        member = index.lookup(path)
        assert member is not None and member.kind is MemberKind.DIR and member.implicit
        assert member.header_offset == member.data_offset == NO_OFFSET
    explicit = index.lookup("study/other")
    assert explicit is not None and not explicit.implicit and explicit.mode == 0o700


def test_children_sorted_by_bytes(index: TarIndex) -> None:
    assert index.children("") == ("study",)
    assert index.children("study") == ("abs", "latest", "other", "series")
    assert index.children("study/series") == ("B", "a", "b", "é")
    assert index.children("study/other") == ()


def test_children_of_a_file_or_nothing(index: TarIndex) -> None:
    with pytest.raises(MemberLookupError) as not_dir:
        index.children("study/series/a")
    with pytest.raises(MemberLookupError) as missing:
        index.children("nothing")
    assert (not_dir.value.errno, missing.value.errno) == (errno.ENOTDIR, errno.ENOENT)


def test_lookup_is_exact_and_resolve_follows_links(index: TarIndex) -> None:
    a = index.lookup("study/series/a")
    assert index.lookup("study/latest/a") is None
    assert index.resolve("study/latest/a") == a
    assert index.resolve("study/abs") == a
    assert index.resolve("./study//series/../series/a") == a
    assert index.resolve("study/latest") == index.lookup("study/series")
    assert index.resolve("") == index.root


def test_resolve_errors_carry_errno(index: TarIndex) -> None:
    for path, code in [
        ("study/series/a/x", errno.ENOTDIR),
        ("study/abs/x", errno.ENOTDIR),
        ("study/nothing", errno.ENOENT),
        ("study/latest/nothing", errno.ENOENT),
    ]:
        with pytest.raises(MemberLookupError) as caught:
            index.resolve(path)
        assert caught.value.errno == code, path
        assert caught.value.path == path


def test_explicit_directory_after_its_children_keeps_them() -> None:
    tar = build_tar([Entry("d/f", b"x"), Entry("d", kind=tarfile.DIRTYPE, mode=0o750)])
    index = index_tar(io.BytesIO(tar))
    d = index.lookup("d")
    assert d is not None and not d.implicit and d.mode == 0o750
    assert index.children("d") == ("f",)


def test_iteration_len_and_statistics(index: TarIndex) -> None:
    assert len(index) == len(list(index)) == len(ENTRIES) + 2
    stats = index.statistics()
    assert (stats["files"], stats["directories"], stats["symlinks"]) == (4, 3, 2)
    assert stats["file_bytes"] == 4 and stats["invalid"] is None
