"""The operator's views when something is missing: archived not running, an index that is
not there, a configuration that is not there, a nearline mount that is gone. In-process
(archivectl's main), on real LMDB stores and SQLite indexes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from archived.conf import FileSystem, FileSystemGroup, open_store
from archived.conflocation import locate_config
from archived.ctl import main
from archived.index import Index

DEVICES = "/dicomConfigurationRoot/dicomDevicesRoot"


@pytest.fixture
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHIVED_INDEX", raising=False)
    monkeypatch.delenv("ARCHIVED_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, "\n".join(line.rstrip() for line in out.splitlines()), err


def configured(tmp_path: Path, *, nearline: Path | None = None) -> str:
    """A store whose IndexPath names tmp_path/index.sqlite, with ONLINE (and a tar: file
    system written through the typed API, as if its mount had been live when added)."""
    uri = f"lmdb://{tmp_path}/conf"
    (tmp_path / "online").mkdir()
    with open_store(uri) as store:
        store.ensure_own_device()
        device = store.find_device(store.device_name)  # a copy to change
        ext = device.archive
        assert ext is not None
        ext.index_path = str(tmp_path / "index.sqlite")
        groups = [("ONLINE_STORAGE", str(tmp_path / "online"))]
        if nearline is not None:
            groups.append(("NEARLINE_STORAGE", f"tar:{nearline}"))
        for group_id, path in groups:
            ext.file_system_groups.append(
                FileSystemGroup(group_id=group_id, file_systems=[FileSystem(path=path)])
            )
        store.merge_device(device)
    return uri


def test_status_says_archived_is_not_running_and_what_to_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_environment: None
) -> None:
    uri = configured(tmp_path)
    Index(tmp_path / "index.sqlite").close()  # an index, but no archived serve writing status
    code, out, _ = run(capsys, "--config", uri, "status")
    assert code == 0
    flat = " ".join(out.split())  # long lines wrap
    assert f"archived NOT RUNNING (no status file {tmp_path}/archived.status.json); start it " in (
        flat
    )
    assert "start it (`archived serve`, systemctl start archived, or the quick start)" in flat
    assert re.search(r"^filecopy +disabled +- +archived is not running +nothing yet$", out, re.M)
    assert "0 patients, 0 studies, 0 series, 0 instances, 0 files" in out
    code, out, _ = run(capsys, "--config", uri, "status", "--json")
    assert isinstance(json.loads(out)["daemon"], str)
    assert json.loads(out)["services"].startswith("archived serve is not running")


def test_a_nearline_mount_that_is_gone_is_a_failure_with_its_remedy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_environment: None
) -> None:
    mount_point = tmp_path / "nearline"  # hsmfs is not mounted: a plain, empty directory
    mount_point.mkdir()
    uri = configured(tmp_path, nearline=mount_point)
    Index(tmp_path / "index.sqlite").close()
    code, out, _ = run(capsys, "--config", uri, "status")
    assert code == 0
    assert re.search(rf"^NEARLINE_STORAGE +tar:{mount_point}$", out, re.M)
    assert "RW, hsmfs NOT MOUNTED;" in out
    assert re.search(
        rf"failures {mount_point} is not on a live hsmfs mount: nothing is mounted there, "
        rf"it is a plain directory on /\S*, without user.hsm.\* attributes; mount hsmfs on it "
        rf"\(hsmfs mount {mount_point} --cache DIR --state DIR\)",
        " ".join(out.split()),
    )
    status = json.loads(run(capsys, "--config", uri, "status", "--json")[1])
    nearline = next(fs for fs in status["file_systems"] if fs["group"] == "NEARLINE_STORAGE")
    assert nearline["hsmfs"]["live"] is False


def test_a_missing_index_names_every_place_looked_at(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_environment: None
) -> None:
    uri = configured(tmp_path)
    for view in (("status",), ("study", "list"), ("study", "show", "1.2.3")):
        code, out, err = run(capsys, "--config", uri, *view)
        assert code == 66 and out == "" and err.count("\n") == 1
        assert err == (
            f"archivectl: {tmp_path}/index.sqlite: no index there (looked at: --index: not "
            f"given; $ARCHIVED_INDEX: not set; IndexPath of device 'archived' in {uri}: "
            f"{tmp_path}/index.sqlite); `archived serve` creates it when it starts: start it "
            "first, or pass --index, set $ARCHIVED_INDEX or IndexPath in the configuration\n"
        )


def test_an_index_path_left_at_its_default_is_named_as_such(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_environment: None
) -> None:
    uri = f"lmdb://{tmp_path}/conf"
    with open_store(uri) as store:
        store.ensure_own_device()
    code, _, err = run(capsys, "--config", uri, "status")
    assert code == 66
    assert f"IndexPath of device 'archived' in {uri} (unset: default): " in err


def test_a_missing_configuration_names_every_place_looked_at(tmp_path: Path) -> None:
    env_file = tmp_path / "archived.env"
    implicit = ((f"lmdb://{tmp_path}/default", "the default"),
                (f"lmdb://{tmp_path}/quickstart", "the quick start's"))  # fmt: skip
    location = locate_config(None, env_file, implicit)
    assert not location.exists
    assert location.missing() == (
        f"no configuration store found (looked at: --config: not given; $ARCHIVED_CONFIG: not "
        f"set; {env_file}: absent; lmdb://{tmp_path}/default (the default): no store there; "
        f"lmdb://{tmp_path}/quickstart (the quick start's): no store there); pass --config "
        "URI or set $ARCHIVED_CONFIG, or set one up: `bash systemd/bootstrap.sh run` (the "
        "quick start) or systemd/install.sh"
    )


def test_the_configuration_is_found_without_a_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config, then $ARCHIVED_CONFIG, then the service's settings file, then the first
    store that exists of the default and the quick start's."""
    monkeypatch.delenv("ARCHIVED_CONFIG", raising=False)
    env_file = tmp_path / "archived.env"
    default, quickstart = f"lmdb://{tmp_path}/default", f"lmdb://{tmp_path}/quickstart"
    implicit = ((default, "the default"), (quickstart, "the quick start's"))
    with open_store(quickstart) as store:
        store.ensure_own_device()
    found = locate_config(None, env_file, implicit)
    assert (found.uri, found.source) == (quickstart, "the quick start's")
    with open_store(default) as store:
        store.ensure_own_device()
    assert locate_config(None, env_file, implicit).uri == default
    env_file.write_text(
        "# ARCHIVED_CONFIG=lmdb:///commented\nARCHIVED_CONFIG=lmdb:///first\n"
        'ARCHIVED_CONFIG="lmdb:///service"\n'
    )
    found = locate_config(None, env_file, implicit)  # the last assignment wins, as in systemd
    assert (found.uri, found.source) == ("lmdb:///service", f"ARCHIVED_CONFIG in {env_file}")
    monkeypatch.setenv("ARCHIVED_CONFIG", "lmdb:///from-env")
    assert locate_config(None, env_file, implicit).uri == "lmdb:///from-env"
    assert locate_config("json:///given.json", env_file, implicit).source == "--config"


def test_config_init_records_the_index_path_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    uri = f"lmdb://{tmp_path}/conf"
    index_path = f"{DEVICES}/archived/deviceExtensions/ArchiveDeviceExtension/IndexPath"
    code, out, _ = run(capsys, "--config", uri, "config", "init", "--index", "/srv/a/index.sqlite")
    assert code == 0
    assert json.loads(out) == {"device": "archived", "IndexPath": "/srv/a/index.sqlite"}
    code, out, _ = run(capsys, "--config", uri, "config", "init", "--index", "/srv/b/index.sqlite")
    assert json.loads(out)["kept"] == (
        "IndexPath was set before; kept /srv/a/index.sqlite, not /srv/b/index.sqlite"
    )
    assert json.loads(run(capsys, "--config", uri, "config", "get", index_path)[1]) == (
        "/srv/a/index.sqlite"
    )
