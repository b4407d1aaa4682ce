"""Configuration store (issue 5): reads from the in-memory view vs from storage, and merging a
device of 100 AEs vs the raw storage write underneath, measured side by side.

    python tests/bench/bench_conf.py [--aes 100] [--seconds 1.0]

- own device: store.own_device() (the shared read-only view) vs reading it from the store
  (LMDB read transaction + JSON parse + typed validation), and store.find_device() (a fresh
  mutable copy from the view) in between;
- merge: merge_device() of a device with 100 AEs (one AE changed; optimistic locking,
  integrity check, commit, view refresh) vs a raw LMDB put+commit of the same bytes;
- both backends (lmdb:///, json:///) for the merge.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lmdb

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from archived.conf import (  # noqa: E402
    ApplicationEntity,
    Connection,
    TransferCapability,
    default_archive_device,
    open_store,
)
from archived.conf.backends import open_backend  # noqa: E402
from archived.conf.defaults import validate_device  # noqa: E402

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90"]


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """Seconds per call, from as many calls as fit in `seconds` (at least 5)."""
    fn()  # warm up
    calls, start = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def big_device(aes: int):  # type: ignore[no-untyped-def]
    device = default_archive_device()
    for i in range(aes):
        conn = Connection(hostname=f"10.0.{i // 250}.{i % 250}", port=104)
        device.connections.append(conn)
        device.application_entities.append(ApplicationEntity(
            ae_title=f"AE{i:04d}", connection_refs=[conn.uuid],
            transfer_capabilities=[TransferCapability(sop_class=uid, role=role,
                                                      transfer_syntaxes=SYNTAXES)
                                   for uid in (CT, MR) for role in ("SCU", "SCP")],
        ))  # fmt: skip
    return device


def row(label: str, seconds: float, baseline: float) -> None:
    print(f"  {label:<58} {seconds * 1e6:10.1f} us   {seconds / baseline:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"lmdb://{tmp}/conf"
        with open_store(uri) as store:
            store.merge_device(big_device(args.aes))
            backend = open_backend(uri)

            def from_store() -> object:
                raw = backend.read().shards["archived"]
                return validate_device(json.loads(raw), "/archived")

            view = per_call(store.own_device, args.seconds)
            fresh = per_call(lambda: store.find_device("archived"), args.seconds)
            stored = per_call(from_store, args.seconds)
            backend.close()
            print(f"read the own device ({args.aes} AEs), baseline: own_device() (view)")
            row("own_device() - shared read-only view", view, view)
            row("find_device() - fresh mutable copy from the view", fresh, view)
            row("read from LMDB + parse + validate", stored, view)

            counter = [0]

            def merge_one() -> None:
                device = store.find_device("archived")
                counter[0] += 1
                device.application_entities[counter[0] % args.aes].description = str(counter[0])
                store.merge_device(device)

            merge = per_call(merge_one, args.seconds)
            node_bytes = store._state.devices["archived"].raw  # bench reads the stored form
        env = lmdb.open(f"{tmp}/raw", map_size=1 << 30)

        def raw_put() -> None:
            with env.begin(write=True) as txn:
                txn.put(b"d/archived", node_bytes)

        raw = per_call(raw_put, args.seconds)
        env.close()

        json_uri = f"json://{tmp}/conf.json"
        with open_store(json_uri) as store:
            store.merge_device(big_device(args.aes))
            counter[0] = 0
            json_merge = per_call(merge_one, args.seconds)

        print(f"merge a device of {args.aes} AEs ({len(node_bytes) // 1024} KiB), "
              "baseline: raw LMDB put+commit of the same bytes")  # fmt: skip
        row("raw LMDB put + commit", raw, raw)
        row("find_device + change one AE + merge_device (lmdb)", merge, raw)
        row("find_device + change one AE + merge_device (json)", json_merge, raw)


if __name__ == "__main__":
    main()
