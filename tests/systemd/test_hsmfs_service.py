"""hsmfs as a systemd service: notify protocol, SIGTERM, SIGHUP and metrics on a real mount."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hsmfs.snapshot import SNAPSHOT_KEY
from tests.dicom.peers import free_port
from tests.mounts import HsmMount, wait_for
from tests.systemd.sdnotify import NotifyListener

pytestmark = pytest.mark.fuse  # it starts mounts of its own

MiB = 1024 * 1024
WATCHDOG_USEC = 400_000  # pings every 0.2 s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    sock = NotifyListener(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def start_mount(tmp_path: Path) -> Iterator[type[HsmMount]]:
    mounts: list[HsmMount] = []

    def start(config_text: str = "", **kwargs: object) -> HsmMount:
        mount = HsmMount(tmp_path, config_text=config_text, **kwargs)  # type: ignore[arg-type]
        mounts.append(mount)
        return mount.start()

    yield start  # type: ignore[misc]
    for mount in mounts:
        mount.cleanup()


def hsmctl(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "hsmfs.ctl", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def status(mount: HsmMount) -> dict:
    return json.loads(hsmctl("status", "--json", str(mount.mnt)))


def test_ready_watchdog_and_stopping_from_a_real_mount(
    start_mount, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in listener.environment(WATCHDOG_USEC).items():
        monkeypatch.setenv(name, value)
    mount = start_mount()
    lines = listener.wait_for("READY=1")
    # READY=1 only once the mount answers through the kernel.
    assert os.path.ismount(mount.mnt)
    assert f"STATUS=mounted {mount.mnt}" in lines
    # Pings keep coming from the trio loop while the file system serves requests.
    (mount.mnt / "f").write_bytes(b"x" * 1000)
    listener.wait_for("WATCHDOG=1", count=5)
    assert "STOPPING=1" not in listener.lines
    assert mount.stop() == 0
    listener.wait_for("STOPPING=1")
    assert listener.lines.count("STOPPING=1") == 1
    assert listener.lines.count("READY=1") == 1


def test_no_watchdog_pings_for_another_process(
    start_mount, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCHDOG_PID names another process: the daemon inherited the variables, it must not ping."""
    for name, value in listener.environment(WATCHDOG_USEC).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WATCHDOG_PID", "1")
    mount = start_mount()
    listener.wait_for("READY=1")
    assert mount.stop() == 0
    listener.wait_for("STOPPING=1")
    assert "WATCHDOG=1" not in listener.lines


def test_sigterm_loses_nothing_and_leaves_the_mount_point_clean(
    start_mount, tmp_path: Path
) -> None:
    config = "[hsm]\nmigrate_after = 0\nscan_interval = 0.1\n"
    mount = start_mount(config)
    contents = {f"dir/file{i}": os.urandom(MiB + i) for i in range(12)}
    (mount.mnt / "dir").mkdir()
    for name, data in contents.items():
        (mount.mnt / name).write_bytes(data)
    # Uploads are starting or running now; the stop must finish or keep each of them.
    assert mount.stop() == 0
    assert not os.path.ismount(mount.mnt)
    assert list(mount.mnt.iterdir()) == []  # nothing written into the bare directory
    assert (mount.state / "objects" / SNAPSHOT_KEY).is_file()  # clean stop: snapshot taken
    assert "did not shut down cleanly" not in mount.log.read_text()

    mount.start()
    assert "did not shut down cleanly" not in mount.log.read_text()
    for name, data in contents.items():
        assert (mount.mnt / name).read_bytes() == data
        assert os.getxattr(mount.mnt / name, "user.hsm.state") in (b"dirty", b"archived")
    # Whatever was cut short is migrated after the restart.
    wait_for(
        lambda: all(os.getxattr(mount.mnt / n, "user.hsm.state") == b"archived" for n in contents),
        what="every file to be archived after the restart",
    )


def test_sighup_changes_a_watermark_live(start_mount, tmp_path: Path) -> None:
    mount = start_mount("[hsm]\nhigh_watermark = 123456789\nlow_watermark = 1000\n")
    assert status(mount)["cache"]["high"] == 123456789
    mount.config.write_text("[hsm]\nhigh_watermark = 987654321\nlow_watermark = 2000\n")
    assert mount.proc is not None
    mount.proc.send_signal(signal.SIGHUP)
    current = wait_for(
        lambda: (s := status(mount))["cache"]["high"] == 987654321 and s,
        what="the new high watermark in hsmctl status",
    )
    assert current["cache"]["low"] == 2000
    assert mount.proc.poll() is None  # reloaded, not restarted


def test_sighup_keeps_the_old_configuration_when_the_new_one_is_invalid(start_mount) -> None:
    mount = start_mount("[hsm]\nhigh_watermark = 123456789\n")
    mount.config.write_text("[hsm]\nhigh_watermark = 'lots'\n")
    assert mount.proc is not None
    mount.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in mount.log.read_text(),
             what="the reload error in the log")  # fmt: skip
    assert str(mount.config) in mount.log.read_text()
    assert status(mount)["cache"]["high"] == 123456789


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} from the endpoint's text format."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def test_metrics_endpoint_serves_the_named_series(start_mount) -> None:
    port = free_port()
    mount = start_mount(
        f"[hsm]\nmigrate_after = 3600\nscan_interval = 0.1\nhigh_watermark = 123456789\n"
        f"low_watermark = 100000\n[metrics]\nport = {port}\n"
    )
    data = os.urandom(3 * MiB)
    (mount.mnt / "a").write_bytes(data)
    s = scrape(port)
    assert value(s, "hsmfs_cache_high_watermark_bytes") == 123456789
    assert value(s, "hsmfs_cache_low_watermark_bytes") == 100000
    assert value(s, "hsmfs_cache_used_bytes") >= len(data)
    assert value(s, "hsmfs_cache_size_bytes") > 0
    assert value(s, "hsmfs_dirty_bytes") == len(data)
    assert value(s, "hsmfs_dirty_files") == 1
    assert value(s, "hsmfs_migrate_queue_length") == 1
    assert value(s, "hsmfs_stage_queue_length") == 0
    assert value(s, "hsmfs_object_store_errors_total") == 0
    assert value(s, "hsmfs_stage_duration_seconds_count") == 0

    hsmctl("archive", str(mount.mnt / "a"))
    hsmctl("release", str(mount.mnt / "a"))
    assert (mount.mnt / "a").read_bytes() == data  # stages it back
    s = wait_for(lambda: (s := scrape(port))["hsmfs_stages_total"] and s,
                 what="a scrape")  # fmt: skip
    assert value(s, "hsmfs_dirty_bytes") == 0
    assert value(s, "hsmfs_migrate_queue_length") == 0
    assert value(s, "hsmfs_migrated_files_total") == 1
    assert value(s, "hsmfs_migrated_bytes_total") == len(data)
    assert value(s, "hsmfs_released_files_total") == 1
    assert value(s, "hsmfs_stages_total", result="completed") == 1
    assert value(s, "hsmfs_stages_total", result="failed") == 0
    assert value(s, "hsmfs_stage_duration_seconds_count") == 1
    assert value(s, "hsmfs_stage_duration_seconds_bucket", le="+Inf") == 1
    assert 0 < value(s, "hsmfs_stage_duration_seconds_sum") < 60
    assert value(s, "hsmfs_object_store_bytes_up_total") >= len(data)
    assert value(s, "hsmfs_object_store_bytes_down_total") >= len(data)

    assert mount.stop() == 0
    with pytest.raises(OSError):  # the endpoint goes away with the daemon
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_busy_metrics_port_is_one_line_with_the_mount_error_code(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        mount = HsmMount(tmp_path, config_text=f"[metrics]\nport = {port}\n")
        try:
            with pytest.raises(RuntimeError) as failure:
                mount.start()
        finally:
            mount.cleanup()
    message = str(failure.value).splitlines()[0]
    assert f"127.0.0.1:{port}" in message and "[metrics] port" in message
    assert mount.proc is not None and mount.proc.returncode == 4
    assert not os.path.ismount(mount.mnt)
