"""archived as a systemd service: notify protocol, graceful stop and metrics of `archived serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.dicom.data import ct_study
from tests.dicom.peers import StoreSCP, dcmtk, free_port, wait_listening
from tests.mounts import wait_for
from tests.systemd.sdnotify import NotifyListener
from tests.systemd.test_hsmfs_service import scrape, value

CONNECTION = "/dicomConfigurationRoot/dicomDevicesRoot/archived/dicomNetworkConnection/0/dicomPort"
WATCHDOG_USEC = 400_000


def archivectl(tmp_path: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "archived.ctl", "--config", f"lmdb://{tmp_path / 'conf'}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@dataclass
class Archived:
    """One `archived serve` in a subprocess, configured through archivectl."""

    root: Path
    port: int
    dest: StoreSCP
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "archived.log"

    def start(self, env: dict[str, str] | None = None) -> Archived:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "archived.cli", "serve",
                 "--config", f"lmdb://{self.root / 'conf'}",
                 "--index", str(self.root / "state" / "index.sqlite"), *self.extra_args],
                stdout=log, stderr=log, env={**os.environ, **(env or {})},
            )  # fmt: skip
        return self

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def archived(tmp_path: Path) -> Iterator[Archived]:
    dest = StoreSCP(tmp_path / "dest", "DEST", free_port())
    (tmp_path / "online").mkdir()
    archivectl(tmp_path, "fs", "add", "--group", "ONLINE_STORAGE", str(tmp_path / "online"))
    port = free_port()
    archivectl(tmp_path, "config", "set", CONNECTION, str(port))
    archivectl(tmp_path, "ae", "add", "MODALITY", "127.0.0.1", "104")
    archivectl(tmp_path, "ae", "add", "DEST", "127.0.0.1", str(dest.port))
    server = Archived(tmp_path, port, dest)
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
    dest.stop()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    sock = NotifyListener(tmp_path / "notify.sock")
    yield sock
    sock.close()


def connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def scu() -> AE:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(Verification)
    return ae


def test_ready_watchdog_and_stopping_from_archived(
    archived: Archived, listener: NotifyListener
) -> None:
    archived.start(listener.environment(WATCHDOG_USEC))
    lines = listener.wait_for("READY=1")
    # READY=1 only once the AE accepts associations.
    assert connect(archived.port)
    assert f"STATUS=AE ARCHIVED listening on port {archived.port}" in lines
    dcmtk("echoscu", "-aet", "MODALITY", "-aec", "ARCHIVED", "127.0.0.1", str(archived.port))
    listener.wait_for("WATCHDOG=1", count=3)
    assert "STOPPING=1" not in listener.lines
    assert archived.stop() == 0, archived.log.read_text()
    listener.wait_for("STOPPING=1")
    assert listener.lines.count("READY=1") == 1


def test_sigterm_lets_a_running_association_finish(
    archived: Archived, listener: NotifyListener, tmp_path: Path
) -> None:
    archived.start(listener.environment())
    listener.wait_for("READY=1")
    paths = ct_study(tmp_path / "in", 5, patient_id="STOP1")
    assoc = scu().associate("127.0.0.1", archived.port, ae_title="ARCHIVED")
    assert assoc.is_established
    try:
        assert archived.proc is not None
        archived.proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1")
        # No new associations once stopping...
        wait_for(lambda: not connect(archived.port), what="the AE to stop listening")
        # ...but the running one still stores, and every instance is acknowledged.
        for path in paths:
            status = assoc.send_c_store(pydicom.dcmread(path))
            assert status is not None and status.Status == 0x0000
    finally:
        assoc.release()
    assert archived.proc.wait(timeout=60) == 0, archived.log.read_text()
    stored = sorted(p.name for p in (tmp_path / "online").rglob("*") if p.is_file())
    assert len(stored) == len(paths)
    assert "aborting" not in archived.log.read_text()


def test_sigterm_aborts_an_association_that_outlives_the_stop_timeout(
    archived: Archived, listener: NotifyListener
) -> None:
    archived.extra_args = ["--stop-timeout", "1"]
    archived.start(listener.environment())
    listener.wait_for("READY=1")
    assoc = scu().associate("127.0.0.1", archived.port, ae_title="ARCHIVED")
    assert assoc.is_established
    try:
        started = time.monotonic()
        assert archived.stop(timeout=60) == 0
        # The bound holds: one second of grace, not the peer's idea of when to release.
        assert time.monotonic() - started < 30
        deadline = time.monotonic() + 30
        while assoc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
    finally:
        if assoc.is_established:
            assoc.abort()
    assert "aborting 1 association(s) still running: MODALITY" in archived.log.read_text()


def test_metrics_endpoint_serves_the_named_series(archived: Archived, tmp_path: Path) -> None:
    metrics_port = free_port()
    archived.start({"ARCHIVED_METRICS": f"127.0.0.1:{metrics_port}"})
    wait_listening(archived.port, archived.proc)
    paths = ct_study(tmp_path / "in", 3, patient_id="MET1")
    dcmtk("storescu", "-aet", "MODALITY", "-aec", "ARCHIVED", "127.0.0.1", str(archived.port),
          *paths)  # fmt: skip
    study_uid = str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    dcmtk("movescu", "-S", "-aet", "MODALITY", "-aem", "DEST", "-aec", "ARCHIVED",
          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
          "127.0.0.1", str(archived.port))  # fmt: skip
    dcmtk("movescu", "-S", "-aet", "MODALITY", "-aem", "NOWHERE", "-aec", "ARCHIVED",
          "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
          "127.0.0.1", str(archived.port), check=False)  # fmt: skip
    assert len(archived.dest.files()) == 3

    s = scrape(metrics_port)
    store = {"command": "C-STORE", "outcome": "success"}
    assert value(s, "archived_dimse_duration_seconds_count", **store) == 3
    assert 0 < value(s, "archived_dimse_duration_seconds_sum", **store) < 60
    move = {"command": "C-MOVE", "outcome": "success"}
    assert value(s, "archived_dimse_duration_seconds_count", **move) == 1
    assert value(s, "archived_dimse_duration_seconds_bucket", le="+Inf", **move) == 1
    failed_move = {"command": "C-MOVE", "outcome": "failure"}
    assert value(s, "archived_dimse_duration_seconds_count", **failed_move) == 1
    assert value(s, "archived_associations_accepted_total") == 3
    # Released: gone at once, though pynetdicom's threads linger for the ACSE timeout.
    assert value(s, "archived_associations") == 0
    assert value(s, "archived_associations_max") > 0
    assert value(s, "archived_service_events_total", event="stored") == 3
    assert value(s, "archived_service_events_total", event="move_instances") == 3
    assert value(s, "archived_files", group="ONLINE_STORAGE", status="DEFAULT") == 3

    assert archived.stop() == 0, archived.log.read_text()


def test_busy_metrics_port_is_one_line_with_exit_code_69(archived: Archived) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        archived.extra_args = ["--metrics", str(port)]
        archived.start()
        assert archived.proc is not None
        assert archived.proc.wait(timeout=60) == 69
    errors = [line for line in archived.log.read_text().splitlines() if "archived:" in line]
    assert any(f"127.0.0.1:{port}" in line and "--metrics" in line for line in errors)
    assert "Traceback" not in archived.log.read_text()


def test_journald_format_when_journal_stream_is_set(
    archived: Archived, listener: NotifyListener
) -> None:
    archived.start({**listener.environment(), "JOURNAL_STREAM": "8:1234"})
    listener.wait_for("READY=1")
    assert archived.stop() == 0
    lines = archived.log.read_text().splitlines()
    listening = [line for line in lines if "listening on port" in line]
    # Priority prefix (6 = info), no timestamp: journald adds its own.
    assert listening == [f"<6>archived.dicom: AE ARCHIVED listening on port {archived.port}"]
