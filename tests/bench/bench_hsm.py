"""hsmfs's HSM vs raw boto3 on the same moto S3 endpoint, measured side by side.

    python tests/bench/bench_hsm.py [--size-mib 256] [--rounds 5] [--ttfb-mib 16]

Prints, for one file of --size-mib MiB on a real hsmfs mount:
- migration throughput (archive of a dirty file: block CRCs, MD5, upload, HEAD check)
  against boto3 upload_file of the same bytes;
- staging throughput (a sequential read of the released file through the mount)
  against boto3 download_file;
- time to the first 4 KiB of a released file of --ttfb-mib MiB (open + read) against one
  raw get_object's time to the first 4 KiB of the same bytes. A smaller object here,
  because moto builds a whole response before its first byte: with 256 MiB both sides
  would mostly measure that.
Goals (issue 3): throughput >= 0.9x, time to first byte <= 1.5x. The baselines use
boto3's default TransferConfig; rounds are interleaved so that drift hits both sides.
The endpoint runs in its own process so that it shares no interpreter lock.
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

from tests.mounts import HsmMount  # noqa: E402

MiB = 1024 * 1024
BUCKET = "bench"
PREFIX = "hsm"
FIRST_BYTES = 4096
POLL = 0.002

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
        # moto spools objects to $TMPDIR: keep them in memory (less disk noise)
        env={**os.environ, "TMPDIR": "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def state(path: Path) -> str:
    return os.getxattr(path, "user.hsm.state").decode()


def wait_state(path: Path, wanted: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while state(path) != wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_hsm: {path} did not become {wanted} in {timeout:.0f} s")
        time.sleep(POLL)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def write_into_mount(source: Path, path: Path) -> None:
    """Write the file front to back, as FileCopy writes its tars (not timed)."""
    with open(source, "rb") as src, open(path, "wb") as dst:
        while chunk := src.read(8 * MiB):
            dst.write(chunk)


def migrate(path: Path) -> None:
    os.setxattr(path, "user.hsm.action", b"archive")
    wait_state(path, "archived")


def release(path: Path) -> None:
    """Release the file and forget the kernel's cached pages, so reads must stage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    os.setxattr(path, "user.hsm.action", b"release")
    assert state(path) == "released"


def read_through(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(MiB)
        while f.readinto(buf):
            pass


def first_bytes_mount(path: Path) -> float:
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    data = os.pread(fd, FIRST_BYTES, 0)
    elapsed = time.perf_counter() - started
    os.close(fd)
    assert len(data) == FIRST_BYTES
    return elapsed


def first_bytes_raw(client: object, key: str) -> float:
    started = time.perf_counter()
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"]  # type: ignore[attr-defined]
    body.read(FIRST_BYTES)
    elapsed = time.perf_counter() - started
    body.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttfb-mib", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    server, endpoint = start_endpoint()
    runs: dict[str, list[float]] = {}
    ttfb: dict[str, list[float]] = {"mount": [], "raw": []}
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        config = TransferConfig()
        with tempfile.TemporaryDirectory(prefix="bench-hsm-") as scratch:
            url = f"s3://{BUCKET}/{PREFIX}?endpoint={endpoint}&region=us-east-1&addressing=path"
            hsm = HsmMount(
                Path(scratch, "hsm"),
                config_text="[hsm]\nmigrate_after = 3600\nscan_interval = 0.2\n",
                extra_args=["--backend", url],
            )
            source = Path(scratch, "source")
            target = Path(scratch, "target")
            source.write_bytes(os.urandom(args.size_mib * MiB))
            hsm.start()
            try:
                path = hsm.mnt / "big.bin"
                write_into_mount(source, path)

                def run(name: str, action: Callable[[], object]) -> None:
                    runs.setdefault(name, []).append(timed(action))

                for round_number in range(args.rounds):  # interleaved
                    if round_number:
                        write_into_mount(source, path)  # a new data version, same bytes
                    run("hsmfs migration", lambda: migrate(path))
                    run("boto3 upload_file", lambda: client.upload_file(
                        str(source), BUCKET, "raw", Config=config))  # fmt: skip
                    release(path)
                    run("hsmfs staging read", lambda: read_through(path))
                    run("boto3 download_file", lambda: client.download_file(
                        BUCKET, "raw", str(target), Config=config))  # fmt: skip
                    target.unlink()
                small = hsm.mnt / "small.bin"
                small_data = os.urandom(args.ttfb_mib * MiB)
                small.write_bytes(small_data)
                client.put_object(Bucket=BUCKET, Key="raw-small", Body=small_data)
                migrate(small)
                for _ in range(3 * args.rounds):
                    release(small)
                    ttfb["mount"].append(first_bytes_mount(small))
                    ttfb["raw"].append(first_bytes_raw(client, "raw-small"))
                    wait_state(small, "archived")
                wait_state(path, "archived")
                if path.stat().st_size != source.stat().st_size:
                    raise SystemExit("bench_hsm: the file changed size; the numbers are void")
            finally:
                hsm.cleanup()
        client.close()
    finally:
        server.kill()
        server.wait()

    median = {name: statistics.median(times) for name, times in runs.items()}
    size = args.size_mib
    print(f"file: {size} MiB, {args.rounds} interleaved rounds, medians; endpoint: moto")
    for name, seconds in median.items():
        print(f"  {name:24s} {seconds:7.2f} s  {size / seconds:8.1f} MiB/s")
    mount_ms = statistics.median(ttfb["mount"]) * 1000
    raw_ms = statistics.median(ttfb["raw"]) * 1000
    print(f"  first {FIRST_BYTES // 1024} KiB of {args.ttfb_mib} MiB: released file "
          f"{mount_ms:.1f} ms, get_object {raw_ms:.1f} ms")  # fmt: skip
    migration = median["boto3 upload_file"] / median["hsmfs migration"]
    staging = median["boto3 download_file"] / median["hsmfs staging read"]
    print(f"migration throughput hsmfs / boto3 upload_file:   {migration:.2f}x (goal >= 0.9x)")
    print(f"staging throughput   hsmfs / boto3 download_file: {staging:.2f}x (goal >= 0.9x)")
    print(f"time to first byte   hsmfs / get_object:          {mount_ms / raw_ms:.2f}x "
          "(goal <= 1.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
