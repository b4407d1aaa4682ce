"""Benchmark hsmfs.tarindex: indexing a 10,000-member tar, and lookups at 1k/10k/100k members.

Run: python tests/bench/bench_tarindex.py

Baselines, measured side by side in this run:
- indexing: "tarfile + md5" (tarfile.open, then extractfile and hashlib.md5 per member, the
  obvious way to do it) and "read + md5" (one sequential read and MD5 of the whole file,
  the I/O and hashing floor);
- header-only indexing (verify=False): "tarfile list" (tarfile.getmembers());
- lookups: the same operations on the 1,000-member index; a flat ratio means the cost
  does not grow with the member count. Random lookups in a large index also pay cache
  misses; the "hot lookup" column (one path repeated) shows the algorithmic cost alone.
"""

from __future__ import annotations

import hashlib
import io
import random
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hsmfs.tarindex import TarIndex, index_tar

INDEX_MEMBERS = 10_000
MEMBER_BYTES = 8 * 1024
LOOKUP_SIZES = (1_000, 10_000, 100_000)
LOOKUPS = 20_000
ROUNDS = 5


def race(actions: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """Best time of each action over `rounds` rounds, the actions interleaved in each round
    so that a noisy neighbour slows all of them alike."""
    best = dict.fromkeys(actions, float("inf"))
    for _ in range(rounds):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def member_names(count: int) -> list[str]:
    """Paths as FileCopy writes them: series directories of up to 300 instances."""
    return [f"{n // 300:08X}/{n:08X}" for n in range(count)]


def write_tar(path: Path, names: list[str], member_bytes: int) -> None:
    payload = random.Random(1).randbytes(member_bytes)
    sums = "".join(f"{hashlib.md5(payload).hexdigest()}  {name}\n" for name in names).encode()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("MD5SUM", sums), *((name, payload) for name in names)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def index_file(path: Path, verify: bool = True) -> TarIndex:
    with path.open("rb") as tar:
        return index_tar(tar, verify=verify)


def tarfile_and_md5(path: Path) -> None:
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            if info.isfile():
                hashlib.md5(tar.extractfile(info).read()).hexdigest()  # type: ignore[union-attr]


def read_and_md5(path: Path) -> None:
    md5 = hashlib.md5()
    with path.open("rb") as tar:
        while chunk := tar.read(1 << 20):
            md5.update(chunk)


def tarfile_list(path: Path) -> None:
    with tarfile.open(path) as tar:
        tar.getmembers()


def bench_indexing(workdir: Path) -> None:
    path = workdir / "index.tar"
    write_tar(path, member_names(INDEX_MEMBERS), MEMBER_BYTES)
    size_mb = path.stat().st_size / 1e6
    index = index_file(path)
    assert index.invalid is None and index.has_md5sum, index.invalid
    times = race(
        {
            "ours": lambda: index_file(path),
            "naive": lambda: tarfile_and_md5(path),
            "floor": lambda: read_and_md5(path),
            "headers": lambda: index_file(path, verify=False),
            "listing": lambda: tarfile_list(path),
        }
    )
    ours, headers = times["ours"], times["headers"]
    members = len(index)
    print(f"Indexing a {members}-member tar ({size_mb:.0f} MB, MD5SUM checked), best of {ROUNDS}:")
    print(f"  index_tar (verify)   {ours:7.3f} s  {members / ours:9,.0f} members/s")
    for label, key, ref in [
        ("tarfile + md5", "naive", ours),
        ("read + md5 (floor)", "floor", ours),
        ("index_tar (headers)", "headers", None),
        ("tarfile list", "listing", headers),
    ]:
        if ref is None:
            print(f"  {label:<20} {times[key]:7.3f} s  {members / times[key]:9,.0f} members/s")
        else:
            what = "index_tar" if ref is ours else "headers"
            print(f"  {label:<20} {times[key]:7.3f} s  ratio {what}/this = {ref / times[key]:.2f}")


def time_lookups(index: TarIndex, paths: list[str], dirs: list[str]) -> dict[str, float]:
    """Mean nanoseconds per call over the sample; "hot" repeats one path (cache-resident),
    so its ratio shows the algorithmic cost alone, without the memory hierarchy."""
    hot = [paths[0]] * len(paths)
    times = race(
        {
            "lookup": lambda: [index.lookup(p) for p in paths],
            "hot lookup": lambda: [index.lookup(p) for p in hot],
            "resolve": lambda: [index.resolve(p) for p in paths],
            "children": lambda: [index.children(d) for d in dirs],
        }
    )
    return {op: seconds / len(paths) * 1e9 for op, seconds in times.items()}


def bench_lookups(workdir: Path) -> None:
    rng = random.Random(2)
    results: dict[int, dict[str, float]] = {}
    for count in LOOKUP_SIZES:
        path = workdir / f"lookup-{count}.tar"
        names = member_names(count)
        write_tar(path, names, 0)
        index = index_file(path)
        assert index.invalid is None, index.invalid
        sample = [rng.choice(names) for _ in range(LOOKUPS)]
        dirs = [name.partition("/")[0] for name in sample]
        results[count] = time_lookups(index, sample, dirs)
        path.unlink()
    base = results[LOOKUP_SIZES[0]]
    print(f"Lookups ({LOOKUPS} random existing paths, ns per call; ratio against 1k members):")
    for count, times in results.items():
        cells = "  ".join(f"{op} {ns:6.0f} ns ({ns / base[op]:.2f}x)" for op, ns in times.items())
        print(f"  {count:>7,} members  {cells}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench_indexing(Path(tmp))
        bench_lookups(Path(tmp))


if __name__ == "__main__":
    main()
