"""Settings that live in the configuration: IndexPath, PendingResponseInterval and
StgCmtOnSameAssociation, read by `archived serve` and archivectl, and which index file
wins (--index, then $ARCHIVED_INDEX, then IndexPath)."""

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
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from archived.conf import open_store
from archived.dicom.config import settings_from_config
from archived.indexpath import IndexLocation, locate_index
from tests.dicom.data import ct_study
from tests.dicom.peers import dcmtk, free_port, wait_listening
from tests.dicom.test_stgcmt import REPORT_TIMEOUT, STGCMT_INSTANCE, ReportCatcher, request

DEVICE = "/dicomConfigurationRoot/dicomDevicesRoot/archived"
EXT = f"{DEVICE}/deviceExtensions/ArchiveDeviceExtension"
PORT = f"{DEVICE}/dicomNetworkConnection/0/dicomPort"


def environment(**extra: str) -> dict[str, str]:
    """This environment without $ARCHIVED_INDEX (so the configuration decides), plus extra."""
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVED_INDEX"}
    return {**env, **extra}


def archivectl(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "archived.ctl", "--config", f"lmdb://{tmp_path / 'conf'}",
         *args],
        capture_output=True, text=True, timeout=60, check=False, env=env or environment(),
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


class Served:
    """`archived serve` in a subprocess on the configuration in tmp_path/conf."""

    def __init__(self, tmp_path: Path, port: int, *extra: str, env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"archived-{port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archived.cli", "serve", "--config",
             f"lmdb://{tmp_path / 'conf'}", *extra],
            stdout=self.log, stderr=self.log, env=env,
        )  # fmt: skip
        wait_listening(port, self.proc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.log.close()
        assert code == 0, self.log_path.read_text()


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[int]:
    """A configuration with an ONLINE file system, a port and the peer MODALITY."""
    port = free_port()
    (tmp_path / "online").mkdir()
    archivectl(tmp_path, "fs", "add", "--group", "ONLINE_STORAGE", str(tmp_path / "online"))
    archivectl(tmp_path, "config", "set", PORT, str(port))
    archivectl(tmp_path, "ae", "add", "MODALITY", "127.0.0.1", "104")
    yield port


def test_settings_from_config_maps_pending_interval_and_stgcmt(tmp_path: Path) -> None:
    with open_store(f"json://{tmp_path}/conf.json") as store:
        store.ensure_own_device()
        defaults, _ = settings_from_config(store)
        assert (defaults.pending_interval, defaults.stgcmt_same_association) == (5.0, False)
        store.persist_node(f"{EXT}/PendingResponseInterval", 0.5)
        store.persist_node(f"{EXT}/StgCmtOnSameAssociation", True)
        settings, _ = settings_from_config(store)
    assert (settings.pending_interval, settings.stgcmt_same_association) == (0.5, True)


def test_index_precedence_is_option_then_environment_then_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[bool] = []

    def configured() -> IndexLocation:
        asked.append(True)
        return IndexLocation(Path("/conf/index.sqlite"), "IndexPath")

    monkeypatch.setenv("ARCHIVED_INDEX", "/env/index.sqlite")
    assert locate_index("/opt/index.sqlite", configured) == IndexLocation(
        Path("/opt/index.sqlite"), "--index"
    )
    assert locate_index(None, configured).path == Path("/env/index.sqlite")
    assert asked == []  # the configuration is not even read when overridden
    monkeypatch.delenv("ARCHIVED_INDEX")
    assert locate_index(None, configured).path == Path("/conf/index.sqlite")


def test_serve_reads_index_path_and_stgcmt_from_the_configuration(
    tmp_path: Path, configured: int
) -> None:
    index = tmp_path / "configured" / "index.sqlite"
    archivectl(tmp_path, "config", "set", f"{EXT}/IndexPath", str(index))
    archivectl(tmp_path, "config", "set", f"{EXT}/StgCmtOnSameAssociation", "true")
    served = Served(tmp_path, configured, env=environment())
    try:
        assert index.is_file()
        paths = ct_study(tmp_path / "in", 2, patient_id="CONF1")
        dcmtk("storescu", "-aet", "MODALITY", "-aec", "ARCHIVED", "127.0.0.1", str(configured),
              *paths)  # fmt: skip
        # archivectl finds the same index through IndexPath (no --index, no $ARCHIVED_INDEX)
        listed = json.loads(archivectl(tmp_path, "study", "list", "--json").stdout)
        assert [s["instances"] for s in listed] == [2]

        catcher = ReportCatcher()  # StgCmtOnSameAssociation: the report comes back on it
        scu = AE(ae_title="MODALITY")
        scu.add_requested_context(StorageCommitmentPushModel)
        assoc = scu.associate(
            "127.0.0.1", configured, ae_title="ARCHIVED",
            ext_neg=[build_role(StorageCommitmentPushModel, scu_role=True)],
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, catcher.handle)],
        )  # fmt: skip
        try:
            stored = (pydicom.dcmread(p, stop_before_pixels=True) for p in paths)
            refs = [(str(d.SOPClassUID), str(d.SOPInstanceUID)) for d in stored]
            status, _ = assoc.send_n_action(
                request(refs), 1, StorageCommitmentPushModel, STGCMT_INSTANCE
            )
            assert status.Status == 0x0000
            assert catcher.arrived.wait(REPORT_TIMEOUT), "no N-EVENT-REPORT on the association"
        finally:
            assoc.release()
        assert catcher.reports[0][0] == 1  # all committed
    finally:
        served.stop()


def test_a_given_index_wins_over_environment_and_configuration(
    tmp_path: Path, configured: int
) -> None:
    from_config = tmp_path / "from-config" / "index.sqlite"
    from_env = tmp_path / "from-env" / "index.sqlite"
    given = tmp_path / "given" / "index.sqlite"
    archivectl(tmp_path, "config", "set", f"{EXT}/IndexPath", str(from_config))
    env = environment(ARCHIVED_INDEX=str(from_env))
    served = Served(tmp_path, configured, "--index", str(given), env=env)
    served.stop()
    assert given.is_file()
    assert not from_env.parent.exists() and not from_config.parent.exists()
    served = Served(tmp_path, configured, env=env)  # no --index: the environment wins
    served.stop()
    assert from_env.is_file() and not from_config.parent.exists()


def test_archivectl_names_where_a_missing_index_path_came_from(
    tmp_path: Path, configured: int
) -> None:
    missing = tmp_path / "nowhere" / "index.sqlite"
    archivectl(tmp_path, "config", "set", f"{EXT}/IndexPath", str(missing))
    for args in (("status",), ("run", "deleter")):
        result = archivectl(tmp_path, *args, check=False)
        assert result.returncode == 66, result.stderr
        line = result.stderr.strip()
        assert line.count("\n") == 0 and "Traceback" not in line
        assert str(missing) in line and "IndexPath of device 'archived'" in line
        assert "pass --index" in line
