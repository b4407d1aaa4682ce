"""Property-based tests: random member sets round-trip; random damage is always harmless."""

from __future__ import annotations

import io
import tarfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hsmfs.tarindex import MemberLookupError, index_tar
from tests.tarindex.tarindex_builders import (
    Entry,
    build_tar,
    file_contents,
    md5sum_text,
    pax_record,
    raw_member,
    raw_pax_member,
    raw_tar,
)
from tests.tarindex.tarindex_invariants import assert_harmless

COMPONENT = st.text(alphabet=st.sampled_from("abcXYZ019-_.é名 "), min_size=1, max_size=40).filter(
    lambda c: c not in (".", "..")
)
PATH = st.lists(COMPONENT, min_size=1, max_size=4).map("/".join)
FORMATS = st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _without_conflicts(paths: list[str]) -> list[str]:
    """Drop paths that another path needs as a directory (tar would refuse them too)."""
    return [p for p in paths if not any(q.startswith(p + "/") for q in paths)]


MEMBER_SETS = st.dictionaries(PATH, st.binary(max_size=1500), min_size=0, max_size=12).map(
    lambda files: {p: files[p] for p in _without_conflicts(list(files))}
)


def _fits(fmt: int, files: dict[str, bytes]) -> bool:
    if fmt != tarfile.USTAR_FORMAT:
        return True
    return all(len(p.encode()) <= 100 and p.isascii() for p in files)


@SETTINGS
@given(files=MEMBER_SETS, fmt=FORMATS, with_md5sum=st.booleans())
def test_random_member_sets_round_trip(
    files: dict[str, bytes], fmt: int, with_md5sum: bool
) -> None:
    if not _fits(fmt, files):
        fmt = tarfile.PAX_FORMAT
    expected = dict(files)
    if with_md5sum:
        expected = {"MD5SUM": md5sum_text(files)} | files  # MD5SUM goes first
    tar = build_tar([Entry(name, data) for name, data in expected.items()], fmt)
    index = index_tar(io.BytesIO(tar))
    assert index.invalid is None
    assert index.has_md5sum == with_md5sum
    assert file_contents(tar, index) == expected
    for path in files:
        assert index.lookup(path).md5_checked == with_md5sum  # type: ignore[union-attr]
    assert_harmless(tar, index)


def _damage(tar: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    damaged = bytearray(tar)
    for position, value in edits:
        damaged[position % len(damaged)] = value
    return bytes(damaged[:cut] if cut is not None else damaged)


@SETTINGS
@given(
    files=MEMBER_SETS.filter(bool),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(min_value=0, max_value=20_000),
    fmt=FORMATS,
)
def test_random_damage_is_reported_never_raised_never_escapes(
    files: dict[str, bytes], edits: list[tuple[int, int]], cut: int | None, fmt: int
) -> None:
    if not _fits(fmt, files):
        fmt = tarfile.GNU_FORMAT
    original = build_tar(
        [Entry("MD5SUM", md5sum_text(files))] + [Entry(n, d) for n, d in files.items()], fmt
    )
    tar = _damage(original, edits, cut)
    index = index_tar(io.BytesIO(tar))  # raising anything at all fails the test
    event(f"damaged tar judged valid: {index.invalid is None}")
    assert_harmless(tar, index)
    if index.invalid is None:
        # A damaged tar that still passes every check serves exactly the original files.
        contents = file_contents(tar, index)
        contents.pop("MD5SUM", None)
        assert contents == files


RAW_NAME = st.lists(
    st.sampled_from([b"..", b".", b"", b"a", b"b", b"\xff", b"\0", b"n" * 300, b"/"]),
    min_size=1,
    max_size=6,
).map(b"/".join)
RAW_MEMBER = st.tuples(
    RAW_NAME, st.sampled_from([b"0", b"1", b"2", b"5", b"3", b"S", b"Q"]), RAW_NAME
)


@SETTINGS
@given(members=st.lists(RAW_MEMBER, min_size=1, max_size=10))
def test_hostile_names_and_link_targets_never_escape(
    members: list[tuple[bytes, bytes, bytes]],
) -> None:
    parts = []
    for name, typeflag, target in members:
        records = pax_record("path", name) + pax_record("linkpath", target)
        parts.append(raw_pax_member(records))
        parts.append(
            raw_member(b"placeholder", b"data" if typeflag == b"0" else b"", typeflag=typeflag)
        )
    tar = raw_tar(*parts)
    index = index_tar(io.BytesIO(tar))
    assert_harmless(tar, index)
    for member in index:
        for probe in ("", "/..", "/../../x", "/a/../..", "/b"):
            try:
                index.resolve(member.path + probe)
            except MemberLookupError:
                pass
