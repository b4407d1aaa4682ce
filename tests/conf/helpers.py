"""Helper processes for the multi-process tests of archived.conf (run as a script)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from archived.conf import ChangeEvent, Device, OptimisticLockError, open_store, remote_ae_device


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


def increment(uri: str, log: str, count: str, mode: str) -> None:
    """Add 1 to the counter kept in device COUNTER's description, `count` times."""
    pid = os.getpid()
    with open_store(uri) as store:
        for _ in range(int(count)):
            while True:
                device = None if mode == "batch" else store.find_device("COUNTER")

                def step(loaded: Device | None = device) -> None:
                    _log(log, f"B {pid}")  # inside the write transaction
                    try:
                        fresh = loaded or store.find_device("COUNTER")
                        fresh.description = str(int(fresh.description or "0") + 1)
                        time.sleep(0.002)  # widen the window a lost update would need
                        store.merge_device(fresh)
                    finally:
                        _log(log, f"E {pid}")  # still inside: commit or abort follows

                try:
                    store.batch(step)
                    break
                except OptimisticLockError:
                    continue  # loaded outside the transaction and someone was faster: redo


def hang(uri: str) -> None:
    """Write inside a transaction, say so, then wait to be killed before committing."""
    with open_store(uri) as store:

        def never_commits() -> None:
            store.merge_device(remote_ae_device("PARTIAL1", "10.9.9.1", 104))
            store.merge_device(remote_ae_device("PARTIAL2", "10.9.9.2", 104))
            print("in-transaction", flush=True)
            time.sleep(3600)

        store.batch(never_commits)


def watch(uri: str, prefix: str) -> None:
    """Print the first remote change event touching `prefix` as JSON, then exit."""
    with open_store(uri, poll_interval=0.02) as store:
        done = threading.Event()
        seen: list[ChangeEvent] = []

        def on_change(event: ChangeEvent) -> None:
            if event.origin == "remote" and event.touches(prefix):
                seen.append(event)
                done.set()

        store.subscribe(on_change)
        print("ready", flush=True)
        if not done.wait(60):
            sys.exit("no change seen")
        description = store.find_device("archived").description
        print(json.dumps({"paths": list(seen[0].paths), "description": description}), flush=True)


def describe(uri: str, text: str) -> None:
    with open_store(uri) as store:
        device = store.find_device("archived")
        device.description = text
        store.merge_device(device)


if __name__ == "__main__":
    {"increment": increment, "hang": hang, "watch": watch, "describe": describe}[sys.argv[1]](
        *sys.argv[2:]
    )
