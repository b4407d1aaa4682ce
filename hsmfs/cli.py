"""hsmfs: mount, unmount, check and configure an hsmfs file system.

Exit codes: 0 success; 1 fsck repaired damage; 2 usage or configuration error; 3 state
directory in use; 4 mount or unmount failed; 5 catalog error; 6 not a live hsmfs mount.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .config import load_config
from .errors import HsmfsError, MountError, NotMounted
from .logsetup import setup_logging
from .mount import Daemon
from .options import MountOptions, open_store

DEFAULT_UMOUNT_TIMEOUT = 600.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsmfs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("mount", help="mount an hsmfs file system")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--cache", type=Path, required=True, help="cache directory (file data)")
    p.add_argument("--state", type=Path, required=True, help="state directory (catalog, lock)")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--backend", help="object store URL (overrides the configuration)")
    p.add_argument("--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_mount)

    p = sub.add_parser("umount", help="unmount and wait until the daemon has flushed and exited")
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--timeout", type=float, default=DEFAULT_UMOUNT_TIMEOUT)
    p.set_defaults(handler=cmd_umount)

    p = sub.add_parser("fsck", help="check the catalog against the cache and repair")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--dry-run", action="store_true", help="report, change nothing")
    p.add_argument("--config", type=Path, help="TOML configuration file (its object store)")
    p.add_argument(
        "--backend", help="object store URL: also abort the uploads a killed daemon left there"
    )
    p.set_defaults(handler=cmd_fsck)

    p = sub.add_parser("recover", help="rebuild state and cache from the object store alone")
    p.add_argument("--backend", required=True, help="object store URL")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.set_defaults(handler=cmd_recover)

    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="print the effective configuration (secrets masked)")
    show.add_argument("--config", type=Path)
    show.set_defaults(handler=cmd_config_show)
    return parser


def cmd_mount(args: argparse.Namespace) -> int:
    options = MountOptions(
        mountpoint=args.mountpoint.absolute(),
        cache_dir=args.cache.absolute(),
        state_dir=args.state.absolute(),
        config_file=args.config.absolute() if args.config else None,
        backend_url=args.backend,
    )
    if not args.foreground:
        return spawn_daemon(args, options)
    setup_logging(args.log_level)
    ready_fd = args.ready_fd

    def on_ready() -> None:
        if ready_fd is not None:
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)

    try:
        Daemon(options).run(on_ready)
    except HsmfsError as exc:
        if ready_fd is not None:
            os.write(ready_fd, f"error {exc.exit_code} {exc}\n".encode())
        raise
    return 0


def spawn_daemon(args: argparse.Namespace, options: MountOptions) -> int:
    """Start the daemon in its own session; return once its mount answers."""
    options.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.state_dir / "hsmfs.log"
    read_fd, write_fd = os.pipe()
    cmd = [
        sys.executable, "-m", "hsmfs.cli", "mount", str(options.mountpoint),
        "--cache", str(options.cache_dir), "--state", str(options.state_dir),
        "--foreground", "--log-level", args.log_level, "--ready-fd", str(write_fd),
    ]  # fmt: skip
    if options.config_file:
        cmd += ["--config", str(options.config_file)]
    if options.backend_url is not None:  # even empty: the daemon refuses it, and says so
        cmd += ["--backend", options.backend_url]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            cmd,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode(errors="replace").strip()
    if message == "ready":
        print(f"hsmfs: mounted {options.mountpoint} (daemon pid {proc.pid}, log {log_path})")
        return 0
    proc.wait()
    if message.startswith("error "):
        _, code, text = message.split(" ", 2)
        print(f"hsmfs: error: {text}", file=sys.stderr)
        return int(code)
    raise MountError(f"the hsmfs daemon exited before mounting; see its log {log_path}")


def daemon_info(mountpoint: Path) -> dict:
    """What the daemon behind a mount point says about itself (a virtual xattr)."""
    try:
        return json.loads(os.getxattr(mountpoint, "user.hsm.daemon"))
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise
        raise NotMounted(f"{mountpoint} is not a live hsmfs mount ({exc.strerror})") from None


def cmd_umount(args: argparse.Namespace) -> int:
    mountpoint: Path = args.mountpoint.absolute()
    try:
        info = daemon_info(mountpoint)
    except OSError:  # ENOTCONN: the daemon died and left the mount behind
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
        print(f"hsmfs: removed the stale mount at {mountpoint} (its daemon had died)")
        return 0
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _process_alive(pid) or os.path.ismount(mountpoint):
        if time.monotonic() > deadline:
            raise MountError(
                f"the hsmfs daemon (pid {pid}) of {mountpoint} has not exited after "
                f"{args.timeout:.0f} s; see its log in {info.get('state')}"
            )
        time.sleep(0.05)
    print(f"hsmfs: unmounted {mountpoint}")
    return 0


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def cmd_fsck(args: argparse.Namespace) -> int:
    from .fsck import run_fsck

    state, cache = args.state.absolute(), args.cache.absolute()
    if args.backend is None and args.config is None:  # the catalog and the cache only
        return run_fsck(state, cache, repair=not args.dry_run)
    options = MountOptions(Path("/"), cache, state, args.config, args.backend)
    with open_store(options, load_config(args.config)) as backend:
        return run_fsck(state, cache, repair=not args.dry_run, backend=backend)


def cmd_recover(args: argparse.Namespace) -> int:
    from .backends import ObjectStoreError, open_backend
    from .recover import recover

    setup_logging("INFO")
    try:
        with open_backend(args.backend) as backend:
            counts = recover(backend, args.state.absolute(), args.cache.absolute())
    except ObjectStoreError as exc:
        raise MountError(f"recovery from {args.backend} failed: {exc}") from None
    source = "the catalog snapshot" if counts["from_snapshot"] else "object metadata only"
    print(f"hsmfs: recovered from {source}: {counts['released']} file(s) released, "
          f"{counts['rebuilt']} rebuilt from metadata, {counts['lost']} lost")  # fmt: skip
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(json.dumps(config.masked(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except HsmfsError as exc:
        print(f"hsmfs: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
