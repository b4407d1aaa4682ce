"""Release by cache watermarks on a small tmpfs cache: least recently used first, down to
the low mark, never a dirty, open, norelease file; a SIGHUP reloads the marks."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hsm.conftest import MountFactory, file_store, s3_store
from tests.hsm.support import MiB, Store, hsm_state, hsmctl, status, wait_state
from tests.mounts import HsmMount, wait_for

CACHE_SIZE = 64 * MiB
FILE_SIZE = 3 * MiB


def policy(high: str, low: str) -> str:
    return f"[hsm]\nmigrate_after = 0\nscan_interval = 0.2\nhigh_watermark = {high}\n" \
        f"low_watermark = {low}\n"  # fmt: skip


@pytest.fixture
def tmpfs_mount(make_mount: MountFactory) -> Iterator[Callable[[Store, str], HsmMount]]:
    """An hsmfs mount whose cache directory is a 64 MiB tmpfs of its own."""
    made: list[HsmMount] = []

    def make(store: Store, config: str) -> HsmMount:
        hsm = make_mount(store, config, start=False)
        hsm.cache.mkdir(parents=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={CACHE_SIZE // MiB}m", "tmpfs", hsm.cache],
            check=True,
        )
        made.append(hsm)
        return hsm.start()

    yield make
    for hsm in made:
        hsm.cleanup()
        subprocess.run(["umount", hsm.cache], check=False)


def write(path: Path) -> None:
    path.write_bytes(os.urandom(FILE_SIZE))


@pytest.mark.parametrize(
    ("backend", "high", "low"),
    [("file", str(CACHE_SIZE // 2), str(CACHE_SIZE // 4)), ("s3", '"50%"', '"25%"')],
    ids=["bytes-file", "percent-s3"],
)
def test_watermark_release_least_recently_used_first(
    backend: str,
    high: str,
    low: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    tmpfs_mount: Callable[[Store, str], HsmMount],
) -> None:
    store = file_store(tmp_path) if backend == "file" else s3_store(
        request.getfixturevalue("s3_bucket")
    )  # fmt: skip
    hsm = tmpfs_mount(store, policy('"100%"', '"100%"'))  # nothing released yet
    mnt = hsm.mnt

    # The oldest files are the ones release must never touch.
    pinned, held, dirty = mnt / "pinned", mnt / "held", mnt / "dirty"
    write(pinned)
    write(held)
    with open(dirty, "wb") as f:
        assert hsmctl("set", "--set", "noarchive", dirty).returncode == 0
        f.write(os.urandom(FILE_SIZE))
    assert hsmctl("set", "--set", "norelease", pinned).returncode == 0
    wait_state(pinned, "archived")
    wait_state(held, "archived")
    held_fd = os.open(held, os.O_RDONLY)
    try:
        files = [mnt / f"f{i:02}" for i in range(12)]
        for path in files:
            write(path)
        for path in files:
            wait_state(path, "archived")
        for path in files[:2]:  # used again: now the most recently used
            assert len(path.read_bytes()) == FILE_SIZE
        lru = files[2:] + files[:2]

        before = status(hsm)["cache"]
        assert before["total"] == CACHE_SIZE
        assert before["used"] > CACHE_SIZE // 2 + FILE_SIZE

        hsm.config.write_text(policy(high, low))
        assert hsm.proc is not None
        hsm.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: status(hsm)["cache"]["high"] == CACHE_SIZE // 2,
            what="the reloaded high watermark in hsmctl status",
        )
        wait_for(
            lambda: status(hsm)["cache"]["used"] <= CACHE_SIZE // 4,
            what="the cache to drain below the low watermark",
        )
        after = status(hsm)["cache"]
        assert after["low"] == CACHE_SIZE // 4

        needed = math.ceil((before["used"] - CACHE_SIZE // 4) / FILE_SIZE)
        assert 0 < needed < len(lru)  # some files go, the recently used ones stay
        states = [hsm_state(path) for path in lru]
        assert states == ["released"] * needed + ["archived"] * (len(lru) - needed)
        assert hsm_state(pinned) == "archived"
        assert hsm_state(held) == "archived"
        assert hsm_state(dirty) == "dirty"
        assert len(os.pread(held_fd, FILE_SIZE, 0)) == FILE_SIZE
    finally:
        os.close(held_fd)
    assert status(hsm)["migration"]["released"] == needed


def test_release_after_age_releases_idle_files_only(
    tmp_path: Path, make_mount: MountFactory
) -> None:
    hsm = make_mount(file_store(tmp_path), policy('"100%"', '"100%"') + "release_after = 1\n")
    idle, held, pinned = hsm.mnt / "idle", hsm.mnt / "held", hsm.mnt / "pinned"
    # idle is used last: once it is old enough to go, the others are older still
    write(held)
    fd = os.open(held, os.O_RDONLY)
    try:
        with open(pinned, "wb") as f:  # pinned before it can be archived, let alone released
            os.setxattr(pinned, "user.hsm.flags", b"norelease")
            f.write(os.urandom(FILE_SIZE))
        write(idle)
        wait_state(idle, "released")
        wait_state(pinned, "archived")
        wait_for(lambda: status(hsm)["migration"]["released"] >= 1, what="the release count")
        assert hsm_state(held) == "archived"  # older than release_after, but open
        assert hsm_state(pinned) == "archived"
    finally:
        os.close(fd)
    wait_state(held, "released")
    assert hsm_state(pinned) == "archived"
    assert len(idle.read_bytes()) == FILE_SIZE


def test_a_write_that_finds_the_cache_full_releases_at_once(
    tmp_path: Path, tmpfs_mount: Callable[[Store, str], HsmMount]
) -> None:
    """ENOSPC on a write starts the release sweep now: with an hour between policy runs,
    nothing else would free the archived files before the writer gives up."""
    config = policy('"90%"', '"50%"').replace("scan_interval = 0.2", "scan_interval = 3600")
    hsm = tmpfs_mount(file_store(tmp_path), config)
    archived = [hsm.mnt / f"old{i}" for i in range(8)]
    for path in archived:
        write(path)
    for path in archived:
        wait_state(path, "archived")  # 24 MiB that may go, below the high mark

    big = hsm.mnt / "big"
    data = os.urandom(CACHE_SIZE - 16 * MiB)  # with the archived files: past the cache size
    fd = os.open(big, os.O_WRONLY | os.O_CREAT, 0o644)
    full = 0
    try:
        os.setxattr(big, "user.hsm.flags", b"noarchive")  # dirty: only the old files can go
        offset = 0

        def write_some() -> bool:
            nonlocal offset, full
            try:
                offset += os.pwrite(fd, data[offset : offset + MiB], offset)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                full += 1
            return offset == len(data)

        wait_for(write_some, what="the write to get its space back", timeout=120, interval=0.05)
    finally:
        os.close(fd)
    assert full > 0, "the cache never filled up: the test proves nothing"
    assert big.read_bytes() == data
    assert any(hsm_state(path) == "released" for path in archived)
    assert hsm_state(big) == "dirty"
