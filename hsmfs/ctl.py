"""hsmctl: HSM states and actions of files on an hsmfs mount, and the daemon's status.

Exit codes: 0 success; 1 some files failed (each named); 2 usage; 6 not an hsmfs mount.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

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


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _moment(when: float | None, now: float) -> str:
    """'14:03:05 (3 min ago)' in local time, the date too when it is not today; '-' for never.

    The same words as `archivectl status` (hsmfs imports nothing of archived)."""
    if when is None:
        return "-"
    same_day = time.localtime(when)[:3] == time.localtime(now)[:3]
    clock = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", time.localtime(when))
    seconds = round(abs(now - when))
    if seconds < 1:
        return f"{clock} (now)"
    parts: list[str] = []
    for name, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= length and len(parts) < 2:
            parts.append(f"{seconds // length} {name}")
            seconds %= length
        elif parts:
            break
    span = " ".join(parts)
    return f"{clock} ({span} ago)" if when <= now else f"{clock} (in {span})"


def status_lines(status: dict[str, Any], now: float) -> list[tuple[str, Text]]:
    """`hsmctl status` for a person: labelled lines, problems in red (archivectl's style)."""
    daemon, cache, backend = status["daemon"], status["cache"], status["backend"]
    mig, stg, fs = status["migration"], status["staging"], status["fs"]
    snap = status.get("snapshots", {})
    mounted = Text(f"{daemon['mountpoint']}: ")
    mounted.append(f"mounted, pid {daemon['pid']}", style="green")
    mounted.append(f"; state {daemon.get('state', '-')}, cache {daemon.get('cache', '-')}")
    share = 100 * cache["used"] / cache["total"] if cache["total"] else 0
    cache_line = (
        f"{_size(cache['used'])} used of {_size(cache['total'])} ({share:.0f}%); releases "
        f"above {_size(cache['high'])} (high watermark) down to {_size(cache['low'])} (low)"
    )
    dirty = f"{_count(mig['dirty_files'], 'file')}, {_size(mig['dirty_bytes'])} not yet stored"
    queue = f"{mig['queue_length']} waiting, {mig['uploads_in_flight']} uploads in flight"
    stages = (
        f"{stg['stages_in_flight']}; {_count(stg.get('stages_completed', 0), 'stage')} and "
        f"{_count(stg.get('member_fetches', 0), 'member fetch', 'member fetches')} since start"
    )
    moved = (
        f"{mig['migrated']} ({_size(mig.get('migrated_bytes', 0))}) / {mig['released']} since start"
    )
    return [
        ("hsmfs", mounted),
        ("cache", Text(cache_line, style="yellow" if cache["used"] >= cache["high"] else "")),
        ("dirty", Text(dirty)),
        ("migration queue", Text(queue)),
        ("stages in flight", Text(stages)),
        ("migrated / released", Text(moved)),
        ("errors", _errors(mig, stg)),
        ("object store", _object_store(backend, now)),
        ("catalog", _catalog(fs, snap, now)),
    ]


def _errors(mig: dict[str, Any], stg: dict[str, Any]) -> Text:
    last = mig["last_upload_error"] or stg["last_stage_error"]
    if not (mig["upload_errors"] or stg["stages_failed"] or last):
        return Text("none", style="green")
    text = Text(
        f"{_count(mig['upload_errors'], 'upload error')}, "
        f"{_count(stg['stages_failed'], 'failed stage')}",
        style="red",
    )
    if last:
        text.append(f"; last: {last}", style="red")
    return text


def _object_store(backend: dict[str, Any], now: float) -> Text:
    text = Text(f"{backend['url']} ")
    if backend["reachable"]:
        text.append("reachable", style="green")
    else:
        text.append(f"UNREACHABLE: {backend['error']}", style="red")
    if backend.get("last_error"):
        when = _moment(backend.get("last_error_at"), now)
        text.append(f"; last error {when}: {backend['last_error']}")
    return text


def _catalog(fs: dict[str, Any], snap: dict[str, Any], now: float) -> Text:
    text = Text(f"{fs['inodes']} inodes, {fs['open_files']} open files")
    if "catalog_bytes" in fs:
        text.append(f", {_size(fs['catalog_bytes'])}")
    if snap.get("last_snapshot_at") is None:
        text.append("; no snapshot yet")
    else:
        text.append(f"; last snapshot {_moment(snap['last_snapshot_at'], now)}")
    if snap.get("snapshot_errors"):
        errors = _count(snap["snapshot_errors"], "snapshot error")
        text.append(f" ({errors}: {snap.get('last_snapshot_error')})", style="red")
    return text


def cmd_status(args: argparse.Namespace) -> int:
    sock = daemon_socket(Path(args.mountpoint))
    status = next(request(sock, {"cmd": "status"}, timeout=args.timeout))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, text in status_lines(status, time.time()):
        grid.add_row(label, text)
    console.print(grid)
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
