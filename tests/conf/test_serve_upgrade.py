"""`archived serve --upgrade-settings FILE` upgrades the configuration before serving;
a failed upgrade stops start-up with one line and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from archived.conf import open_store
from archived.conf.upgrade import stored_version

MOD = "tests.conf.upgrade_scripts"


def serve(tmp_path: Path, scripts: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    settings = tmp_path / "upgrade.json"
    settings.write_text(json.dumps({
        "upgradeToVersion": "2.0",
        "upgradeScriptsToRun": scripts,
        "properties": {"nearline": "tar:/mnt/nearline"},
        "activeUpgradeRunnerDeployment": "here",
    }))  # fmt: skip
    cmd = [sys.executable, "-m", "archived.cli", "serve", "--config", f"lmdb://{tmp_path}/conf",
           "--index", str(tmp_path / "index.sqlite"), "--upgrade-settings", str(settings),
           "--deployment", "here"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_a_failed_upgrade_stops_start_up_and_rolls_back(tmp_path: Path) -> None:
    result = serve(tmp_path, [f"{MOD}:AddNearlineGroup", f"{MOD}:Broken"])
    assert result.returncode != 0
    assert "cannot convert the old layout" in result.stderr
    assert "Traceback" not in result.stderr
    with open_store(f"lmdb://{tmp_path}/conf") as store:
        assert stored_version(store) is None
        device = store.ensure_own_device()
        assert device.archive is None or device.archive.group("NEARLINE_STORAGE") is None
