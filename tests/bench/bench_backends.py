"""Object-store layer vs raw boto3 on the same moto S3 endpoint, measured side by side.

    python tests/bench/bench_backends.py [--size-mib 256] [--rounds 3]

Prints, for a 256 MiB object, the throughput ratio of S3Store.upload (MD5 pass,
multipart upload, HEAD verification; with the MD5 known, hashing runs alongside the
upload) to boto3 upload_file, of S3Store.download (parallel
ranged GETs, MD5 verification) to boto3 download_file, and the time-to-first-byte ratio
of open_range to a raw get_object. Goals (issue 3): throughput >= 0.9x, TTFB <= 1.5x.

The baselines use boto3's default TransferConfig (what "raw boto3" means); a second
baseline with the layer's own part size and concurrency is printed next to it, so the
effect of the configuration and of the layer's own work can be told apart. The endpoint
runs in its own process so that it does not share the client's interpreter lock.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hsmfs.backends import open_backend  # noqa: E402
from hsmfs.backends.digest import md5_file  # noqa: E402
from hsmfs.backends.s3 import S3Store  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench"
FIRST_BYTES = 64 * 1024

SERVER = """
import sys
from tests.s3server import S3Server
server = S3Server()
server.start()
print(server.endpoint, flush=True)
sys.stdin.read()  # until the benchmark exits
"""


def start_endpoint() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=REPO,
        # moto spools objects to $TMPDIR: keep them in memory so disk write-back does
        # not add noise to the numbers
        env={**os.environ, "TMPDIR": "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def first_bytes_raw(client: object, key: str) -> float:
    started = time.perf_counter()
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"]  # type: ignore[attr-defined]
    body.read(FIRST_BYTES)
    elapsed = time.perf_counter() - started
    body.close()
    return elapsed


def first_bytes_layer(store: S3Store, key: str) -> float:
    started = time.perf_counter()
    with store.open_range(key) as reader:
        reader.read(FIRST_BYTES)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    server, endpoint = start_endpoint()
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        store = open_backend(f"s3://{BUCKET}/?endpoint={endpoint}&region=us-east-1")
        assert isinstance(store, S3Store)
        default_config = TransferConfig()
        same_ranges = TransferConfig(
            multipart_threshold=store.options.multipart_threshold,
            multipart_chunksize=store.options.download_chunksize,
            max_concurrency=store.options.transfer_concurrency,
        )
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch, "source")
            source.write_bytes(os.urandom(args.size_mib * MiB))
            known_md5 = md5_file(source)  # as hsmfs's cache may know it from the writes
            target = Path(scratch, "target")
            runs: dict[str, list[float]] = {}

            def run(name: str, action: Callable[[], object]) -> None:
                runs.setdefault(name, []).append(timed(action))
                target.unlink(missing_ok=True)

            for _ in range(args.rounds):  # interleaved, so drifts hit all sides alike
                run("boto3 upload_file", lambda: client.upload_file(
                    str(source), BUCKET, "raw", Config=default_config))  # fmt: skip
                run("layer upload", lambda: store.upload("layer", source))
                run("layer upload, md5 known", lambda: store.upload(
                    "layer", source, md5=known_md5))  # fmt: skip
                run("boto3 download_file", lambda: client.download_file(
                    BUCKET, "raw", str(target), Config=default_config))  # fmt: skip
                run("boto3 download_file, same ranges", lambda: client.download_file(
                    BUCKET, "raw", str(target), Config=same_ranges))  # fmt: skip
                run("layer download", lambda: store.download("layer", target))
            assert (store.head("layer") or None) is not None
            ttfb_raw = [first_bytes_raw(client, "layer") for _ in range(3 * args.rounds)]
            ttfb_layer = [first_bytes_layer(store, "layer") for _ in range(3 * args.rounds)]
        store.close()
        client.close()
    finally:
        server.kill()
        server.wait()

    median = {name: statistics.median(times) for name, times in runs.items()}
    size = args.size_mib
    print(f"object: {size} MiB, {args.rounds} interleaved rounds, medians; endpoint: moto")
    for name, seconds in median.items():
        print(f"  {name:34s} {seconds:7.2f} s  {size / seconds:8.1f} MiB/s")
    ttfb_raw_ms = statistics.median(ttfb_raw) * 1000
    ttfb_layer_ms = statistics.median(ttfb_layer) * 1000
    print(f"  first {FIRST_BYTES // 1024} KiB: get_object {ttfb_raw_ms:.1f} ms, "
          f"open_range {ttfb_layer_ms:.1f} ms")  # fmt: skip

    def ratio(baseline: str, layer: str) -> float:
        return median[baseline] / median[layer]

    print(f"upload throughput   layer / boto3 upload_file:   "
          f"{ratio('boto3 upload_file', 'layer upload'):.2f}x "
          f"(md5 known: {ratio('boto3 upload_file', 'layer upload, md5 known'):.2f}x; "
          "goal >= 0.9x)")  # fmt: skip
    same = ratio("boto3 download_file, same ranges", "layer download")
    print(f"download throughput layer / boto3 download_file: "
          f"{ratio('boto3 download_file', 'layer download'):.2f}x "
          f"(vs same range size and threads: {same:.2f}x; goal >= 0.9x)")  # fmt: skip
    print(f"time to first byte  open_range / get_object:     "
          f"{ttfb_layer_ms / ttfb_raw_ms:.2f}x (goal <= 1.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
