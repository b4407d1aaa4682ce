"""hsmfs config show masks secrets; SIGHUP reloads what can change live."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store, hsmfs_cli, status
from tests.mounts import wait_for

SECRET_URL = (
    "s3://AKIAEXAMPLEKEY:wJalrXUtnFEMI-SECRET@bucket/prefix"
    "?endpoint=http://admin:hunter2-SECRET@127.0.0.1:9000&region=eu-west-1"
)


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "hsmfs.toml"
    config.write_text(f'[hsm]\nbackend = "{SECRET_URL}"\nhigh_watermark = "85%"\n')
    result = hsmfs_cli("config", "show", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["hsm"]["high_watermark"] == "85%"
    assert shown["hsm"]["migrate_after"] == 60.0  # defaults are part of the effective config
    backend = shown["hsm"]["backend"]
    assert backend.startswith("s3://") and "@bucket/prefix" in backend
    assert "127.0.0.1:9000" in backend and "region=eu-west-1" in backend


def test_config_show_names_a_bad_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[hsm]\nhigh_watermark = "lots"\n')
    result = hsmfs_cli("config", "show", "--config", config)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(config) in result.stderr
    assert "high_watermark" in result.stderr and "Traceback" not in result.stderr


def test_sighup_reloads_watermarks(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, '[hsm]\nhigh_watermark = "99%"\nlow_watermark = "98%"\n')
    total = status(hsm)["cache"]["total"]
    assert status(hsm)["cache"]["high"] == int(total * 0.99)
    assert hsm.proc is not None

    hsm.config.write_text('[hsm]\nhigh_watermark = 123456789\nlow_watermark = "100M"\n')
    hsm.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: status(hsm)["cache"]["high"] == 123456789, what="the reloaded mark")
    assert status(hsm)["cache"]["low"] == 100 * 1024 * 1024

    hsm.config.write_text("[hsm\n")  # broken: the running configuration stays
    hsm.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in hsm.log.read_text(), what="the log line")
    assert hsm.proc.poll() is None
    assert status(hsm)["cache"]["high"] == 123456789
