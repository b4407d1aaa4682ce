"""C-MOVE of a study whose only copy is a released tar in S3, against the same C-MOVE of an
equal study from ONLINE, measured side by side (goal: <= 1.5x).

    python tests/bench/bench_lifecycle.py [--instances 300] [--rows 512] [--rounds 2]
                                          [--member-prefetch whole|none]

Set-up (real parts): moto's S3 server on loopback in its own process (as S3 is: inside
this process it would compete with archived's threads for the GIL), an hsmfs mount on it,
archived's AE in this process, DCMTK storescp as the move destination, movescu as the requester. Two
generated CT studies of ``--instances`` 16-bit slices: study A stays ONLINE; study B is
copied into a tar by FileCopy, migrated by hsmfs, verified by SyncFileStatus, deleted
from ONLINE by the deleter. Before every round the tar is released from hsmfs's cache,
so the move of B reads every member from S3 through the mount.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402
from pydicom import dcmread  # noqa: E402

from archived.conf import ArchiveDeviceExtension  # noqa: E402
from archived.dicom import ArchiveServer, DicomSettings, RemoteAE  # noqa: E402
from archived.index import (  # noqa: E402
    NEARLINE_STORAGE,
    ONLINE_STORAGE,
    FileSystemSpec,
    Index,
    NewFile,
    attributes_of,
)
from archived.services.deleter import DeleterService  # noqa: E402
from archived.services.filecopy import FileCopyService  # noqa: E402
from archived.services.syncstatus import SyncFileStatusService  # noqa: E402
from archived.storage import instance_dir, write_instance  # noqa: E402
from tests.dicom.data import ct_study  # noqa: E402
from tests.dicom.peers import StoreSCP, dcmtk_env, free_port, wait_listening  # noqa: E402
from tests.mounts import HsmMount, wait_for  # noqa: E402

MAX_PDU = 128 * 1024
HSM_CONFIG = '[hsm]\nmigrate_after = 0\nscan_interval = 0.2\nmember_prefetch = "{}"\n'


def store(index: Index, online: Path, paths: list[Path]) -> str:
    """Index generated files on ONLINE as the C-STORE SCP would; return the Study UID."""
    fs = index.filesystem("online")
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        attrs = attributes_of(ds)
        stored = write_instance(
            online,
            instance_dir(attrs.study_iuid, attrs.series_iuid, 0.0),
            attrs.sop_iuid,
            [path.read_bytes()],
        )
        index.store_instance(
            attrs,
            NewFile(
                fs.pk, stored.filepath, str(ds.file_meta.TransferSyntaxUID), stored.md5, stored.size
            ),
        )
    return str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def settings(online: Path, mount: Path) -> ArchiveDeviceExtension:
    return ArchiveDeviceExtension.model_validate(
        {
            "FileSystemGroups": [
                {
                    "GroupID": ONLINE_STORAGE,
                    "FileSystems": [{"_.uuid": "online", "DirectoryPath": str(online)}],
                    "DeletionRules": {
                        "DeleteStudyIfNotAccessedFor": "1d",
                        "DeleteStudyOnlyIfCopyArchived": True,
                    },
                },
                {
                    "GroupID": NEARLINE_STORAGE,
                    "FileSystems": [{"_.uuid": "nearline", "DirectoryPath": f"tar:{mount}"}],
                },
            ],
            "FileCopy": {
                "Enabled": True,
                "DestinationFileSystem": "nearline",
                "DelayAfterSeriesStored": "0",
            },
            "SyncFileStatus": {
                "Enabled": True,
                "MonitoredFileSystem": "nearline",
                "MinimumFileAge": "0",
            },
        }
    )


def move(port: int, study: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [
            "movescu",
            "-S",
            "--max-pdu",
            str(MAX_PDU),
            "-aet",
            "MODALITY",
            "-aem",
            "DEST",
            "-aec",
            "ARCHIVED",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study}",
            "127.0.0.1",
            str(port),
        ],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"movescu failed: {result.stderr[-800:]}")
    return elapsed


def first_byte_ms(client: object, bucket: str, key: str) -> float:
    """Median time to the first byte of the object, over five ranged GETs."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].read()  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    return sorted(times)[2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--member-prefetch",
        choices=["whole", "none"],
        default="whole",
        help="hsmfs: stage the whole tar on the first member read, or not",
    )
    args = parser.parse_args()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(key, value)
    work = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    s3_port = free_port()
    s3 = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_listening(s3_port, s3)
    endpoint = f"http://127.0.0.1:{s3_port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    url = f"s3://bench/archive?endpoint={endpoint}&region=us-east-1&addressing=path"
    mount = HsmMount(
        work / "hsm",
        config_text=HSM_CONFIG.format(args.member_prefetch),
        extra_args=["--backend", url],
    )
    dest = StoreSCP(work / "dest", "DEST", free_port(), extra=("--max-pdu", str(MAX_PDU)))
    server = None
    index = Index(work / "index.sqlite")
    try:
        mount.start()
        online = work / "online"
        online.mkdir()
        index.mirror_filesystems(
            [
                FileSystemSpec("online", ONLINE_STORAGE, str(online)),
                FileSystemSpec("nearline", NEARLINE_STORAGE, f"tar:{mount.mnt}"),
            ]
        )
        ext = settings(online, mount.mnt)
        t0 = time.perf_counter()
        a = store(index, online, ct_study(work / "a", args.instances, args.rows, args.rows, seed=1))
        b_paths = ct_study(work / "b", args.instances, args.rows, args.rows, seed=2)
        size = sum(p.stat().st_size for p in b_paths)
        b = store(index, online, b_paths)
        print(
            f"two studies of {args.instances} instances ({size / 1e6:.0f} MB each) "
            f"generated and indexed in {time.perf_counter() - t0:.1f} s"
        )
        t0 = time.perf_counter()
        copied = FileCopyService(index, lambda: ext).run()
        assert not copied.errors, copied.errors
        tars = list(mount.mnt.rglob("*.tar"))
        wait_for(
            lambda: all(os.getxattr(t, "user.hsm.state") == b"archived" for t in tars),
            timeout=300,
            what="the tars migrated",
        )
        print(f"FileCopy + migration to S3: {time.perf_counter() - t0:.1f} s (both studies)")
        synced = SyncFileStatusService(index, lambda: ext).run()
        assert synced.counts["ARCHIVED"] == 2 * args.instances, synced.as_dict()
        b_tar = mount.mnt / index.files_of_study(b, NEARLINE_STORAGE)[0].filepath.partition("!")[0]
        index.touch_study(b, now=time.time() - 2 * 86400)
        deleted = DeleterService(index, lambda: ext).run()
        assert deleted.counts["studies"] == 1, deleted.as_dict()
        assert not index.files_of_study(b, ONLINE_STORAGE) and index.files_of_study(
            a, ONLINE_STORAGE
        )
        server = ArchiveServer(
            DicomSettings(
                port=0,
                max_pdu=MAX_PDU,
                remote_aes=(
                    RemoteAE("MODALITY", "127.0.0.1", None),
                    RemoteAE("DEST", "127.0.0.1", dest.port),
                ),
            ),
            index,
        )
        server.start()
        online_times, s3_times = [], []
        for _ in range(args.rounds):
            if os.getxattr(b_tar, "user.hsm.state") != b"released":
                os.setxattr(b_tar, "user.hsm.action", b"release")  # every member from S3
            assert os.getxattr(b_tar, "user.hsm.state") == b"released"
            online_times.append(move(server.port, a))
            s3_times.append(move(server.port, b))
        best_online, best_s3 = min(online_times), min(s3_times)
        print(
            f"C-MOVE from ONLINE:            best {best_online:6.2f} s "
            f"({args.instances / best_online:6.1f} inst/s, {size / best_online / 1e6:6.1f} MB/s)"
        )
        print(
            f"C-MOVE from a released S3 tar: best {best_s3:6.2f} s "
            f"({args.instances / best_s3:6.1f} inst/s, {size / best_s3 / 1e6:6.1f} MB/s)"
        )
        print(f"ratio S3/ONLINE: {best_s3 / best_online:.2f}x  (goal <= 1.5x)")
        tar_key = "archive/" + os.getxattr(b_tar, "user.hsm.key").decode()
        print(
            f"  the S3 endpoint answers a 1-byte ranged GET of the tar's object in "
            f"{first_byte_ms(client, 'bench', tar_key):.0f} ms "
            "(moto reads the whole object for every request: the first member's fetch and "
            "each range of the stage cost that)"
        )
    finally:
        if server is not None:
            server.stop()
        index.close()
        dest.stop()
        mount.cleanup()
        s3.terminate()
        s3.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
