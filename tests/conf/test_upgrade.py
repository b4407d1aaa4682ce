"""The upgrade runner: versions per script, atomic upgrades, passive deployments wait."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from archived.conf import ConfigStore, UpgradeError
from archived.conf.upgrade import (
    UpgradeRunner,
    UpgradeSettings,
    load_upgrade_settings,
    stored_version,
    version_key,
)

from . import upgrade_scripts
from .upgrade_scripts import AddNearlineGroup

MOD = "tests.conf.upgrade_scripts"


@pytest.fixture(autouse=True)
def _fresh_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    upgrade_scripts.CALLS.clear()
    monkeypatch.setattr(AddNearlineGroup, "version", "1.0")
    yield


def _settings(
    tmp_path: Path, version: str, scripts: list[str], active: str = "a"
) -> UpgradeSettings:
    path = tmp_path / f"upgrade-{version}.json"
    path.write_text(json.dumps({
        "upgradeToVersion": version,
        "upgradeScriptsToRun": scripts,
        "properties": {"nearline": "tar:/mnt/nearline"},
        "activeUpgradeRunnerDeployment": active,
    }))  # fmt: skip
    return load_upgrade_settings(str(path))


def _groups(store: ConfigStore) -> list[str]:
    return [g.group_id for g in store.find_device("archived").archive.file_system_groups]


def test_scripts_run_once_per_version_and_the_version_is_recorded(
    store: ConfigStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scripts = [f"{MOD}:AddNearlineGroup", f"{MOD}.DescribeDevice"]
    report = UpgradeRunner(store, _settings(tmp_path, "2.0", scripts), "a").run()
    assert report.ran == scripts
    assert stored_version(store) == "2.0"
    assert _groups(store) == ["NEARLINE_STORAGE"]
    assert store.find_device("archived").description == "upgraded from None to 2.0"

    report = UpgradeRunner(store, _settings(tmp_path, "2.1", scripts), "a").run()
    assert report.skipped == scripts and report.ran == []  # same versions: skipped
    assert stored_version(store) == "2.1"

    AddNearlineGroup.version = "1.1"  # a newer script: runs again, knows what ran last
    upgrade_scripts.CALLS.clear()
    with pytest.raises(UpgradeError, match="'NEARLINE_STORAGE' is defined twice"):
        # ... and this one is not idempotent: the duplicate path is caught by integrity
        UpgradeRunner(store, _settings(tmp_path, "2.2", scripts), "a").run()
    assert upgrade_scripts.CALLS == [("AddNearlineGroup", "1.0")]
    assert stored_version(store) == "2.1"

    AddNearlineGroup.version = "0.9"  # older than what ran: skipped with a warning
    with caplog.at_level(logging.WARNING, logger="archived.conf.upgrade"):
        report = UpgradeRunner(store, _settings(tmp_path, "2.3", scripts), "a").run()
    assert report.downgraded == [f"{MOD}:AddNearlineGroup"]
    assert "lower than 1.0" in caplog.text
    assert stored_version(store) == "2.3"


def test_a_failing_script_rolls_back_the_whole_upgrade(store: ConfigStore, tmp_path: Path) -> None:
    before = store.get_node("/")
    settings = _settings(tmp_path, "3.0", [f"{MOD}:AddNearlineGroup", f"{MOD}:Broken"])
    with pytest.raises(UpgradeError, match=r"script tests\.conf\.upgrade_scripts:Broken failed"):
        UpgradeRunner(store, settings, "a").run()
    assert store.get_node("/") == before  # AddNearlineGroup's change is gone too
    assert stored_version(store) is None


def test_unimportable_script_fails_before_anything_runs(store: ConfigStore, tmp_path: Path) -> None:
    settings = _settings(tmp_path, "3.0", [f"{MOD}:AddNearlineGroup", f"{MOD}:Missing"])
    with pytest.raises(UpgradeError, match="cannot import upgrade script"):
        UpgradeRunner(store, settings, "a").run()
    assert upgrade_scripts.CALLS == []


def test_passive_deployment_waits_for_the_active_one(store: ConfigStore, tmp_path: Path) -> None:
    settings = _settings(tmp_path, "4.0", [f"{MOD}:DescribeDevice"], active="a")
    reports = []
    passive = threading.Thread(
        target=lambda: reports.append(UpgradeRunner(store, settings, "b", wait_interval=0.01).run())
    )
    passive.start()
    passive.join(0.2)
    assert passive.is_alive()  # still waiting: nobody upgraded yet
    UpgradeRunner(store, settings, "a").run()
    passive.join(30)
    assert not passive.is_alive()
    assert reports[0].waited and reports[0].ran == []
    assert upgrade_scripts.CALLS == [("DescribeDevice", None)]  # ran once, by "a"


def test_passive_deployment_gives_up_after_its_timeout(store: ConfigStore, tmp_path: Path) -> None:
    settings = _settings(tmp_path, "5.0", [], active="a")
    runner = UpgradeRunner(store, settings, "b", wait_timeout=0.1, wait_interval=0.01)
    with pytest.raises(UpgradeError, match="deployment 'a' to upgrade"):
        runner.run()


def test_bad_settings_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"upgradeToVersion": "1"}')
    with pytest.raises(UpgradeError, match=r"bad\.json is not valid"):
        load_upgrade_settings(str(path))


def test_version_order() -> None:
    assert version_key("1.10") > version_key("1.9")
    assert version_key("2.0") == version_key("2.0")
    assert version_key("1.0") < version_key("1.0.1")
