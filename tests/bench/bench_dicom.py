"""archived's DICOM I/O against DCMTK on the same machine, measured side by side.

    python tests/bench/bench_dicom.py [--instances 300] [--studies 100000]

Prints:
  * C-STORE ingest: 300 CT instances of 512 KiB sent by storescu over one association
    (TCP_NODELAY, 128 KiB maximum PDU on both sides) to DCMTK storescp and to archived
    (MD5, fsync, indexing included): throughput ratio archived/storescp (goal >= 0.5x);
    the same with 4 parallel associations (storescp --fork as baseline).
  * C-MOVE of the same study from ONLINE to a DCMTK storescp: instances/s and MB/s,
    against the ingest figure; and what reading with pydicom costs against a plain read.
  * C-FIND at STUDY level over an index of 100,000 studies (rows inserted directly in
    SQLite, one patient each): queries/s for an exact PatientID and for a wildcard name
    (10 matches each), over one association (pynetdicom SCU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # noqa: E402

from archived.dicom import ArchiveServer, DicomSettings, RemoteAE  # noqa: E402
from archived.dicom.connection import CONNECTION_HANDLERS  # noqa: E402
from archived.index import ONLINE_STORAGE, FileSystemSpec, Index  # noqa: E402
from archived.storage import StagedFile, fsync_dir, java_string_hash  # noqa: E402
from tests.dicom.data import ct_study  # noqa: E402

MAX_PDU = 128 * 1024
MB = 1e6
ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def storescu(port: int, aec: str, files: list[Path], parallel: int) -> float:
    """Seconds for `parallel` storescu processes to send `files` (split evenly)."""
    groups = [files[i::parallel] for i in range(parallel)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "storescu",
                "-xe",
                "--max-pdu",
                str(MAX_PDU),
                "-aet",
                "MODALITY",
                "-aec",
                aec,
                "127.0.0.1",
                str(port),
                *map(str, group),
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for group in groups
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


class StoreSCP:
    def __init__(self, directory: Path, fork: bool = False, ae_title: str = "STORESCP") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        args = ["storescp", "--max-pdu", str(MAX_PDU), "-aet", ae_title, "-od", str(directory)]
        if fork:
            args.append("--fork")
        self.proc = subprocess.Popen(
            [*args, str(self.port)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_listening(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def best_of(rounds: int, run) -> float:
    return min(run() for _ in range(rounds))


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def ingest_storescp(work: Path, files: list[Path], parallel: int) -> float:
    out = work / f"storescp-{parallel}-{time.monotonic_ns()}"
    scp = StoreSCP(out, fork=parallel > 1)
    try:
        return storescu(scp.port, "STORESCP", files, parallel)
    finally:
        scp.stop()
        shutil.rmtree(out)


def ingest_archived(
    work: Path, files: list[Path], parallel: int, mode: str = "durable"
) -> tuple[float, dict]:
    """Seconds for storescu to send ``files`` to archived; mode 'durable' (default
    settings), 'early' (StoreEarlySuccess) or 'ceiling' (receive + fsync only)."""
    root = work / f"archive-{parallel}-{time.monotonic_ns()}"
    server, index = start_archive(root, mode=mode)
    try:
        elapsed = storescu(server.port, "ARCHIVED", files, parallel)
        return elapsed, server.statistics()
    finally:
        server.stop()
        index.close()
        shutil.rmtree(root)


class CeilingSink:
    """What any durable receiver must do: write the bytes once, fdatasync, link, fsync the
    directory. No MD5, no structure walk, no index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staged = StagedFile(root)

    def write(self, fragment: memoryview) -> None:
        self.staged.write(fragment)

    def finish(self) -> None:
        pass

    def discard(self) -> None:
        self.staged.close()


def ceiling_store(event) -> int:
    sink = event.assoc.dimse.take(event.request.MessageID)
    sink.staged.datasync()
    sink.staged.link(sink.root, java_string_hash(str(event.request.AffectedSOPInstanceUID)))
    fsync_dir(sink.root)
    sink.discard()
    return 0x0000


def bench_ingest(work: Path, label: str, files: list[Path], rounds: int, parallel_runs) -> dict:
    """Side by side, `rounds` times: storescp vs archived (and its variants)."""
    total = sum(p.stat().st_size for p in files)
    print(f"C-STORE ingest, {label}: {len(files)} instances, {total / MB:.0f} MB, "
          f"max PDU {MAX_PDU}")  # fmt: skip
    results: dict = {}
    for parallel, modes, goals in parallel_runs:
        ratios: dict[str, list[float]] = {m: [] for m in modes}
        rates: dict[str, list[float]] = {m: [] for m in ("storescp", *modes)}
        stats: dict[str, dict] = {}
        for _ in range(rounds):
            t_base = ingest_storescp(work, files, parallel)
            rates["storescp"].append(len(files) / t_base)
            for mode in modes:
                t, stats[mode] = ingest_archived(work, files, parallel, mode)
                ratios[mode].append(t_base / t)
                rates[mode].append(len(files) / t)
        base = "storescp --fork" if parallel > 1 else "storescp"
        print(f"  {parallel} association(s): {base} {span(rates['storescp'])} inst/s")
        for mode in modes:
            goal = goals.get(mode, "")
            print(f"    archived {mode:8s} {span(rates[mode]):>15s} inst/s  ratio "
                  f"{span(ratios[mode])}x{goal}")  # fmt: skip
        if "ceiling" in modes and "durable" in modes:
            share = [d / c for d, c in zip(ratios["durable"], ratios["ceiling"], strict=True)]
            print(f"    archived durable / ceiling (receive + fsync only): {span(share)}"
                  "  (goal >= 0.85)")  # fmt: skip
        if "durable" in stats:
            t = stats["durable"]["store_timings"]
            parts = {k: t[f"{k}_ms"] for k in ("network", "write", "fsync", "index")}
            whole = sum(parts.values()) or 1.0
            print(
                "    per instance (durable): "
                + ", ".join(f"{k} {v:.2f} ms ({100 * v / whole:.0f}%)" for k, v in parts.items())
            )
            g = stats["durable"]["group_commit"]
            print(f"    group commit: {g['groups']} groups, mean {g['mean_group']} "
                  f"instances, largest {g['largest_group']}")  # fmt: skip
        results[parallel] = (rates, ratios)
    return results


def start_archive(
    root: Path, dest_port: int | None = None, mode: str = "durable"
) -> tuple[ArchiveServer, Index]:
    (root / "online").mkdir(parents=True)
    index = Index(root / "index.sqlite")
    index.mirror_filesystems([FileSystemSpec("online-1", ONLINE_STORAGE, str(root / "online"))])
    remotes = [RemoteAE("MODALITY", "127.0.0.1", None)]
    if dest_port:
        remotes.append(RemoteAE("STORESCP", "127.0.0.1", dest_port))
    settings = DicomSettings(port=0, max_pdu=MAX_PDU, remote_aes=tuple(remotes),
                             early_success=mode == "early")  # fmt: skip
    server = ArchiveServer(settings, index)
    if mode == "ceiling":
        online = root / "online"
        server.store.open_incoming = lambda assoc, cx, cmd: CeilingSink(online)  # type: ignore[method-assign]
        server.store.handle = ceiling_store  # type: ignore[method-assign]
    server.start()
    return server, index


def rss_during_large_instance(work: Path, size: int) -> None:
    """Resident set of this process (archived runs in it) while storescu sends one
    multi-frame instance of ``size`` bytes of pixel data."""
    path = work / "large.dcm"
    frames = size // (512 * 512 * 2)
    ds = ct_study(work / "large-src", 1, rows=512, columns=512)[0]
    head = pydicom.dcmread(ds)
    head.NumberOfFrames = frames
    del head.PixelData
    head.save_as(path, enforce_file_format=True)
    with open(path, "ab") as out:  # Pixel Data (OW), written without holding it in memory
        length = frames * 512 * 512 * 2
        out.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        block = b"\x01\x00" * (1 << 19)
        for _ in range(length // len(block)):
            out.write(block)
        out.write(block[: length % len(block)])
    root = work / "archive-large"
    server, index = start_archive(root)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss())

    idle = rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        elapsed = storescu(server.port, "ARCHIVED", [path], 1)
    finally:
        stop.set()
        sampler.join()
        server.stop()
        index.close()
        shutil.rmtree(root)
        path.unlink()
    print(f"Memory: one {path.stat().st_size / 2**30 if path.exists() else size / 2**30:.1f} GiB "
          f"multi-frame instance received in {elapsed:.1f} s; resident set idle "
          f"{idle / 2**20:.0f} MiB, peak {peak[0] / 2**20:.0f} MiB, "
          f"+{(peak[0] - idle) / 2**20:.0f} MiB (goal <= 100 MiB)")  # fmt: skip


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def bench_move(work: Path, files: list[Path], ingest_mbps: float) -> None:
    total = sum(p.stat().st_size for p in files)
    out = work / "move-dest"
    scp = StoreSCP(out)
    server, index = start_archive(work / "move-archive", scp.port)
    try:
        storescu(server.port, "ARCHIVED", files, 1)
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        start = time.perf_counter()
        moved = subprocess.run(
            ["movescu", "-S", "--max-pdu", str(MAX_PDU), "-aet", "MODALITY", "-aem", "STORESCP",
             "-aec", "ARCHIVED", "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={study_uid}", "127.0.0.1", str(server.port)],
            env=ENV, capture_output=True, timeout=600, text=True, check=False,
        )  # fmt: skip
        if moved.returncode != 0:
            raise RuntimeError(f"movescu failed: {moved.stderr[-800:]}")
        elapsed = time.perf_counter() - start
        received = len(list(out.iterdir()))
        assert received == len(files), f"moved {received} of {len(files)}"
        mbps = total / elapsed / MB
        print(f"C-MOVE from ONLINE: {len(files) / elapsed:6.1f} inst/s, {mbps:7.1f} MB/s"
              f"  ratio to archived ingest {mbps / ingest_mbps:.2f}x")  # fmt: skip
        stored = [r.absolute_path for r in index.files_of_study(str(study_uid))]
        t_plain = best_of(3, lambda: _time(lambda: [p.read_bytes() for p in stored]))
        t_pydicom = best_of(3, lambda: _time(lambda: [pydicom.dcmread(p) for p in stored]))
        print(
            f"  reading the stored files: pydicom.dcmread {t_pydicom * 1000:6.1f} ms, "
            f"plain read {t_plain * 1000:6.1f} ms  ratio {t_pydicom / t_plain:.2f}x"
        )
    finally:
        server.stop()
        index.close()
        scp.stop()


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def populate(index_path: Path, studies: int) -> None:
    """Bulk rows: one patient, study, series and instance per study (no files needed)."""
    now = time.time()
    conn = sqlite3.connect(index_path)
    with conn:
        conn.executemany(
            "INSERT INTO patient (pk, pat_id, pat_name, pat_birthdate, pat_sex, created_time, "
            "updated_time) VALUES (?, ?, ?, '19700101', 'O', ?, ?)",
            ((n, f"PID{n:07d}", f"NAME{n:06d}^GIVEN", now, now) for n in range(1, studies + 1)),
        )
        conn.executemany(
            "INSERT INTO study (pk, patient_fk, study_iuid, study_date, study_time, accession_no,"
            " mods_in_study, num_series, num_instances, created_time, updated_time) "
            "VALUES (?, ?, ?, ?, '101500', ?, 'CT', 1, 1, ?, ?)",
            ((n, n, f"1.2.826.0.1.3680043.10.{n}", f"2024{1 + n % 12:02d}{1 + n % 28:02d}",
              f"ACC{n}", now, now) for n in range(1, studies + 1)),
        )  # fmt: skip
    conn.close()


def bench_find(work: Path, studies: int) -> None:
    root = work / "find"
    server, index = start_archive(root)
    try:
        start = time.perf_counter()
        populate(index.path, studies)
        print(f"C-FIND over {studies} studies (populated in {time.perf_counter() - start:.1f} s)")
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="ARCHIVED", max_pdu=MAX_PDU,
                             evt_handlers=CONNECTION_HANDLERS)  # fmt: skip
        try:
            for label, key, value, expected, count in (
                ("exact PatientID", "PatientID", "PID{n:07d}", 1, 300),
                ("wildcard PatientName", "PatientName", "NAME{n:05d}*", 10, 100),
            ):
                start = time.perf_counter()
                for q in range(count):
                    n = 1 + (q * 7919) % (studies // 10)
                    ds = Dataset()
                    ds.QueryRetrieveLevel = "STUDY"
                    setattr(ds, key, value.format(n=n))
                    for keyword in (
                        "StudyInstanceUID",
                        "PatientName",
                        "PatientID",
                        "StudyDate",
                        "AccessionNumber",
                        "NumberOfStudyRelatedInstances",
                    ):
                        if keyword != key:
                            setattr(ds, keyword, "")
                    matches = sum(
                        1 for status, _ in assoc.send_c_find(
                            ds, StudyRootQueryRetrieveInformationModelFind)
                        if status.Status in (0xFF00, 0xFF01)
                    )  # fmt: skip
                    assert matches == expected, f"{label} {value.format(n=n)}: {matches} matches"
                elapsed = time.perf_counter() - start
                print(f"  {label:22s} {count / elapsed:7.1f} queries/s ({expected} matches each)")
        finally:
            assoc.release()
    finally:
        server.stop()
        index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--small", type=int, default=3000, help="16 KiB instances")
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--large-gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="repeats of each ingest run")
    parser.add_argument(
        "--only",
        choices=("ingest", "small", "memory", "move", "find"),
        action="append",
        help="run only these parts (default: all)",
    )
    args = parser.parse_args()
    parts = set(args.only or ("ingest", "small", "memory", "move", "find"))
    with tempfile.TemporaryDirectory(prefix="bench-dicom-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        files = ct_study(work / "study", args.instances, rows=512, columns=512)
        ingest_mbps = 0.0
        if "ingest" in parts:
            results = bench_ingest(work, "512 KiB CT", files, args.rounds, [
                (1, ("durable", "ceiling", "early"),
                 {"durable": "  (goal >= 0.4x)", "early": "  (goal >= 0.7x)"}),
                (4, ("durable",), {"durable": "  (goal >= 0.5x vs storescp --fork)"}),
            ])  # fmt: skip
            total = sum(p.stat().st_size for p in files)
            ingest_mbps = max(results[1][0]["durable"]) * total / len(files) / MB
        if "small" in parts:
            small = ct_study(work / "small", args.small, rows=64, columns=128)
            bench_ingest(work, "16 KiB", small, args.rounds,
                         [(1, ("durable",), {"durable": "  (goal >= 0.3x)"})])  # fmt: skip
        if "memory" in parts:
            rss_during_large_instance(work, int(args.large_gib * 2**30))
        if "move" in parts:
            bench_move(work, files, ingest_mbps or 1.0)
        if "find" in parts:
            bench_find(work, args.studies)


if __name__ == "__main__":
    main()
