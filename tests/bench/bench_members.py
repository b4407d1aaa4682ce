"""Tar members through hsmfs vs what a client would do without it, on one moto S3 endpoint.

    python tests/bench/bench_members.py [--members 300] [--member-kib 512] [--rounds 9]

Measured side by side in one run (issue 4 goals in brackets):
- time to first byte of one member of a released tar: open + first read through the mount
  vs one raw ranged GET of that member (get_object with Range) [<= 1.5x]
- one 512 KiB member of a released ~150 MB tar: read through the mount vs downloading the
  whole tar (boto3 download_file) and extracting the member, as dcm4chee 2.x's
  TarRetriever does [>= 10x faster]
- every member of a released 300-member tar, in order, with member_prefetch = "whole":
  throughput vs boto3 download_file of the whole tar [>= 0.8x]
- indexing a 10,000-member tar written into the mount: seconds from close to
  user.hsm.tar, next to hsmfs.tarindex alone on the same file [report]

The endpoint runs in its own process (objects in memory) so that it does not share the
client's interpreter lock. Needs root (it drops the kernel's page cache) and FUSE.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hsmfs.backends import open_backend  # noqa: E402
from hsmfs.tarindex import TarMember, index_tar  # noqa: E402
from tests.mounts import HsmMount, wait_for  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
BUCKET = "bench-members"
PREFIX = "archive"
FIRST_BYTES = 64 * KiB
TAR_PATH = "2011/8/3/16/745ABFED/CF024730-323397.tar"

SERVER = """
import sys
from tests.s3server import S3Server
server = S3Server()
server.start()
print(server.endpoint, flush=True)
sys.stdin.read()  # until the benchmark exits
"""

CONFIG = """[hsm]
migrate_after = 0
scan_interval = 0.2
member_prefetch = "{prefetch}"
"""


def start_endpoint() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=REPO,
        env={**os.environ, "TMPDIR": "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


def build_tar(path: Path, count: int, size: int, series: str = "CF024730") -> None:
    """A tar as FileCopy writes it: MD5SUM first, then <series8>/<file pk as 8 hex>."""
    import hashlib

    files = {f"{series}/{n:08X}": os.urandom(size) for n in range(1, count + 1)}
    md5sum = "".join(f"{hashlib.md5(d).hexdigest()}  {n}\n" for n, d in files.items()).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in {"MD5SUM": md5sum, **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_300_000_000
            tar.addfile(info, io.BytesIO(data))


def xattr(path: Path, name: str) -> str | None:
    try:
        return os.getxattr(path, f"user.hsm.{name}").decode()
    except OSError:
        return None


def hsmctl(*args: str | Path) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "hsmfs.ctl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return result.returncode == 0


def release(path: Path) -> None:
    wait_for(lambda: xattr(path, "state") == "archived", 300, 0.05, f"{path} archived")
    # Refused while the kernel has not yet released the handle of the last member read.
    wait_for(lambda: hsmctl("release", path), 60, 0.1, f"release of {path}")
    wait_for(lambda: xattr(path, "state") == "released", 60, 0.05, f"{path} released")


def set_prefetch(mount: HsmMount, prefetch: str) -> None:
    """Rewrite the configuration and reload it (SIGHUP); wait for the daemon to say so."""
    assert mount.proc is not None
    mount.config.write_text(CONFIG.format(prefetch=prefetch))
    done = mount.log.read_text().count("configuration reloaded")
    mount.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: mount.log.read_text().count("configuration reloaded") > done,
        what="configuration reload",
    )


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def member_path(tar: Path, name: str) -> str:
    return f"{tar}!{name}"


def ttfb_mount(tar: Path, member: TarMember) -> float:
    started = time.perf_counter()
    fd = os.open(member_path(tar, member.path), os.O_RDONLY)
    try:
        assert len(os.read(fd, FIRST_BYTES)) == min(FIRST_BYTES, member.size)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def ttfb_raw(client: object, key: str, member: TarMember) -> float:
    started = time.perf_counter()
    response = client.get_object(  # type: ignore[attr-defined]
        Bucket=BUCKET,
        Key=key,
        Range=f"bytes={member.data_offset}-{member.data_offset + member.size - 1}",
    )
    first = response["Body"].read(FIRST_BYTES)
    elapsed = time.perf_counter() - started
    response["Body"].read()
    assert len(first) == min(FIRST_BYTES, member.size)
    return elapsed


def read_member(tar: Path, member: TarMember) -> bytes:
    with open(member_path(tar, member.path), "rb", buffering=0) as f:
        data = f.read()
    assert len(data) == member.size
    return data


def download_and_extract(client: object, key: str, member: TarMember, scratch: Path) -> bytes:
    """dcm4chee 2.x's TarRetriever: fetch the whole tar, then extract the one member."""
    local = scratch / "retrieved.tar"
    client.download_file(BUCKET, key, str(local))  # type: ignore[attr-defined]
    with tarfile.open(local) as tar:
        extracted = tar.extractfile(member.path)
        assert extracted is not None
        data = extracted.read()
    local.unlink()
    return data


def read_all_members(tar: Path, members: list[TarMember]) -> None:
    buf = bytearray(1 * MiB)
    for member in members:
        fd = os.open(member_path(tar, member.path), os.O_RDONLY)
        try:
            while os.readv(fd, [buf]):
                pass
        finally:
            os.close(fd)


def line(name: str, ours: str, base: str, ratio: float, goal: str) -> None:
    print(f"{name:<46} hsmfs {ours:>14}  baseline {base:>14}  ratio {ratio:6.2f}x  (goal {goal})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=300)
    parser.add_argument("--member-kib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--index-members", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    server, endpoint = start_endpoint()
    work = Path(tempfile.mkdtemp(prefix="bench-members-"))
    url = f"s3://{BUCKET}/{PREFIX}?endpoint={endpoint}&region=us-east-1&addressing=path"
    mount = HsmMount(work, CONFIG.format(prefetch="none"), ["--backend", url])
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        mount.start()
        scratch = work / "scratch"
        scratch.mkdir()
        local = scratch / "series.tar"
        build_tar(local, args.members, args.member_kib * KiB)
        with open(local, "rb") as f:
            members = sorted(
                (m for m in index_tar(f) if m.path != "MD5SUM" and m.size), key=lambda m: m.path
            )
        tar = mount.mnt / TAR_PATH
        tar.parent.mkdir(parents=True)
        shutil.copyfile(local, tar)
        wait_for(lambda: xattr(tar, "tar"), 120, 0.05, "the tar's index")
        release(tar)
        key = f"{PREFIX}/{TAR_PATH}"
        size = local.stat().st_size
        client.head_object(Bucket=BUCKET, Key=key)  # a warm connection, as hsmfs has one
        print(f"tar: {len(members)} members of {args.member_kib} KiB, {size / MiB:.0f} MiB, "
              f"released; endpoint: moto in its own process; {args.rounds} rounds, "
              "interleaved, medians")  # fmt: skip

        # 1. Time to first byte: every round reads a member not read before (no page cache).
        mount_ttfb, raw_ttfb = [], []
        picks = members[:: max(1, len(members) // (2 * args.rounds))]
        for round_members in zip(picks[0::2], picks[1::2], strict=False):
            raw_ttfb.append(ttfb_raw(client, key, round_members[0]))
            mount_ttfb.append(ttfb_mount(tar, round_members[1]))
        ours, base = statistics.median(mount_ttfb), statistics.median(raw_ttfb)
        line(f"time to first {FIRST_BYTES // KiB} KiB of one member", f"{ours * 1e3:.1f} ms",
             f"{base * 1e3:.1f} ms", ours / base, "<= 1.5x")  # fmt: skip

        # 2. One member of the released tar vs download-and-extract (TarRetriever).
        unread = [m for m in members if m not in picks]
        mount_one, retriever = [], []
        for n in range(max(3, args.rounds // 3)):
            target = unread[n * 7 % len(unread)]
            retriever.append(timed(lambda t=target: download_and_extract(client, key, t, scratch)))
            mount_one.append(timed(lambda t=target: read_member(tar, t)))
        ours, base = statistics.median(mount_one), statistics.median(retriever)
        line(f"one {args.member_kib} KiB member of a {size / MiB:.0f} MiB tar",
             f"{ours * 1e3:.1f} ms", f"{base * 1e3:.1f} ms", base / ours,
             ">= 10x faster")  # fmt: skip
        assert xattr(tar, "state") == "released"

        # 3. Every member in order, with the whole-tar prefetch, vs download_file.
        set_prefetch(mount, "whole")
        with open_backend(url) as store:  # a second baseline: hsmfs's range size and threads
            same_ranges = TransferConfig(
                multipart_threshold=store.options.multipart_threshold,
                multipart_chunksize=store.options.download_chunksize,
                max_concurrency=store.options.transfer_concurrency,
            )
        mount_all, download, download_same = [], [], []
        for _ in range(2):
            for config, times in ((TransferConfig(), download), (same_ranges, download_same)):
                drop_caches()
                times.append(timed(lambda c=config: client.download_file(
                    BUCKET, key, str(scratch / "whole.tar"), Config=c)))  # fmt: skip
                (scratch / "whole.tar").unlink()
            drop_caches()
            mount_all.append(timed(lambda: read_all_members(tar, members)))
            release(tar)  # the prefetch made it resident: release it for the next round
        ours, base = min(mount_all), min(download)
        line(f"all {len(members)} members in order (best of 2)",
             f"{size / MiB / ours:.1f} MiB/s", f"{size / MiB / base:.1f} MiB/s", base / ours,
             ">= 0.8x")  # fmt: skip
        same = min(download_same)
        label = "  (vs download_file, hsmfs's ranges and threads)"
        print(f"{label:<66}baseline {size / MiB / same:9.1f} MiB/s  ratio {same / ours:6.2f}x")

        # 4. Indexing a 10,000-member tar written into the mount.
        many = scratch / "many.tar"
        build_tar(many, args.index_members, 1 * KiB, series="INDEXED0")
        with open(many, "rb") as f:
            parse = timed(lambda: index_tar(f))
        target = mount.mnt / "2011/8/3/16/745ABFED/INDEXED0-1.tar"
        shutil.copyfile(many, target)  # closed here: the daemon starts indexing
        closed = time.perf_counter()
        status = wait_for(lambda: xattr(target, "tar"), 300, 0.005, "the 10,000-member index")
        seconds = time.perf_counter() - closed
        assert status.startswith("valid: "), status
        print(f"{'indexing ' + str(args.index_members) + '-member tar after close':<46} "
              f"hsmfs {seconds:11.2f} s  tarindex alone {parse:6.2f} s  ({status})")  # fmt: skip
        client.close()
    finally:
        mount.cleanup()
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
