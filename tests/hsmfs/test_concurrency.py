"""Parallel readers and writers on a real mount, and one stuck request among many.

The stuck request is made deterministic with a stacked mount: the cache directory of the
mount under test lives on a second hsmfs mount, whose daemon the test stops (SIGSTOP).
Every cache access of the first daemon then hangs until the test lets the second go on.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hsmfs.cache import CacheDir
from hsmfs.control import request
from tests.mounts import HsmMount, wait_for

pytestmark = pytest.mark.fuse  # it starts mounts of its own

CHUNK = 64 * 1024


def pattern(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_threads_write_and_read_different_files(mnt: Path) -> None:
    size = 2 * 1024 * 1024

    def writer(i: int) -> None:
        data = pattern(i, size)
        offsets = list(range(0, size, CHUNK))
        random.Random(i).shuffle(offsets)  # random order, so the file is sparse for a while
        fd = os.open(mnt / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for off in offsets:
                assert os.pwrite(fd, data[off : off + CHUNK], off) == CHUNK
        finally:
            os.close(fd)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(12)))

    def check(i: int) -> bool:
        return (mnt / f"f{i}").read_bytes() == pattern(i, size)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, range(12)))


_REGION_WRITER = textwrap.dedent(
    """
    import os, random, sys
    path, index, region = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = random.Random(index).randbytes(region)
    fd = os.open(path, os.O_WRONLY)
    for off in range(0, region, 4096 * 3):
        os.pwrite(fd, data[off : off + 4096 * 3], index * region + off)
    os.close(fd)
    """
)


def test_threads_and_processes_write_one_file_at_disjoint_offsets(mnt: Path) -> None:
    region = 1024 * 1024 + 100  # not page aligned: neighbours share pages
    threads, processes = 6, 4
    path = mnt / "shared"
    path.write_bytes(b"")
    procs = []
    for p in range(processes):
        cmd = [sys.executable, "-c", _REGION_WRITER, str(path), str(threads + p), str(region)]
        procs.append(subprocess.Popen(cmd))

    def writer(index: int) -> None:
        data = pattern(index, region)
        fd = os.open(path, os.O_WRONLY)
        try:
            for off in range(0, region, 5000):
                os.pwrite(fd, data[off : off + 5000], index * region + off)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(writer, range(threads)))
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    expected = b"".join(pattern(i, region) for i in range(threads + processes))
    assert os.stat(path).st_size == len(expected)
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(expected).digest()


def test_many_readers_of_one_file(hsm: HsmMount) -> None:
    size = 8 * 1024 * 1024
    data = pattern(7, size)
    (hsm.mnt / "f").write_bytes(data)
    hsm.stop()
    hsm.start()  # a cold kernel page cache: the readers really meet in the daemon

    def reader(seed: int) -> int:
        rng = random.Random(seed)
        fd = os.open(hsm.mnt / "f", os.O_RDONLY)
        try:
            for _ in range(40):
                off = rng.randrange(size)
                n = rng.randrange(1, 300_000)
                assert os.pread(fd, n, off) == data[off : off + n]
        finally:
            os.close(fd)
        return seed

    with ThreadPoolExecutor(12) as pool:
        assert sorted(pool.map(reader, range(24))) == list(range(24))


def test_readers_follow_a_writer_of_the_same_file(mnt: Path) -> None:
    size = 4 * 1024 * 1024
    data = pattern(3, size)
    written = [0]  # bytes the writer has completed; readers read only below it
    done = threading.Event()
    fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o644)

    def writer() -> None:
        try:
            for off in range(0, size, CHUNK):
                os.pwrite(fd, data[off : off + CHUNK], off)
                written[0] = off + CHUNK
        finally:
            done.set()

    def reader(seed: int) -> int:
        rng = random.Random(seed)
        rfd = os.open(mnt / "f", os.O_RDONLY)
        checks = 0
        try:
            while not done.is_set() or checks < 20:
                limit = written[0]
                if limit == 0:
                    continue
                off = rng.randrange(limit)
                n = min(rng.randrange(1, 200_000), limit - off)
                assert os.pread(rfd, n, off) == data[off : off + n]
                checks += 1
        finally:
            os.close(rfd)
        return checks

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(reader, s) for s in range(4)]
        pool.submit(writer).result()
        assert all(f.result() >= 20 for f in futures)
    os.close(fd)
    assert (mnt / "f").read_bytes() == data


# -- one stuck request ------------------------------------------------------------------
def threads_waiting_for_fuse(pid: int) -> int:
    """How many threads of process pid wait for the answer of a FUSE daemon right now."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                wchan = f.read()
        except OSError:
            continue
        count += wchan == "request_wait_answer"
    return count


def open_files(hsm: HsmMount) -> int:
    reply = next(request(str(hsm.state / "control.sock"), {"cmd": "status"}))
    return int(reply["fs"]["open_files"])


@pytest.fixture
def stacked(tmp_path: Path) -> Iterator[tuple[HsmMount, HsmMount]]:
    """(upper, lower): the upper mount keeps its cache directory on the lower mount."""
    lower = HsmMount(tmp_path / "lower")
    upper = HsmMount(tmp_path / "upper")
    try:
        lower.start()
        (lower.mnt / "cache").mkdir()
        upper.root.mkdir()
        upper.cache.symlink_to(lower.mnt / "cache")
        upper.start()
        yield upper, lower
    finally:
        if lower.proc is not None and lower.proc.poll() is None:
            lower.proc.send_signal(signal.SIGCONT)
        upper.cleanup()
        lower.cleanup()


def run_bounded(func: Callable[[], object], seconds: float, what: str) -> None:
    """Run func in a thread; fail (without hanging the test) if it takes longer."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            func()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{what} did not finish within {seconds:.0f} s"
    if errors:
        raise errors[0]


def make_dirs(mnt: Path) -> None:
    """Requests that need no cache file: ten mkdirs in d/ and its listing."""
    for i in range(10):
        os.mkdir(mnt / "d" / f"sub{i}")
    assert len(os.listdir(mnt / "d")) == 10


def test_a_request_stuck_on_the_cache_does_not_stall_the_others(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    upper, lower = stacked
    mnt = upper.mnt
    data = pattern(5, 300_000)
    (mnt / "slow").write_bytes(data)
    (mnt / "d").mkdir()
    (mnt / "tagged").write_bytes(b"")
    os.setxattr(mnt / "tagged", "user.k", b"v")
    assert upper.proc is not None and lower.proc is not None
    baseline = threads_waiting_for_fuse(upper.proc.pid)

    lower.proc.send_signal(signal.SIGSTOP)
    result: list[bytes] = []
    stuck = threading.Thread(target=lambda: result.append((mnt / "slow").read_bytes()))
    stuck.start()
    try:
        # The open of "slow" is now inside the upper daemon, waiting for the cache.
        wait_for(lambda: threads_waiting_for_fuse(upper.proc.pid) > baseline,
                 what="the upper daemon to wait for its cache")  # fmt: skip

        def other_requests() -> None:
            for i in range(30):
                os.mkdir(mnt / "d" / f"sub{i}")
                assert os.stat(mnt / "d" / f"sub{i}").st_nlink == 2
                os.symlink("slow", mnt / "d" / f"link{i}")
                os.rename(mnt / "d" / f"link{i}", mnt / "d" / f"moved{i}")
                assert os.getxattr(mnt / "tagged", "user.k") == b"v"
                os.setxattr(mnt / "tagged", "user.n", b"%d" % i)
                assert len(os.listdir(mnt / "d")) == 2 * (i + 1)
            assert os.getxattr(mnt / "slow", "user.hsm.state") == b"dirty"

        run_bounded(other_requests, 60, "requests next to the stuck one")
        # The stuck request really was stuck the whole time.
        assert stuck.is_alive()
        assert threads_waiting_for_fuse(upper.proc.pid) > baseline
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive()
    assert result == [data]


def test_a_create_stuck_on_the_cache_does_not_stall_the_others(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    upper, lower = stacked
    mnt = upper.mnt
    (mnt / "d").mkdir()
    assert upper.proc is not None and lower.proc is not None
    baseline = threads_waiting_for_fuse(upper.proc.pid)
    lower.proc.send_signal(signal.SIGSTOP)
    stuck = threading.Thread(target=(mnt / "new").write_bytes, args=(b"created",))
    stuck.start()
    try:
        wait_for(lambda: threads_waiting_for_fuse(upper.proc.pid) > baseline,
                 what="the upper daemon to wait for its cache")  # fmt: skip

        run_bounded(lambda: make_dirs(mnt), 60, "requests next to the stuck create")
        assert stuck.is_alive()
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive()
    assert (mnt / "new").read_bytes() == b"created"


def test_an_unlink_stuck_on_the_cache_does_not_stall_the_others(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    upper, lower = stacked
    mnt = upper.mnt
    (mnt / "d").mkdir()
    (mnt / "victim").write_bytes(b"data")
    assert upper.proc is not None and lower.proc is not None
    # The kernel releases a closed file asynchronously: let that happen before the stop.
    wait_for(lambda: open_files(upper) == 0, what="the victim's release")
    lower.proc.send_signal(signal.SIGSTOP)
    stuck = threading.Thread(target=os.unlink, args=(mnt / "victim",))
    stuck.start()
    try:
        stuck.join(5)  # the unlink answers; removing the data may wait for the cache

        run_bounded(lambda: make_dirs(mnt), 30, "requests next to the stuck data removal")
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive()
    assert not (mnt / "victim").exists()
    wait_for(lambda: not any(p.is_file() for p in (lower.mnt / "cache" / "data").rglob("*")),
             what="the data of the unlinked file to be removed")  # fmt: skip


def test_a_policy_run_stuck_on_the_cache_does_not_stall_requests(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    """The policy loop measures the cache's file system every scan_interval (statvfs):
    with that file system stuck, requests that do not touch the cache still answer."""
    upper, lower = stacked
    mnt = upper.mnt
    (mnt / "d").mkdir()
    assert upper.proc is not None and lower.proc is not None
    baseline = threads_waiting_for_fuse(upper.proc.pid)
    lower.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: threads_waiting_for_fuse(upper.proc.pid) > baseline,
                 what="the policy loop to wait for the cache")  # fmt: skip

        run_bounded(lambda: make_dirs(mnt), 60, "requests next to the stuck policy run")
        assert threads_waiting_for_fuse(upper.proc.pid) > baseline
    finally:
        lower.proc.send_signal(signal.SIGCONT)


def test_a_stage_stuck_creating_its_part_file_does_not_stall_the_others(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    upper, lower = stacked
    mnt = upper.mnt
    data = pattern(7, 300_000)
    released = mnt / "released"
    released.write_bytes(data)
    (mnt / "d").mkdir()
    os.setxattr(released, "user.hsm.action", b"archive")
    wait_for(lambda: os.getxattr(released, "user.hsm.state") == b"archived",
             what="the file to be archived")  # fmt: skip
    wait_for(lambda: open_files(upper) == 0, what="the file's release by the kernel")
    os.setxattr(released, "user.hsm.action", b"release")
    assert upper.proc is not None and lower.proc is not None
    baseline = threads_waiting_for_fuse(upper.proc.pid)

    lower.proc.send_signal(signal.SIGSTOP)
    result: list[bytes] = []
    stuck = threading.Thread(target=lambda: result.append(released.read_bytes()))
    stuck.start()
    try:
        # Two worker threads of the upper daemon wait for the cache: the policy loop's
        # statvfs and the creation of the stage's part file (nothing else uses the cache).
        wait_for(lambda: threads_waiting_for_fuse(upper.proc.pid) >= baseline + 2,
                 what="the stage to wait for the cache")  # fmt: skip

        def other_requests() -> None:
            make_dirs(mnt)
            assert os.getxattr(released, "user.hsm.state") == b"released"

        run_bounded(other_requests, 60, "requests next to the stuck stage")
        assert stuck.is_alive()
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive()
    assert result == [data]
    wait_for(lambda: os.getxattr(released, "user.hsm.state") == b"archived",
             what="the stage to finish")  # fmt: skip


def archived_and_closed(mount: HsmMount, name: str, data: bytes) -> Path:
    path = mount.mnt / name
    path.write_bytes(data)
    os.setxattr(path, "user.hsm.action", b"archive")
    wait_for(lambda: os.getxattr(path, "user.hsm.state") == b"archived",
             what="the file to be archived")  # fmt: skip
    wait_for(lambda: open_files(mount) == 0, what="the file's release by the kernel")
    return path


def wait_released(path: Path) -> None:
    wait_for(lambda: os.getxattr(path, "user.hsm.state") == b"released",
             what="the release to change the state")  # fmt: skip


def release_in_thread(path: Path) -> tuple[threading.Thread, list[BaseException]]:
    """setxattr user.hsm.action=release in a thread (it may wait for the cache)."""
    errors: list[BaseException] = []

    def release() -> None:
        try:
            os.setxattr(path, "user.hsm.action", b"release")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=release)
    thread.start()
    return thread, errors


def test_a_release_stuck_removing_the_cache_file_does_not_stall_the_others(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    """A release changes the state at once and removes the cache file in a worker thread;
    the setxattr that asked for it answers once the file is gone."""
    upper, lower = stacked
    mnt = upper.mnt
    data = pattern(9, 300_000)
    released = archived_and_closed(upper, "released", data)
    (mnt / "d").mkdir()
    cache_file = CacheDir(upper.cache).path(os.stat(released).st_ino)
    assert cache_file.exists()
    assert upper.proc is not None and lower.proc is not None

    lower.proc.send_signal(signal.SIGSTOP)
    stuck, errors = release_in_thread(released)
    try:

        def other_requests() -> None:
            wait_released(released)
            make_dirs(mnt)

        run_bounded(other_requests, 60, "requests next to the stuck cache-file removal")
        assert stuck.is_alive()  # its removal still waits for the cache
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive() and errors == []
    assert not cache_file.exists()
    assert released.read_bytes() == data  # staged back once the old data was gone
    wait_for(lambda: os.getxattr(released, "user.hsm.state") == b"archived",
             what="the stage to finish")  # fmt: skip


@pytest.mark.parametrize("operation", ["truncate", "open"])
def test_a_file_is_not_released_while_it_waits_for_the_cache(
    stacked: tuple[HsmMount, HsmMount], operation: str
) -> None:
    """A truncate (or an open) of a closed, archived file waits in a worker thread for the
    cache file; a release in that window must be refused, or the waiting operation would
    find its data gone (a dirty file without a cache file, or ENOENT)."""
    upper, lower = stacked
    data = pattern(11, 300_000)
    path = archived_and_closed(upper, "busy", data)
    ino = os.stat(path).st_ino
    assert upper.proc is not None and lower.proc is not None
    baseline = threads_waiting_for_fuse(upper.proc.pid)

    lower.proc.send_signal(signal.SIGSTOP)
    outcome: list[object] = []

    def operate() -> None:
        try:
            if operation == "truncate":
                os.truncate(path, 1000)
                outcome.append(None)
            else:
                outcome.append(path.read_bytes())
        except OSError as exc:
            outcome.append(exc)

    stuck = threading.Thread(target=operate)
    stuck.start()
    try:
        wait_for(lambda: threads_waiting_for_fuse(upper.proc.pid) > baseline,
                 what=f"the {operation} to wait for the cache")  # fmt: skip
        # Through the control socket (hsmctl release): the kernel holds the inode's lock
        # for a truncate, so a setxattr on the path would only wait behind it.
        reply = next(request(str(upper.state / "control.sock"), {"cmd": "release", "inos": [ino]}))
        assert reply["refused"] == {str(ino): "it is open"}
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive()
    if operation == "truncate":
        assert outcome == [None]
        assert path.read_bytes() == data[:1000]
        assert os.getxattr(path, "user.hsm.state") == b"dirty"
        os.setxattr(path, "user.hsm.action", b"archive")
        wait_for(lambda: os.getxattr(path, "user.hsm.state") == b"archived",
                 what="the truncated file to migrate")  # fmt: skip
    else:
        assert outcome == [data]
        assert os.getxattr(path, "user.hsm.state") == b"archived"


def test_a_crash_before_a_release_removed_its_cache_file_leaves_no_data_behind(
    stacked: tuple[HsmMount, HsmMount],
) -> None:
    """The release committed, its removal waited for the cache when the daemon died: the
    next mount removes the released file's cache file (recovery after a crash)."""
    upper, lower = stacked
    data = pattern(10, 200_000)
    released = archived_and_closed(upper, "released", data)
    cache_file = CacheDir(upper.cache).path(os.stat(released).st_ino)
    assert upper.proc is not None and lower.proc is not None
    lower.proc.send_signal(signal.SIGSTOP)
    try:
        stuck, _ = release_in_thread(released)  # it fails once the daemon is gone
        run_bounded(lambda: wait_released(released), 60, "the release's state change")
        upper.kill()
    finally:
        lower.proc.send_signal(signal.SIGCONT)
    stuck.join(60)
    assert not stuck.is_alive()
    assert cache_file.exists()  # the removal never ran
    upper.start()
    assert not cache_file.exists()
    assert os.getxattr(released, "user.hsm.state") == b"released"
    assert released.read_bytes() == data
