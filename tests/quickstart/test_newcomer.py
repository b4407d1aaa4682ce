"""A newcomer's first hour, as a test: the quick start itself runs in a subprocess (on a
temporary root and free ports), and the test follows the steps it prints, running the
commands exactly as printed through bash: storescu stores the sample study, FileCopy packs
it into a tar on the hsmfs mount, hsmfs migrates it, SyncFileStatus marks it ARCHIVED, the
deleter removes it from ONLINE, `hsmctl release` drops the tar from the cache, and movescu
brings the study back from the object store, byte for byte. `archivectl status`, with no
flag, shows the numbers. Slow (about 30 s): it waits for the real lifecycle.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.dicom.data import dataset_bytes, sop_instance_uid
from tests.dicom.peers import free_port
from tests.mounts import wait_for

pytestmark = [pytest.mark.fuse, pytest.mark.dicom]

DELETE_AFTER = 6  # seconds on ONLINE after the last access (the quick start says 30 by default)
GUIDE_TIMEOUT = 120.0


@dataclass
class QuickStart:
    root: Path
    proc: subprocess.Popen[str]
    guide: list[str] = field(default_factory=list)

    @property
    def mount(self) -> Path:
        return self.root / "nearline"

    def exports(self) -> list[str]:
        return [line.split("#")[0].strip() for line in self.guide if line.strip().startswith(
            "export ")]  # fmt: skip

    def command(self, starts: str) -> str:
        """The command line of the guide that starts with ``starts``."""
        found = [line.strip() for line in self.guide if line.strip().startswith(starts)]
        assert len(found) == 1, f"the guide should print one `{starts}` command:\n" + "\n".join(
            self.guide
        )
        return found[0]

    def shell(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in a new shell of the newcomer: the guide's exports, then it."""
        script = "; ".join([*self.exports(), command])
        result = subprocess.run(
            ["bash", "-c", script], env=newcomer_environment(), capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        result.stdout = "\n".join(line.rstrip() for line in result.stdout.splitlines())
        return result

    def study(self, uid: str) -> dict[str, object]:
        return json.loads(self.shell(f"archivectl study show {uid} --json").stdout)


def newcomer_environment() -> dict[str, str]:
    """A login shell's: no archived variables; PATH as the tests have it (DCMTK's tools
    first), so that the guide's own PATH line is what finds archivectl and hsmctl."""
    venv_bin = os.path.dirname(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVED_")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.update(TCP_NODELAY="1", COLUMNS="200")  # DCMTK's Nagle; one line per fact
    return env


def read_guide(proc: subprocess.Popen[str]) -> list[str]:
    """The quick start's stdout up to the end of its guide (it keeps running)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    guide: list[str] = []
    while True:
        line = lines.get(timeout=GUIDE_TIMEOUT)
        assert line is not None, "the quick start ended before its guide:\n" + "\n".join(guide)
        guide.append(line)
        if line.startswith("Everything lives in"):
            return guide


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[QuickStart]:
    root = tmp_path / "root"
    log = open(tmp_path / "quickstart.log", "w")
    env = {k: v for k, v in newcomer_environment().items() if k != "COLUMNS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archived.quickstart", "--root", str(root), "--port",
         str(free_port()), "--move-port", str(free_port()), "--delete-after", str(DELETE_AFTER)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )  # fmt: skip
    started = QuickStart(root, proc)
    try:
        started.guide = read_guide(proc)
        yield started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if os.path.ismount(started.mount):  # it failed before it unmounted
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "hsmfs"), "umount",
                            str(started.mount)], check=False, timeout=90)  # fmt: skip
        log.close()
        if proc.stdout is not None:
            proc.stdout.close()


def copies(study: dict[str, object]) -> dict[str, int]:
    value = study["copies"]
    assert isinstance(value, dict)
    return value


def test_the_quick_start_runs_the_whole_lifecycle(quickstart: QuickStart, tmp_path: Path) -> None:
    guide = "\n".join(quickstart.guide)
    assert "DEMONSTRATION intervals, not for production" in guide
    assert f"a study leaves ONLINE {DELETE_AFTER} s after its last access" in guide
    assert f"export ARCHIVED_CONFIG=lmdb://{quickstart.root}/archived-conf" in guide
    sample = sorted((quickstart.root / "sample-study").glob("*.dcm"))
    assert len(sample) == 5

    # 1. Store the sample study, with the storescu line as printed.
    quickstart.shell(quickstart.command("storescu "))
    uid = re.search(r"StudyInstanceUID=([\d.]+)", quickstart.command("movescu ")).group(1)  # type: ignore[union-attr]

    # 2. Within seconds a tar appears in the mount; hsmfs archives it, SyncFileStatus agrees.
    tars = wait_for(lambda: sorted(quickstart.mount.rglob("*.tar")), timeout=60,
                    what="FileCopy's tar in the hsmfs mount")  # fmt: skip
    assert len(tars) == 1
    wait_for(lambda: copies(quickstart.study(uid)).get("NEARLINE_STORAGE/ARCHIVED") == 5,
             timeout=90, what="the study's 5 instances ARCHIVED on NEARLINE")  # fmt: skip
    state = quickstart.shell(f"hsmctl state -r {quickstart.mount}").stdout
    assert f"{tars[0]}: archived key=" in state

    # 3. Once it was not accessed for DELETE_AFTER seconds, it leaves ONLINE.
    wait_for(lambda: copies(quickstart.study(uid)) == {"NEARLINE_STORAGE/ARCHIVED": 5},
             timeout=90, what="the study to leave ONLINE")  # fmt: skip
    assert [p for p in (quickstart.root / "online").rglob("*") if p.is_file()] == []

    # archivectl status, no flag (the guide's exports only): the numbers of this moment.
    # The services' part comes from the status file archived rewrites every 2 s: it shows
    # the deleter's run a moment after the index does.
    deleted = re.compile(r"^deleter +every 5s +.+ +\d+ s ago: 5 files, 1 study$", re.M)
    status = wait_for(
        lambda: deleted.search(out := quickstart.shell("archivectl status").stdout) and out,
        timeout=30, what="archivectl status to show the deleter's run",
    )  # fmt: skip
    assert re.search(r"^archived +running: pid \d+", status, re.M)
    assert "1 patient, 1 study, 1 series, 5 instances, 5 files" in status
    assert "0 instances without a nearline copy (FileCopy); 0 files TO_ARCHIVE" in status
    assert "0 studies on ONLINE" in status
    assert re.search(r"^failures +none$", status, re.M)
    assert re.search(r"^filecopy +every 2s +.+ +\d+ s ago: 5 instances, 1 series$", status, re.M)
    assert re.search(r"^sync +every 2s +.+ +\d+ s ago: 5 ARCHIVED$", status, re.M)
    assert re.search(r"^ +RW; .+; files: none$", status, re.M)  # ONLINE, now empty
    assert re.search(r"^ +RW, hsmfs mounted \(pid \d+\); .+; files: 5 ARCHIVED$", status, re.M)
    numbers = json.loads(quickstart.shell("archivectl status --json").stdout)
    assert numbers["files"] == {"NEARLINE_STORAGE/ARCHIVED": 5}
    assert numbers["index"]["study"] == 1 and numbers["backlog"]["online_studies"] == 0
    assert numbers["index_file"]["path"] == str(quickstart.root / "index.sqlite")

    # 4. Release the tar from the cache: only the object store holds the study now.
    quickstart.shell(quickstart.command("hsmctl release "))
    state = quickstart.shell(f"hsmctl state -r {quickstart.mount}").stdout
    assert f"{tars[0]}: released key=" in state
    hsm_status = quickstart.shell(quickstart.command("hsmctl status ")).stdout
    assert re.search(r"^migrated / released +1 \([\d.]+ KiB\) / 1 since start$", hsm_status, re.M)

    # 5. movescu brings it back from the object store; the data sets are byte-identical.
    quickstart.shell(quickstart.command("movescu "))
    python = Path(sys.executable).parent / "python"
    compared = quickstart.shell(quickstart.command(f"{python} -m archived.quickstart --compare"))
    assert compared.stdout.count("identical to") == 5
    received = {sop_instance_uid(p): p for p in (quickstart.root / "retrieved").iterdir()}
    assert len(received) == 5
    for path in sample:
        assert dataset_bytes(received[sop_instance_uid(path)]) == dataset_bytes(path)

    # Ctrl-C (here SIGTERM) stops archived, then unmounts hsmfs.
    quickstart.proc.send_signal(signal.SIGTERM)
    assert quickstart.proc.wait(timeout=90) == 0
    assert not os.path.ismount(quickstart.mount)
