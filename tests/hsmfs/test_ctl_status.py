"""`hsmctl status` for a person (labelled lines, local times, problems in red) and for
machines (--json, unchanged), on a real mount."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from hsmfs.ctl import status_lines
from tests.mounts import HsmMount

CLOCK = r"(\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d)"  # the date too when not today


def hsmctl(*args: str | Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hsmfs.ctl", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_status_reads_at_a_glance_and_json_keeps_every_field(hsm: HsmMount) -> None:
    (hsm.mnt / "a.bin").write_bytes(b"x" * 5000)
    hsmctl("archive", hsm.mnt / "a.bin")
    out = "\n".join(line.rstrip() for line in hsmctl("status", hsm.mnt).splitlines())
    assert "┌" not in out and "│" not in out  # labelled lines, no box
    assert re.search(rf"^hsmfs +{hsm.mnt}: mounted, pid \d+; state {hsm.state}, cache ", out, re.M)
    assert re.search(r"^cache +[\d.]+ [KMGT]iB used of [\d.]+ [KMGT]iB \(\d+%\); releases above ",
                     out, re.M)  # fmt: skip
    assert re.search(r"^dirty +0 files, 0 B not yet stored$", out, re.M)
    assert re.search(r"^migration queue +0 waiting, 0 uploads in flight$", out, re.M)
    assert re.search(r"^migrated / released +1 \(4.9 KiB\) / 0 since start$", out, re.M)
    assert re.search(r"^errors +none$", out, re.M)
    assert re.search(rf"^object store +file://{hsm.state}/objects reachable$", out, re.M)
    snapshot = r"(last snapshot |no snapshot yet)"
    assert re.search(rf"^catalog +\d+ inodes, 0 open files, [\d.]+ KiB; {snapshot}", out, re.M)
    status = json.loads(hsmctl("status", "--json", hsm.mnt))
    assert set(status) >= {"ok", "daemon", "backend", "cache", "migration", "staging",
                           "snapshots", "fs"}  # fmt: skip
    assert status["migration"]["migrated"] == 1 and status["daemon"]["mountpoint"] == str(hsm.mnt)


def test_problems_are_red_and_say_when(hsm: HsmMount) -> None:
    status = json.loads(hsmctl("status", "--json", hsm.mnt))
    now = time.time()
    status["backend"].update(reachable=False, error="connect timeout", last_error="GET a: 503",
                             last_error_at=now - 125)  # fmt: skip
    status["migration"].update(upload_errors=2, last_upload_error="a.bin: connect timeout")
    status["snapshots"].update(last_snapshot_at=now - 3600, snapshot_errors=1,
                               last_snapshot_error="no space")  # fmt: skip
    lines = dict(status_lines(status, now))
    errors, store, catalog = lines["errors"], lines["object store"], lines["catalog"]
    assert errors.plain == "2 upload errors, 0 failed stages; last: a.bin: connect timeout"
    assert all(span.style == "red" for span in errors.spans) or errors.style == "red"
    assert "UNREACHABLE: connect timeout" in store.plain
    assert re.search(rf"last error {CLOCK} \(2 min 5 s ago\): GET a: 503", store.plain)
    assert re.search(rf"last snapshot {CLOCK} \(1 h ago\) \(1 snapshot error: no space\)",
                     catalog.plain)  # fmt: skip
    console = Console(force_terminal=True, width=120, color_system="standard")
    with console.capture() as captured:
        console.print(store)
    assert "\x1b[31m" in captured.get()  # red on a terminal
