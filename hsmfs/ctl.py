"""hsmctl: HSM states and actions of files on an hsmfs mount, and the daemon's status.

Exit codes: 0 success; 1 some files failed (each named); 2 usage; 6 not an hsmfs mount.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .actions import inode_numbers
from .control import request
from .errors import HsmfsError, NotMounted

console = Console(highlight=False)
HSM_ATTRS = ("state", "flags", "key", "md5", "archived_at")


def mount_root(path: Path) -> Path:
    path = path.absolute()
    while not os.path.ismount(path):
        if path.parent == path:
            break
        path = path.parent
    return path


def daemon_socket(path: Path) -> str:
    root = mount_root(path)
    try:
        info = json.loads(os.getxattr(root, "user.hsm.daemon"))
    except OSError as exc:
        raise NotMounted(f"{path} is not on a live hsmfs mount ({exc.strerror})") from None
    return str(info["control"])


def read_attr(path: str, name: str) -> str | None:
    try:
        return os.getxattr(path, f"user.hsm.{name}").decode()
    except OSError:
        return None


def cmd_state(args: argparse.Namespace) -> int:
    """One line per file, like `lfs hsm_state`."""
    for path, _ino, _size in inode_numbers(args.paths, args.recursive):
        attrs = {name: read_attr(path, name) for name in HSM_ATTRS}
        if args.json:
            print(json.dumps({"path": path, **attrs}))
            continue
        flags = f" [{attrs['flags']}]" if attrs["flags"] else ""
        extra = f" key={attrs['key']} md5={attrs['md5']}" if attrs["key"] else ""
        line = f"{path}: {attrs['state'] or 'not a file'}{flags}{extra}"
        console.print(line, soft_wrap=True, markup=False)  # "[norelease]" is no markup
    return 0


def cmd_action(args: argparse.Namespace) -> int:
    files = inode_numbers(args.paths, args.recursive)
    if not files:
        return 0
    sock = daemon_socket(Path(args.paths[0]))
    names = {ino: path for path, ino, _ in files}
    sizes = {ino: size for _, ino, size in files}
    message = {"cmd": args.action, "inos": list(names)}
    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{args.action} {len(files)} file(s)", total=sum(sizes.values()))
        final: dict[str, Any] = {}
        for reply in request(sock, message, timeout=args.timeout):
            if "ino" in reply:
                ino = int(reply["ino"])
                progress.advance(task, sizes.get(ino, 0))
                if reply.get("error"):
                    failed += 1
                    line = f"{names[ino]}: {reply['state']}: {reply['error']}"
                    progress.console.print(line, soft_wrap=True, markup=False)
            else:
                final = reply
    for ino, reason in final.get("refused", {}).items():
        console.print(f"{names[int(ino)]}: not released: {reason}", soft_wrap=True, markup=False)
        failed += 1
    if args.action == "release" and "freed" in final:
        console.print(f"released {len(files) - failed} file(s), {final['freed']} bytes freed")
    return 1 if failed or not final.get("ok") else 0


def cmd_set(args: argparse.Namespace) -> int:
    for path, _ino, _size in inode_numbers(args.paths, args.recursive):
        current = set(filter(None, (read_attr(path, "flags") or "").split(",")))
        for flag in args.set or []:
            current.add(flag)
        for flag in args.clear or []:
            current.discard(flag)
        os.setxattr(path, "user.hsm.flags", ",".join(sorted(current)).encode())
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def cmd_status(args: argparse.Namespace) -> int:
    sock = daemon_socket(Path(args.mountpoint))
    status = next(request(sock, {"cmd": "status"}, timeout=args.timeout))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    cache, mig, stg, backend = (
        status["cache"],
        status["migration"],
        status["staging"],
        status["backend"],
    )
    table = Table(title=f"hsmfs {status['daemon']['mountpoint']} (pid {status['daemon']['pid']})",
                  show_header=False)  # fmt: skip
    table.add_column(style="bold")
    table.add_column()
    pct = 100 * cache["used"] / cache["total"] if cache["total"] else 0
    table.add_row("cache", f"{_size(cache['used'])} used of {_size(cache['total'])} ({pct:.0f}%); "
                  f"high {_size(cache['high'])}, low {_size(cache['low'])}")  # fmt: skip
    table.add_row("dirty", f"{mig['dirty_files']} file(s), {_size(mig['dirty_bytes'])}")
    table.add_row("migration queue", str(mig["queue_length"]))
    table.add_row("uploads in flight", str(mig["uploads_in_flight"]))
    table.add_row("stages in flight", str(stg["stages_in_flight"]))
    table.add_row("migrated / released", f"{mig['migrated']} / {mig['released']} since start")
    errors = mig["upload_errors"] + stg["stages_failed"]
    table.add_row(
        "errors", f"{errors}; last: {mig['last_upload_error'] or stg['last_stage_error'] or '-'}"
    )
    reach = (
        "[green]reachable[/]"
        if backend["reachable"]
        else f"[red]UNREACHABLE[/]: {backend['error']}"
    )
    table.add_row("object store", f"{backend['url']} {reach}")
    fs = status["fs"]
    table.add_row("catalog", f"{fs['inodes']} inodes, {fs['open_files']} open files")
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsmctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("status", help="the daemon's status at a glance")
    p.add_argument("mountpoint")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(handler=cmd_status)
    p = sub.add_parser("state", help="HSM state of files, one line each")
    p.add_argument("paths", nargs="+")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_state)
    actions = {
        "archive": "migrate now and wait until archived",
        "release": "free the cache copy of archived files",
        "stage": "bring released files back into the cache and wait",
        "recheck": "check the files' copies in the object store again (a lost file whose "
        "object is back becomes released)",
    }
    for action, text in actions.items():
        p = sub.add_parser(action, help=text)
        p.add_argument("paths", nargs="+")
        p.add_argument("-r", "--recursive", action="store_true")
        p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
        p.set_defaults(handler=cmd_action, action=action)
    p = sub.add_parser("set", help="set or clear the flags norelease and noarchive")
    p.add_argument("paths", nargs="+")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--set", action="append", choices=["norelease", "noarchive"])
    p.add_argument("--clear", action="append", choices=["norelease", "noarchive"])
    p.set_defaults(handler=cmd_set)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except HsmfsError as exc:
        print(f"hsmctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"hsmctl: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
