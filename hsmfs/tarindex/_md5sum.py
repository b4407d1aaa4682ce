"""The MD5SUM member: parse md5sum(1) output into a map of member path -> MD5 hex."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._names import UnsafeName, decode_name, normalize_member_path

MD5SUM_NAME = "MD5SUM"
MAX_MD5SUM_BYTES = 64 * 1024 * 1024  # ~1M lines; the file is read into memory

# md5sum(1): 32 lower-case hex digits, a space, " " (text) or "*" (binary mode), the name.
# A leading backslash marks a name with escaped "\\" or "\n".
_LINE = re.compile(rb"(\\?)([0-9a-f]{32}) [ *](.+)", re.DOTALL)


@dataclass
class Md5Sums:
    """The lines of one MD5SUM member; `problems` names every line that is not valid."""

    expected: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _unescape(name: bytes) -> bytes | None:
    out = bytearray()
    escaped = False
    for byte in name:
        if escaped:
            if byte == ord("\\"):
                out.append(byte)
            elif byte == ord("n"):
                out.append(ord("\n"))
            else:
                return None
            escaped = False
        elif byte == ord("\\"):
            escaped = True
        else:
            out.append(byte)
    return None if escaped else bytes(out)


def parse_md5sum(data: bytes) -> Md5Sums:
    """Parse md5sum(1) output; a bad or duplicate line becomes a problem naming it."""
    sums = Md5Sums()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        match = _LINE.fullmatch(line)
        raw_name = match and (_unescape(match[3]) if match[1] else match[3])
        if not match or raw_name is None:
            shown = line[:80].decode("ascii", "backslashreplace")
            sums.problems.append(f"MD5SUM line {number} is malformed: {shown!r}")
            continue
        try:
            path = normalize_member_path(decode_name(raw_name))
        except UnsafeName as reason:
            sums.problems.append(f"MD5SUM line {number} names a member that {reason}")
            continue
        if path in sums.expected:
            sums.problems.append(f"MD5SUM has more than one line for {path}")
            continue
        sums.expected[path] = match[2].decode("ascii")
    return sums
