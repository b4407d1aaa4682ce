"""The quick start: hsmfs on its embedded object store plus archived, the whole lifecycle.

    python -m archived.quickstart [--root /srv/hsm-quickstart] [--port 11112]
                                  [--move-port 11113] [--delete-after SECONDS]
    python -m archived.quickstart --compare SENT_DIR RECEIVED_DIR

Mounts hsmfs at ROOT/nearline (objects in the directory ROOT/hsmfs-state/objects) with
the demonstration settings of ROOT/hsmfs.toml, registers ROOT/online as ONLINE_STORAGE and
the mount as NEARLINE_STORAGE (``tar:``), records IndexPath (ROOT/index.sqlite), turns on
FileCopy, SyncFileStatus and the deleter with DEMONSTRATION intervals (seconds, not
minutes: see archived.quickstart.settings; --delete-after changes how long a study
stays on ONLINE after its last access, 30 s at first), registers movescu's AE (MOVESCU on
127.0.0.1:MOVE_PORT) as a retrieve destination, writes a sample study to
ROOT/sample-study, runs ``archived serve`` and prints what to try. It lets any calling AE
in: a demonstration, not a hospital set-up (use ``archivectl ae add`` and switch
AcceptUnknownCallingAETs off for real use). Ctrl-C or SIGTERM stops archived, then
unmounts hsmfs. ``--compare`` checks that retrieved files hold the same data sets.

Exit codes: 0 stopped by Ctrl-C/SIGTERM, or --compare found every instance identical;
1 --compare found a difference; 2 usage; 4 hsmfs could not be mounted; otherwise
archived's own exit code (e.g. 69: the port is in use).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from archived.quickstart.guide import guide
from archived.quickstart.sample import compare, sample_study
from archived.quickstart.settings import Layout, configure, write_hsmfs_config

DEFAULT_ROOT = Path("/srv/hsm-quickstart")
LISTEN_TIMEOUT = 60.0
EX_MOUNT = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archived.quickstart", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="directory for everything (default: %(default)s)")  # fmt: skip
    parser.add_argument("--port", type=int, default=11112, help="archived's DICOM port")
    parser.add_argument(
        "--move-port", type=int, default=11113,
        help="port movescu listens on to receive a retrieve (its AE: MOVESCU)",
    )  # fmt: skip
    parser.add_argument(
        "--delete-after", type=float, metavar="SECONDS",
        help="DEMONSTRATION: a study leaves ONLINE this long after its last access, once "
        "every instance has an ARCHIVED copy (default: as configured; 30 at first)",
    )  # fmt: skip
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("SENT", "RECEIVED"),
                        help="compare the data sets of two directories of DICOM files")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        same, lines = compare(*args.compare)
        print("\n".join(lines))
        return 0 if same else 1
    return run(Layout(args.root.absolute()), args.port, args.move_port, args.delete_after)


def run(layout: Layout, port: int, move_port: int, delete_after: float | None) -> int:
    for directory in layout.directories():
        directory.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    write_hsmfs_config(layout)
    mounted_here = False
    if not os.path.ismount(layout.nearline):
        mount = subprocess.run(
            [str(bin_dir / "hsmfs"), "mount", str(layout.nearline), "--cache", str(layout.cache),
             "--state", str(layout.state), "--config", str(layout.hsmfs_config)],
            check=False,
        )  # fmt: skip
        if mount.returncode != 0:
            print(f"quickstart: hsmfs could not be mounted at {layout.nearline}", file=sys.stderr)
            return EX_MOUNT
        mounted_here = True
    try:
        stays = configure(layout, port, move_port, delete_after)
        study_uid, _files = sample_study(layout.sample)
        return serve(layout, port, guide(layout, port, move_port, study_uid, bin_dir, stays))
    finally:
        if mounted_here:
            subprocess.run([str(bin_dir / "hsmfs"), "umount", str(layout.nearline)], check=False)


def serve(layout: Layout, port: int, what_to_try: str) -> int:
    """archived serve until it stops; Ctrl-C and SIGTERM are passed on as SIGTERM, so it
    finishes its associations and runs (it gets the terminal's SIGINT itself as well)."""
    # No --index: archived reads IndexPath from the configuration, as archivectl does.
    archived = Path(sys.executable).parent / "archived"
    proc = subprocess.Popen([str(archived), "serve", "--config", layout.conf_uri])
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if wait_listening(port, proc):
            print(what_to_try, flush=True)
        code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:  # an unexpected error here: do not leave it running
            proc.terminate()
            proc.wait()
    return 0 if stopping and code in (0, -signal.SIGTERM) else code


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """True once archived accepts connections; False if it exited or took too long."""
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False
