"""`archived serve` configured through archivectl, and archivectl study/status, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.dicom.data import ct_study
from tests.dicom.peers import StoreSCP, dcmtk, free_port, wait_listening
from tests.mounts import wait_for

CONNECTION = "/dicomConfigurationRoot/dicomDevicesRoot/archived/dicomNetworkConnection/0/dicomPort"


def archivectl(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "archived.ctl", "--config", f"lmdb://{tmp_path / 'conf'}",
         *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "ARCHIVED_INDEX": str(tmp_path / "state" / "index.sqlite")},
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, StoreSCP]]:
    port = free_port()
    dest = StoreSCP(tmp_path / "dest", "DEST", free_port())
    (tmp_path / "online").mkdir()
    archivectl(tmp_path, "fs", "add", "--group", "ONLINE_STORAGE", str(tmp_path / "online"))
    archivectl(tmp_path, "config", "set", CONNECTION, str(port))
    archivectl(tmp_path, "ae", "add", "MODALITY", "127.0.0.1", "104")
    archivectl(tmp_path, "ae", "add", "DEST", "127.0.0.1", str(dest.port))
    log = open(tmp_path / "archived.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "archived.cli", "serve", "--config",
         f"lmdb://{tmp_path / 'conf'}", "--index", str(tmp_path / "state" / "index.sqlite")],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        wait_listening(port, proc)
        yield port, dest
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "archived.log").read_text()
        log.close()
        dest.stop()


def test_serve_store_move_and_operator_views(served, tmp_path: Path) -> None:
    port, dest = served
    paths = ct_study(tmp_path / "in", 4, patient_id="CLI1", patient_name="CLI^TEST")
    dcmtk("storescu", "-aet", "MODALITY", "-aec", "ARCHIVED", "127.0.0.1", str(port), *paths)
    study_uid = str(pydicom.dcmread(paths[0]).StudyInstanceUID)

    listed = json.loads(archivectl(tmp_path, "study", "list", "--name", "CLI^*", "--json").stdout)
    assert [(s["study_iuid"], s["instances"]) for s in listed] == [(study_uid, 4)]
    shown = json.loads(archivectl(tmp_path, "study", "show", study_uid, "--json").stdout)
    assert shown["series_list"][0]["copies"] == {"ONLINE_STORAGE/DEFAULT": 4}

    dcmtk("movescu", "-S", "-aet", "MODALITY", "-aem", "DEST", "-aec", "ARCHIVED",
          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
          "127.0.0.1", str(port))  # fmt: skip
    assert len(dest.files()) == 4

    def status() -> dict:
        return json.loads(archivectl(tmp_path, "status", "--json").stdout)

    current = wait_for(lambda: (s := status())["daemon"] != "" and isinstance(s["daemon"], dict)
                       and s["daemon"]["counters"].get("move_instances") == 4 and s,
                       what="the daemon's status file to show the move")  # fmt: skip
    assert current["daemon"]["counters"]["stored"] == 4
    assert current["files"] == {"ONLINE_STORAGE/DEFAULT": 4}
    assert current["index"]["study"] == 1
    # table output for people
    assert "CLI^TEST" in archivectl(tmp_path, "study", "list").stdout


def test_unknown_study_is_one_line_with_exit_code(tmp_path: Path, served) -> None:
    result = archivectl(tmp_path, "study", "show", "1.2.3.4", check=False)
    assert result.returncode == 65
    assert result.stderr.strip().count("\n") == 0
    assert "1.2.3.4" in result.stderr and "archivectl study list" in result.stderr


def test_serve_refuses_a_busy_port_in_one_line(tmp_path: Path, served) -> None:
    port, _ = served
    result = subprocess.run(
        [sys.executable, "-m", "archived.cli", "serve", "--config", f"lmdb://{tmp_path / 'conf'}",
         "--index", str(tmp_path / "other" / "index.sqlite")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 69, result.stderr
    assert f"{port}" in result.stderr and "Traceback" not in result.stderr
