"""Benchmarks of the hsmfs file system core (issue 2), each against its baseline in one run.

    python tests/bench/bench_fs.py [--size-mib 1024] [--files 100000] [--big 1000000]

- sequential write through the mount vs writing into the cache directory directly
- sequential read through the mount vs the cache file: cold (caches dropped), right after
  the write (the first re-read users meet) and warm (best of three)
- stat of every file of a 100,000-file tree (cold dentry cache) vs the same walk on the
  cache directory's file system
- mount time with 10k and 1M inodes in the catalog (it must not grow with the catalog)

Needs root (it drops the kernel's caches) and FUSE.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hsmfs.catalog import ROOT_INO, Catalog
from tests.mounts import HsmMount

MiB = 1 << 20


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


def write_file(path: Path, size_mib: int) -> float:
    block = os.urandom(MiB)
    os.sync()
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(size_mib):
        os.write(fd, block)
    os.close(fd)
    return size_mib / (time.perf_counter() - start)


def read_file(path: Path) -> float:
    buf = bytearray(MiB)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    total = 0
    start = time.perf_counter()
    while n := os.readv(fd, [view]):
        total += n
    elapsed = time.perf_counter() - start
    os.close(fd)
    return total / MiB / elapsed


def walk_stat(root: Path) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            os.lstat(os.path.join(dirpath, name))
            count += 1
    return count, count / (time.perf_counter() - start)


def build_catalog_tree(state: Path, files: int, per_dir: int = 1000) -> None:
    """Fill a catalog with `files` empty files in directories of `per_dir` (bulk, offline)."""
    catalog = Catalog(state / "catalog")
    uid, gid = os.getuid(), os.getgid()
    made = 0
    while made < files:
        with catalog.write() as txn:
            root = txn.get_inode(ROOT_INO)
            assert root is not None
            d = txn.new_inode(stat.S_IFDIR | 0o755, uid, gid, parent=ROOT_INO)
            txn.add_entry(ROOT_INO, f"d{d.ino}".encode(), d.ino)
            root.nlink += 1
            txn.put_inode(root)
            for i in range(min(per_dir, files - made)):
                f = txn.new_inode(stat.S_IFREG | 0o644, uid, gid)
                txn.add_entry(d.ino, f"f{i}".encode(), f.ino)
            made += per_dir
    catalog.sync()
    catalog.close()


def build_plain_tree(root: Path, files: int, per_dir: int = 1000) -> None:
    for d in range((files + per_dir - 1) // per_dir):
        sub = root / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(min(per_dir, files - d * per_dir)):
            (sub / f"f{i}").touch()


def ratio_line(name: str, ours: float, base: float, unit: str, goal: str) -> None:
    print(f"{name:<44} hsmfs {ours:10.1f} {unit:<8} baseline {base:10.1f} {unit:<8} "
          f"ratio {ours / base:5.2f}  (goal {goal})")  # fmt: skip


def bench_throughput(work: Path, size_mib: int) -> None:
    mount = HsmMount(work / "io").start()
    try:
        direct = mount.cache / "direct-baseline"
        # Each file is re-read right after it is written (a fill): what users meet first.
        w_mount = write_file(mount.mnt / "big", size_mib)
        first_mount = read_file(mount.mnt / "big")
        w_direct = write_file(direct, size_mib)
        first_direct = read_file(direct)
        ratio_line(f"sequential write {size_mib} MiB", w_mount, w_direct, "MiB/s", ">= 0.4")
        cold = []
        for path in (mount.mnt / "big", direct):
            drop_caches()
            cold.append(read_file(path))
        ratio_line(
            f"sequential read {size_mib} MiB, cold cache", cold[0], cold[1], "MiB/s", ">= 0.5"
        )
        ratio_line(
            f"sequential read {size_mib} MiB, first re-read",
            first_mount,
            first_direct,
            "MiB/s",
            ">= 0.9",
        )
        # The best of three shows the kernel's FUSE page-cache ceiling (4 KiB folios; no
        # passthrough on this libfuse).
        warm_mount = max(read_file(mount.mnt / "big") for _ in range(3))
        warm_direct = max(read_file(direct) for _ in range(3))
        ratio_line(
            f"sequential read {size_mib} MiB, warm, best of 3",
            warm_mount,
            warm_direct,
            "MiB/s",
            ">= 0.9; ceiling ~0.65",
        )
    finally:
        mount.cleanup()


def bench_stat(work: Path, files: int) -> None:
    mount = HsmMount(work / "stat")
    build_catalog_tree(mount.state, files)
    plain = mount.root / "plain"
    build_plain_tree(plain, files)
    mount.start()
    try:
        drop_caches()
        n_mount, rate_mount = walk_stat(mount.mnt)
        drop_caches()
        n_plain, rate_plain = walk_stat(plain)
        assert n_mount == n_plain == files, (n_mount, n_plain)
        ratio_line(
            f"stat of {files} files, cold dentry cache", rate_mount, rate_plain, "files/s", "report"
        )
    finally:
        mount.cleanup()


def bench_mount_time(work: Path, sizes: list[int]) -> None:
    times = {}
    for files in sizes:
        mount = HsmMount(work / f"mount{files}")
        build_catalog_tree(mount.state, files)
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            mount.start()
            samples.append(time.perf_counter() - start)
            mount.stop()
        times[files] = min(samples)
        print(f"mount time with {files:>9} inodes in the catalog: {times[files] * 1000:7.1f} ms")
    small, large = sizes[0], sizes[-1]
    print(f"mount time ratio {large} / {small} inodes: {times[large] / times[small]:.2f} "
          "(goal: flat, ~1.0)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["io", "stat", "mount"], help="run one part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hsmfs-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        if args.only in (None, "io"):
            bench_throughput(work, args.size_mib)
        if args.only in (None, "stat"):
            bench_stat(work, args.files)
        if args.only in (None, "mount"):
            bench_mount_time(work, [10_000, args.big])


if __name__ == "__main__":
    main()
