"""Kernel caching: repeated reads come from the page cache, changes are never read stale.

The daemon counts the read requests it serves (``status`` on the control socket), so a
read the kernel answered from its page cache is one that leaves the counter alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hsmfs.control import request
from tests.mounts import HsmMount

SIZE = 4 * 1024 * 1024


def reads(hsm: HsmMount) -> tuple[int, int]:
    """(read requests, bytes read) the daemon has served since it started."""
    reply = next(request(str(hsm.state / "control.sock"), {"cmd": "status"}))
    return reply["fs"]["reads"], reply["fs"]["read_bytes"]


def cold_file(hsm: HsmMount, name: str, data: bytes) -> Path:
    """A file whose data is in no page cache of the mount (written, then remounted)."""
    (hsm.mnt / name).write_bytes(data)
    hsm.stop()
    hsm.start()
    return hsm.mnt / name


def test_second_read_is_served_from_the_page_cache(hsm: HsmMount) -> None:
    data = os.urandom(SIZE)
    path = cold_file(hsm, "f", data)
    before = reads(hsm)
    assert path.read_bytes() == data
    first = reads(hsm)
    assert first[0] > before[0] and first[1] - before[1] >= SIZE  # the daemon served it
    for _ in range(3):
        assert path.read_bytes() == data  # a new open each time: the cache is kept
    assert reads(hsm) == first


def test_page_cache_survives_a_stat_and_a_second_opener(hsm: HsmMount) -> None:
    data = os.urandom(SIZE)
    path = cold_file(hsm, "f", data)
    assert path.read_bytes() == data
    first = reads(hsm)
    os.stat(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 1000, SIZE - 1000) == data[-1000:]
        assert path.read_bytes() == data
    finally:
        os.close(fd)
    assert reads(hsm) == first


def test_write_through_the_mount_is_read_back(hsm: HsmMount) -> None:
    data = bytearray(os.urandom(SIZE))
    path = cold_file(hsm, "f", bytes(data))
    assert path.read_bytes() == data  # now cached
    with open(path, "r+b") as f:
        f.seek(1_000_000)
        f.write(b"NEW" * 1000)
    data[1_000_000:1_003_000] = b"NEW" * 1000
    assert path.read_bytes() == data
    # A writer in another process, through its own descriptor.
    subprocess.run(
        [sys.executable, "-c",
         "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); "
         "os.pwrite(fd, b'other process', 5); os.close(fd)", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    data[5:18] = b"other process"
    assert path.read_bytes() == data


def test_truncate_and_rewrite_is_never_read_stale(hsm: HsmMount) -> None:
    old = os.urandom(SIZE)
    path = cold_file(hsm, "f", old)
    assert path.read_bytes() == old
    new = os.urandom(SIZE)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, new[: SIZE // 2])
    finally:
        os.close(fd)
    assert path.read_bytes() == new[: SIZE // 2]
    os.truncate(path, SIZE)
    assert path.read_bytes() == new[: SIZE // 2] + b"\0" * (SIZE // 2)


def test_replaced_file_is_read_with_its_new_contents(hsm: HsmMount) -> None:
    path = cold_file(hsm, "f", b"old" * 1000)
    assert path.read_bytes() == b"old" * 1000
    (hsm.mnt / "tmp").write_bytes(b"new" * 1000)
    os.rename(hsm.mnt / "tmp", path)  # how editors and archivers replace files
    assert path.read_bytes() == b"new" * 1000
