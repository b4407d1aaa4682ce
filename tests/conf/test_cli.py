"""archivectl config / ae / fs against real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archived.conf import open_store
from archived.ctl import main

DEVICES = "/dicomConfigurationRoot/dicomDevicesRoot"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_fs_add_and_list(
    capsys: pytest.CaptureFixture[str], store_uri: str, tmp_path: Path
) -> None:
    lossy, online = tmp_path / "lossy", tmp_path / "online"
    code, added, _ = run(capsys, "--config", store_uri, "fs", "add", "--create", "--group",
                         "LOSSY_STORAGE", str(lossy))  # fmt: skip
    assert code == 0 and lossy.is_dir()
    online.mkdir()
    run(capsys, "--config", store_uri, "fs", "add", "--group", "ONLINE_STORAGE", "--status", "RO",
        str(online))  # fmt: skip
    code, listed, _ = run(capsys, "--config", store_uri, "fs", "list")
    assert code == 0
    assert listed == [
        {"uuid": added["uuid"], "group": "LOSSY_STORAGE", "path": str(lossy),  # type: ignore[index]
         "status": "RW", "availability": "ONLINE"},
        {"uuid": listed[1]["uuid"], "group": "ONLINE_STORAGE", "path": str(online),  # type: ignore[index]
         "status": "RO", "availability": "ONLINE"},
    ]  # fmt: skip
    with open_store(store_uri) as store:  # the same file systems, seen through the typed API
        ext = store.own_device().archive
        assert ext is not None
        assert ext.find_file_system(added["uuid"]).path == str(lossy)  # type: ignore[index,union-attr]
    code, _, err = run(capsys, "--config", store_uri, "fs", "add", "--group", "ONLINE_STORAGE",
                       str(online))  # fmt: skip
    assert code == 73 and "is also configured" in err


def test_ae_add_list_remove(capsys: pytest.CaptureFixture[str], store_uri: str) -> None:
    code, ae, _ = run(capsys, "--config", store_uri, "ae", "add", "MODALITY1", "10.0.0.8", "104",
                      "--no-retrieve", "--allow-host", "10.0.0.8")  # fmt: skip
    assert code == 0 and ae["dicomAETitle"] == "MODALITY1"  # type: ignore[index]
    with open_store(store_uri) as store:
        found = store.find_ae("MODALITY1")
        assert found.permissions.store and not found.permissions.retrieve
        assert found.permissions.allowed_hosts == ["10.0.0.8"]
        device = store.find_device_by_ae("MODALITY1")
        assert [(c.hostname, c.port) for c in device.connections_of(found)] == [("10.0.0.8", 104)]
    code, listed, _ = run(capsys, "--config", store_uri, "ae", "list")
    assert [(a["aet"], a["host"], a["port"]) for a in listed] == [("MODALITY1", "10.0.0.8", 104)]  # type: ignore[union-attr,index]
    code, _, err = run(capsys, "--config", store_uri, "ae", "add", "MODALITY1", "h", "104")
    assert code == 70 and "already exists" in err
    assert run(capsys, "--config", store_uri, "ae", "remove", "MODALITY1")[0] == 0
    code, _, err = run(capsys, "--config", store_uri, "ae", "remove", "MODALITY1")
    assert code == 72 and "no AE 'MODALITY1'" in err


def test_config_export_import_get_set_list_diff(
    capsys: pytest.CaptureFixture[str], store_uri: str, tmp_path: Path
) -> None:
    run(capsys, "--config", store_uri, "ae", "add", "PEER", "10.0.0.9", "104")
    exported = tmp_path / "export.json"
    assert run(capsys, "--config", store_uri, "config", "export", "-o", str(exported))[0] == 0
    tree = json.loads(exported.read_text())
    assert run(capsys, "--config", store_uri, "config", "export")[1] == tree
    assert run(capsys, "--config", store_uri, "config", "list")[1] == ["PEER"]

    port = f"{DEVICES}/PEER/dicomNetworkConnection/0/dicomPort"
    code, value, _ = run(capsys, "--config", store_uri, "config", "set", port, "11112")
    assert (code, value) == (0, 11112)
    assert run(capsys, "--config", store_uri, "config", "get", port)[1] == 11112
    code, diff, _ = run(capsys, "--config", store_uri, "config", "diff", str(exported))
    assert diff == [{"path": port, "store": 11112, "file": 104}]

    tree["dicomConfigurationRoot"]["dicomDevicesRoot"]["PEER"]["dicomDescription"] = "imported"
    exported.write_text(json.dumps(tree))
    assert run(capsys, "--config", store_uri, "config", "import", str(exported))[0] == 0
    assert run(capsys, "--config", store_uri, "config", "get", port)[1] == 104
    assert run(capsys, "--config", store_uri, "config", "diff", str(exported))[1] == []

    code, _, err = run(capsys, "--config", store_uri, "config", "import", str(tmp_path / "no"))
    assert code == 66 and "cannot read" in err
    code, _, err = run(capsys, "--config", store_uri, "config", "set", port, "not-a-port")
    assert code == 73 and port in err


def test_errors_are_one_line_with_a_documented_code(tmp_path: Path) -> None:
    env = {**os.environ, "ARCHIVED_CONFIG": f"lmdb://{tmp_path}/conf"}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(  # a read creates no store: it says where it looked
        [sys.executable, "-m", "archived.ctl", "config", "get", f"{DEVICES}/nothing"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 72 and done.stderr.count("\n") == 1
    assert f"lmdb://{tmp_path}/conf ($ARCHIVED_CONFIG): no store there" in done.stderr
    assert not (tmp_path / "conf").exists()
    with open_store(f"lmdb://{tmp_path}/conf") as store:
        store.ensure_own_device()
    done = subprocess.run(
        [sys.executable, "-m", "archived.ctl", "config", "get", f"{DEVICES}/nothing"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 72
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"archivectl: no device 'nothing' in lmdb://{tmp_path}/conf")
    assert (tmp_path / "conf" / "data.mdb").exists()  # $ARCHIVED_CONFIG was used
    done = subprocess.run(
        [sys.executable, "-m", "archived.ctl", "--config", "ftp://x/y", "fs", "list"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 71 and "cannot open configuration store ftp://x/y" in done.stderr


def test_config_get_and_set_show_settings_left_at_their_defaults(
    capsys: pytest.CaptureFixture[str], store_uri: str, tmp_path: Path
) -> None:
    online = str(tmp_path / "online")
    run(capsys, "--config", store_uri, "fs", "add", "--create", "--group", "ONLINE_STORAGE", online)
    ext = f"{DEVICES}/archived/deviceExtensions/ArchiveDeviceExtension"
    for name, default in (("IndexPath", "/var/lib/archived/index.sqlite"),
                          ("PendingResponseInterval", 5.0), ("StgCmtOnSameAssociation", False),
                          ("MaximumAssociations", 20)):  # fmt: skip
        assert run(capsys, "--config", store_uri, "config", "get", f"{ext}/{name}") == (
            0,
            default,
            "",
        )
    shown = run(capsys, "--config", store_uri, "config", "get", "--defaults", ext)[1]
    assert shown["IndexPath"] == "/var/lib/archived/index.sqlite"  # type: ignore[index]
    assert shown["FileSystemGroups"][0]["FileSystems"][0]["DirectoryPath"] == online  # type: ignore[index]
    assert "IndexPath" not in run(capsys, "--config", store_uri, "config", "get", ext)[1]  # type: ignore[operator]

    assert run(capsys, "--config", store_uri, "config", "set", f"{ext}/IndexPath",
               "/srv/archived/index.sqlite") == (0, "/srv/archived/index.sqlite", "")  # fmt: skip
    assert run(capsys, "--config", store_uri, "config", "set", f"{ext}/PendingResponseInterval",
               "5") == (0, 5, "")  # the default again: not stored, still shown  # fmt: skip
    with open_store(store_uri) as store:
        settings = store.own_device().archive
        assert settings is not None and settings.index_path == "/srv/archived/index.sqlite"
        assert "PendingResponseInterval" not in store.get_node(ext)

    code, _, err = run(capsys, "--config", store_uri, "config", "set", f"{ext}/IndexPath",
                       "index.sqlite")  # fmt: skip
    assert code == 73 and f"{ext}/IndexPath" in err and "write an absolute path" in err
    code, _, err = run(capsys, "--config", store_uri, "config", "get", f"{ext}/NoSuchSetting")
    assert code == 72 and "no node at" in err
