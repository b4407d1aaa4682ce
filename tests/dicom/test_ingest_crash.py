"""kill -9 of the archive while instances arrive: every Success is stored and indexed.

The archive runs in a child process; a pynetdicom peer sends instances one by one and
notes each Success; the child is killed with SIGKILL after a random delay (seeded, so a
failure can be replayed). After the kill: every instance answered with Success has its
index row and a complete file with the indexed MD5, and no file in storage is partial.
Slow-ish (about 5 s each): three kills at different points.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from archived.index import Index
from tests.dicom.data import ct_study, sop_instance_uid

CHILD = """
import sys, time
from pathlib import Path
from archived.dicom import ArchiveServer, DicomSettings, RemoteAE
from archived.index import ONLINE_STORAGE, FileSystemSpec, Index
root = Path(sys.argv[1])
index = Index(root / "index.sqlite")
index.mirror_filesystems([FileSystemSpec("fs-online-1", ONLINE_STORAGE, str(root / "online"))])
server = ArchiveServer(DicomSettings(port=0, remote_aes=(RemoteAE("MODALITY", "127.0.0.1"),)),
                       index)
server.start()
print(server.port, flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_point_loses_no_acknowledged_instance(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    (tmp_path / "online").mkdir()
    files = ct_study(tmp_path / "in", 60, rows=256, columns=256, seed=seed)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        acknowledged: list[str] = []
        ae = AE(ae_title="MODALITY")
        ae.dimse_timeout = ae.network_timeout = 5  # the peer notices the dead archive soon
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVED")
        assert assoc.is_established
        delay = rng.uniform(0.05, 0.6)
        killer = threading.Timer(delay, os.kill, (child.pid, signal.SIGKILL))
        killer.start()
        for path in files:
            if not assoc.is_established:
                break
            try:
                status = assoc.send_c_store(pydicom.dcmread(path))
            except RuntimeError:  # the association ended under the send: the kill
                break
            if getattr(status, "Status", None) == 0x0000:
                acknowledged.append(sop_instance_uid(path))
        killer.join()
        assoc.abort()
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    with Index(tmp_path / "index.sqlite") as index:
        for uid in acknowledged:
            (record,) = index.files_of_instance(uid)
            data = (tmp_path / "online" / record.filepath).read_bytes()
            assert hashlib.md5(data).hexdigest() == record.md5, f"{uid}: stored file differs"
        indexed = {r[0] for r in index.read().execute("SELECT sop_iuid FROM instance")}
    assert set(acknowledged) <= indexed
    for path in (tmp_path / "online").rglob("*"):
        if path.is_file():  # complete: it parses to its pixel data's end
            ds = pydicom.dcmread(path)
            assert len(ds.PixelData) == 256 * 256 * 2, f"{path} is partial"
