"""Check tars from the command line: python -m hsmfs.tarindex [--list] [--headers-only] TAR...

Exit codes: 0 every tar is valid, 1 at least one tar is invalid (the reason is printed),
2 a tar could not be opened or read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from . import MemberKind, TarIndex, TarIndexError, index_tar

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def _index_with_progress(path: Path, verify: bool, console: Console) -> TarIndex:
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn())
    with (
        path.open("rb") as tar,
        Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar,
    ):
        task = bar.add_task(path.name, total=None)
        return index_tar(
            tar,
            verify=verify,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def _summary(path: Path, index: TarIndex) -> str:
    stats = index.statistics()
    if index.invalid:
        return f"{path}: invalid: {index.invalid}"
    checked = "MD5SUM checked" if index.has_md5sum and index.md5_computed else "no MD5SUM check"
    return f"{path}: valid, {stats['files']} files, {stats['file_bytes']} bytes, {checked}"


def _listing(index: TarIndex) -> str:
    lines = []
    for member in index:
        target = f" -> {member.linkname}" if member.linkname else ""
        md5 = member.md5 or "-" * 32
        kind = member.kind.name.lower()
        lines.append(
            f"{kind:<8} {member.mode:04o} {member.size:>12} {member.data_offset:>12} "
            f"{md5} {member.path}{'/' if member.kind is MemberKind.DIR else ''}{target}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsmfs.tarindex", description=__doc__)
    parser.add_argument("tars", nargs="+", type=Path, metavar="TAR")
    parser.add_argument("--list", action="store_true", help="print every member")
    parser.add_argument(
        "--headers-only", action="store_true", help="skip reading data (no MD5, no MD5SUM check)"
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    status = EXIT_VALID
    for path in args.tars:
        try:
            index = _index_with_progress(path, not args.headers_only, console)
        except (OSError, TarIndexError) as error:
            print(f"{path}: cannot read: {error}; check the path and permissions", file=sys.stderr)
            return EXIT_UNREADABLE
        if args.list:
            print(_listing(index))
        print(_summary(path, index))
        if index.invalid:
            status = EXIT_INVALID
    return status


if __name__ == "__main__":
    sys.exit(main())
