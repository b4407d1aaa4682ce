"""Verify a tar on the hsmfs mount against the index, through its member paths.

hsmfs resolves ``NAME.tar!`` to the tar's root directory and ``NAME.tar!MEMBER`` to a
member, with the member's MD5 as ``user.hsm.md5``; ``user.hsm.tar`` says whether the tar
passed hsmfs's own MD5SUM check. The MD5 of a member is taken from that attribute or, in
read mode, by reading the member (for a released tar hsmfs fetches it from the object
store and checks it; a damaged object makes the read fail and the tar ``lost``).

Checks, in order: the tar is valid for hsmfs; MD5SUM parses (md5sum(1) format); the
members are exactly the MD5SUM's entries; every member's MD5 equals its MD5SUM entry; the
index rows of the tar are exactly the MD5SUM's entries, with equal MD5s.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MD5SUM_NAME = "MD5SUM"
_LINE = re.compile(r"([0-9a-f]{32}) [ *](.+)")
READ_BLOCK = 1 << 20


class TarUnreadable(Exception):
    """The tar or a member could not be read (I/O error); the cause may be transient."""


@dataclass
class Verdict:
    """The outcome for one tar: tar-level problems, and members that failed."""

    invalid: str | None = None  # the whole tar is unusable (reason)
    bad_members: dict[str, str] = field(default_factory=dict)  # member -> reason
    checked: int = 0

    @property
    def ok(self) -> bool:
        return self.invalid is None and not self.bad_members


def parse_md5sum(text: str) -> dict[str, str]:
    """member -> md5 from md5sum(1) output; ValueError naming the first bad line."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.fullmatch(line)
        if not match:
            raise ValueError(f"MD5SUM line {number} is not md5sum(1) output: {line[:80]!r}")
        if match[2] in sums:
            raise ValueError(f"MD5SUM names {match[2]} twice")
        sums[match[2]] = match[1]
    return sums


def _walk(root: Path, prefix: str = "") -> Iterator[str]:
    """Every regular file below ``root`` (a tar's ``NAME.tar!`` directory), as member paths."""
    with os.scandir(root) as entries:
        for entry in entries:
            name = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), f"{name}/")
            else:
                yield name


def read_md5(path: Path) -> str:
    """MD5 of a file's bytes, read through the mount."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb", buffering=0) as stream:
        while block := stream.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def member_md5s(tar: Path, by_reading: bool) -> tuple[str | None, dict[str, str]]:
    """The MD5SUM text (None if there is none) and every other member's MD5, via ``tar!``."""
    try:
        try:
            md5sum: str | None = (
                Path(f"{tar}!{MD5SUM_NAME}").read_bytes().decode("utf-8", "replace")
            )
        except FileNotFoundError:
            md5sum = None
        md5s = {}
        for name in sorted(n for n in _walk(Path(f"{tar}!")) if n != MD5SUM_NAME):
            member = Path(f"{tar}!{name}")
            if by_reading:
                md5s[name] = read_md5(member)
            else:
                md5s[name] = os.getxattr(member, "user.hsm.md5").decode()
    except OSError as exc:
        raise TarUnreadable(f"{exc.filename or tar}: {exc.strerror or exc}") from exc
    return md5sum, md5s


def verify(
    md5sum_text: str | None, members: Mapping[str, str], indexed: Mapping[str, str]
) -> Verdict:
    """Compare the MD5SUM, the members' MD5s and the index rows (member -> md5 each)."""
    verdict = Verdict(checked=len(indexed))
    if md5sum_text is None:
        verdict.invalid = "the tar has no MD5SUM member"
        return verdict
    try:
        sums = parse_md5sum(md5sum_text)
    except ValueError as exc:
        verdict.invalid = str(exc)
        return verdict
    extra = sorted(set(members) - set(sums))
    if extra:
        verdict.invalid = f"members not in MD5SUM: {', '.join(extra[:5])}"
        return verdict
    unindexed = sorted(set(sums) - set(indexed))
    if unindexed:
        verdict.invalid = f"MD5SUM entries the index does not know: {', '.join(unindexed[:5])}"
        return verdict
    for name, md5 in indexed.items():
        if name not in sums:
            verdict.bad_members[name] = "not in MD5SUM"
        elif name not in members:
            verdict.bad_members[name] = "listed in MD5SUM but missing from the tar"
        elif members[name] != sums[name]:
            verdict.bad_members[name] = f"MD5 {members[name]} differs from MD5SUM {sums[name]}"
        elif md5.lower() != sums[name]:
            verdict.bad_members[name] = f"MD5SUM {sums[name]} differs from the index {md5}"
    return verdict
