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
            ["storescu", "-xe", "--max-pdu", str(MAX_PDU), "-aet", "MODALITY", "-aec", aec,
             "127.0.0.1", str(port), *map(str, group)],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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


def ingest_storescp(work: Path, files: list[Path], parallel: int) -> float:
    out = work / f"storescp-{parallel}-{time.monotonic_ns()}"
    scp = StoreSCP(out, fork=parallel > 1)
    try:
        return storescu(scp.port, "STORESCP", files, parallel)
    finally:
        scp.stop()
        shutil.rmtree(out)


def ingest_archived(work: Path, files: list[Path], parallel: int, receive_only: bool) -> float:
    root = work / f"archive-{parallel}-{time.monotonic_ns()}"
    server, index = start_archive(root, receive_only=receive_only)
    try:
        return storescu(server.port, "ARCHIVED", files, parallel)
    finally:
        server.stop()
        index.close()
        shutil.rmtree(root)


def bench_ingest(work: Path, files: list[Path], rounds: int) -> tuple[float, float]:
    """Print ingest figures; return archived's MB/s over one association and storescp's
    seconds per instance."""
    total = sum(p.stat().st_size for p in files)
    print(f"C-STORE ingest: {len(files)} instances, {total / MB:.0f} MB, max PDU {MAX_PDU}")
    archive_mbps_1 = storescp_per_instance = 0.0
    for parallel in (1, 4):
        t_base = best_of(rounds, lambda p=parallel: ingest_storescp(work, files, p))
        t_arch = best_of(rounds, lambda p=parallel: ingest_archived(work, files, p, False))
        t_ceil = best_of(rounds, lambda p=parallel: ingest_archived(work, files, p, True))
        if parallel == 1:
            archive_mbps_1 = total / t_arch / MB
            storescp_per_instance = t_base / len(files)
        goal = "  (goal >= 0.5x)" if parallel == 1 else ""
        print(f"  {parallel} association(s): storescp {total / t_base / MB:7.1f} MB/s, "
              f"archived {total / t_arch / MB:7.1f} MB/s ({len(files) / t_arch:6.1f} inst/s)"
              f"  ratio {t_base / t_arch:.2f}x{goal}")
        print(f"     pynetdicom receiving only (handler keeps nothing): "
              f"{total / t_ceil / MB:7.1f} MB/s, ratio {t_base / t_ceil:.2f}x")
    return archive_mbps_1, storescp_per_instance


def start_archive(
    root: Path, dest_port: int | None = None, receive_only: bool = False
) -> tuple[ArchiveServer, Index]:
    (root / "online").mkdir(parents=True)
    index = Index(root / "index.sqlite")
    index.mirror_filesystems([FileSystemSpec("online-1", ONLINE_STORAGE, str(root / "online"))])
    remotes = [RemoteAE("MODALITY", "127.0.0.1", None)]
    if dest_port:
        remotes.append(RemoteAE("STORESCP", "127.0.0.1", dest_port))
    settings = DicomSettings(port=0, max_pdu=MAX_PDU, remote_aes=tuple(remotes))
    server = ArchiveServer(settings, index)
    if receive_only:  # pynetdicom's own cost: the store handler keeps nothing
        server.store.handle = lambda event: 0x0000  # type: ignore[method-assign]
    server.start()
    return server, index


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
        print(f"  reading the stored files: pydicom.dcmread {t_pydicom * 1000:6.1f} ms, "
              f"plain read {t_plain * 1000:6.1f} ms  ratio {t_pydicom / t_plain:.2f}x")
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


def fsync_cost(work: Path, storescp_per_instance: float) -> None:
    """What making one instance durable costs on this disk (fsync of a new 512 KiB file and
    of its directory, the write itself not counted), and the ratio to storescp that leaves
    at best: one association waits for each Success, so every instance costs at least
    what storescp spends on it plus these fsyncs."""
    directory = work / "fsync"
    directory.mkdir()
    synced = 0.0
    for n in range(50):
        with open(directory / f"f{n}", "wb") as f:
            f.write(b"\0" * 512 * 1024)
            f.flush()
            start = time.perf_counter()
            os.fsync(f.fileno())
        fd = os.open(directory, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        synced += time.perf_counter() - start
    per = synced / 50
    ceiling = storescp_per_instance / (storescp_per_instance + per)
    print(f"  this disk: fsync of a new 512 KiB file + its directory = {per * 1000:.2f} ms; "
          f"storescp spends {storescp_per_instance * 1000:.2f} ms per instance, so a receiver "
          f"that fsyncs before Success reaches at most {ceiling:.2f}x over one association")


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
                    for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate",
                                    "AccessionNumber", "NumberOfStudyRelatedInstances"):
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
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="best of N for ingest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dicom-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        files = ct_study(work / "study", args.instances, rows=512, columns=512)
        ingest_mbps, storescp_per_instance = bench_ingest(work, files, args.rounds)
        fsync_cost(work, storescp_per_instance)
        bench_move(work, files, ingest_mbps)
        bench_find(work, args.studies)


if __name__ == "__main__":
    main()
