"""Several real processes on one store: concurrent writers, a writer killed mid-transaction,
and notifications across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from archived.conf import ChangeEvent, Device, open_store

from .conftest import helper_command

DEVICES = "/dicomConfigurationRoot/dicomDevicesRoot"


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_concurrent_writers_lose_no_update_and_never_overlap(
    store_uri: str, tmp_path: Path
) -> None:
    with open_store(store_uri) as store:
        store.merge_device(Device(name="COUNTER", description="0"))
    log = tmp_path / "writers.log"
    per_process, modes = 15, ["batch", "olock", "batch", "olock"]
    procs = [
        subprocess.Popen(
            helper_command("increment", store_uri, str(log), str(per_process), mode),
            env=_env(),
        )
        for mode in modes
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    with open_store(store_uri) as store:
        assert store.find_device("COUNTER").description == str(per_process * len(modes))
    lines = log.read_text().splitlines()
    # One writer at a time: every B is followed by the E of the same process.
    assert len(lines) % 2 == 0
    for begin, end in zip(lines[::2], lines[1::2], strict=True):
        assert begin.startswith("B ") and end == "E " + begin[2:], (begin, end)
    assert len({line.split()[1] for line in lines}) == len(modes)


def test_writer_killed_mid_transaction_leaves_no_partial_state(store_uri: str) -> None:
    with open_store(store_uri) as store:
        store.ensure_own_device()
        before = store.get_node("/")
    with subprocess.Popen(
        helper_command("hang", store_uri), stdout=subprocess.PIPE, text=True, env=_env()
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "in-transaction"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    with open_store(store_uri) as store:
        assert store.get_node("/") == before
        assert "PARTIAL1" not in store.list_device_names()
        device = store.find_device("archived")  # the write lock was released with the process
        device.description = "written after the crash"
        store.merge_device(device)
        assert store.find_device("archived").description == "written after the crash"


def test_subscribers_in_other_processes_are_told(store_uri: str) -> None:
    with open_store(store_uri, poll_interval=0.02) as store:
        store.ensure_own_device()
        events: list[ChangeEvent] = []
        got = threading.Event()

        def on_change(event: ChangeEvent) -> None:
            events.append(event)
            got.set()

        store.subscribe(on_change)
        subprocess.run(helper_command("describe", store_uri, "from child"), check=True,
                       env=_env(), timeout=60)  # fmt: skip
        assert got.wait(10)
        assert events[0].origin == "remote"
        assert events[0].paths == (f"{DEVICES}/archived/dicomDescription",)
        assert store.own_device().description == "from child"

        with subprocess.Popen(
            helper_command("watch", store_uri, f"{DEVICES}/archived"),
            stdout=subprocess.PIPE, text=True, env=_env(),
        ) as watcher:  # fmt: skip
            try:
                assert watcher.stdout is not None
                assert watcher.stdout.readline().strip() == "ready"
                device = store.find_device("archived")
                device.description = "from parent"
                store.merge_device(device)
                seen = json.loads(watcher.stdout.readline())
                assert watcher.wait(timeout=30) == 0
            finally:
                if watcher.poll() is None:
                    watcher.kill()
        assert seen == {"paths": [f"{DEVICES}/archived/dicomDescription"],
                        "description": "from parent"}  # fmt: skip
