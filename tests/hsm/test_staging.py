"""Stage-on-read: identical bytes, one shared download, ranges served while staging;
writes to released files, renames and unlinks and what they do to objects."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

from tests.hsm.conftest import MountFactory
from tests.hsm.support import (
    FAST,
    MiB,
    Store,
    cache_file,
    hsm_attr,
    hsm_state,
    part_files,
    status,
    wait_state,
)
from tests.mounts import HsmMount, wait_for


def drop_kernel_cache(path: Path) -> None:
    """Forget the kernel's cached pages of a resident file, so that reads after a release
    reach the daemon (opens keep the page cache: keep_cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def archived_then_released(hsm: HsmMount, name: str, size: int) -> tuple[Path, bytes]:
    path = hsm.mnt / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    wait_state(path, "archived")
    drop_kernel_cache(path)
    os.setxattr(path, "user.hsm.action", b"release")
    assert hsm_state(path) == "released"
    assert not cache_file(hsm, path).exists()
    return path, data


def read_all(fd: int, size: int) -> bytes:
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, 1 * MiB, offset)
        assert chunk, f"unexpected end of file at {offset} of {size}"
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def test_read_of_released_file_is_identical_and_leaves_it_archived_and_resident(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    path, data = archived_then_released(hsm, "a/b.bin", 5 * MiB + 3)
    assert path.read_bytes() == data
    assert hsm_state(path) == "archived"
    assert cache_file(hsm, path).read_bytes() == data
    assert part_files(hsm) == []
    assert hsm_attr(path, "md5") == hashlib.md5(data).hexdigest()


def test_concurrent_readers_share_one_download(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, FAST)
    server = s3.bucket.server  # type: ignore[union-attr]
    size = 24 * MiB
    alone, alone_data = archived_then_released(hsm, "alone.bin", size)
    shared, shared_data = archived_then_released(hsm, "shared.bin", size)

    server.clear()
    assert alone.read_bytes() == alone_data
    gets_for_one_reader = server.count("GET", path=f"/{s3.bucket_name}/archive/alone.bin")
    assert gets_for_one_reader >= 1

    # Hold the endpoint so that every reader opens the file while its stage is pending.
    readers = 8
    server.clear()
    server.stall()
    fds = [os.open(shared, os.O_RDONLY) for _ in range(readers)]
    try:
        wait_for(lambda: server.requests(), what="the stage to reach the endpoint")
        server.resume()
        results: list[bytes | None] = [None] * readers

        def read(index: int) -> None:
            results[index] = read_all(fds[index], size)

        threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.resume()
        for fd in fds:
            os.close(fd)
    assert all(result == shared_data for result in results)
    gets = server.count("GET", path=f"/{s3.bucket_name}/archive/shared.bin")
    assert gets == gets_for_one_reader
    assert status(hsm)["staging"]["stages_completed"] == 2
    assert hsm_state(shared) == "archived"


def test_random_ranges_read_while_staging_equal_the_original(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    size = 40 * MiB + 12345
    path, data = archived_then_released(hsm, "big.bin", size)
    rng = random.Random(3)
    ranges = [(size - 100, 100), (0, 1), (size - 1, 1)]  # the end first: nothing is there yet
    ranges += [(rng.randrange(size), rng.randrange(1, 3 * MiB)) for _ in range(60)]
    mismatches: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:

        def read(part: list[tuple[int, int]]) -> None:
            for offset, length in part:
                if os.pread(fd, length, offset) != data[offset : offset + length]:
                    mismatches.append((offset, length))

        threads = [threading.Thread(target=read, args=(ranges[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert os.pread(fd, 10, size) == b""  # past the end
    finally:
        os.close(fd)
    assert mismatches == []
    wait_state(path, "archived")
    assert part_files(hsm) == []


def test_write_to_released_file_stages_first_then_is_migrated_again(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    path, data = archived_then_released(hsm, "w.bin", 3 * MiB)
    old_md5 = hsm_attr(path, "md5")
    patch = b"PATCHED" * 1000
    with open(path, "r+b") as f:  # the open waits for the stage: a write needs the old data
        assert hsm_state(path) == "archived"
        f.seek(MiB)
        f.write(patch)
        f.flush()
        assert hsm_state(path) == "dirty"
    expected = data[:MiB] + patch + data[MiB + len(patch) :]
    wait_state(path, "archived")
    assert path.read_bytes() == expected
    assert hsm_attr(path, "md5") == hashlib.md5(expected).hexdigest() != old_md5
    assert store.get("w.bin") == expected  # the object was replaced under the same key
    assert store.keys() == {"w.bin"}

    os.setxattr(path, "user.hsm.action", b"release")
    with open(path, "ab") as f:  # appending keeps every old byte too
        f.write(b"tail")
    wait_state(path, "archived")
    assert store.get("w.bin") == expected + b"tail"


def test_truncating_a_released_file_to_zero_needs_no_stage(
    s3: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(s3, FAST)
    server = s3.bucket.server  # type: ignore[union-attr]
    path, _ = archived_then_released(hsm, "t.bin", 2 * MiB)
    server.clear()
    os.truncate(path, 0)
    assert hsm_state(path) == "dirty"
    with open(path, "ab") as f:
        f.write(b"new")
    wait_state(path, "archived")
    assert server.count("GET") == 0
    assert s3.get("t.bin") == b"new"

    overwritten, _ = archived_then_released(hsm, "o.bin", 2 * MiB)
    server.clear()
    with open(overwritten, "wb") as f:  # open(O_TRUNC): the old data is not needed either
        assert hsm_state(overwritten) == "dirty"
        f.write(b"newer")
    wait_state(overwritten, "archived")
    assert server.count("GET") == 0
    assert s3.get("o.bin") == b"newer"


def test_rename_then_remigration_deletes_old_key_after_new_one_exists(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    old = hsm.mnt / "d" / "a.bin"
    old.parent.mkdir()
    data = os.urandom(MiB)
    old.write_bytes(data)
    wait_state(old, "archived")
    new = hsm.mnt / "e" / "b.bin"
    new.parent.mkdir()
    os.rename(old, new)
    assert hsm_attr(new, "key") == "d/a.bin"  # the copy stays where it was until migrated
    assert store.keys() == {"d/a.bin"}
    if store.bucket is not None:
        store.bucket.server.clear()

    with open(new, "ab") as f:
        f.write(b"more")
    wait_state(new, "archived")
    assert hsm_attr(new, "key") == "e/b.bin"
    wait_for(lambda: store.keys() == {"e/b.bin"}, what="the superseded object to be deleted")
    assert store.get("e/b.bin") == data + b"more"

    if store.bucket is not None:
        log = store.bucket.server.requests()
        new_path = f"/{store.bucket_name}/archive/e/b.bin"
        old_path = f"/{store.bucket_name}/archive/d/a.bin"
        deleted = [i for i, r in enumerate(log) if r.path == old_path and r.method == "DELETE"]
        assert len(deleted) == 1
        before = log[: deleted[0]]
        written = [i for i, r in enumerate(before) if r.path == new_path and r.method == "PUT"]
        assert written  # the new object was uploaded before the old one went
        verified = [
            i
            for i, r in enumerate(before)
            if r.path == new_path and r.method == "HEAD" and i > written[-1]
        ]
        assert verified  # ... and confirmed by the store


def test_unlink_of_archived_file_deletes_its_object(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store, FAST)
    path, _ = archived_then_released(hsm, "gone.bin", 1000)
    kept = hsm.mnt / "kept.bin"
    kept.write_bytes(b"kept")
    wait_state(kept, "archived")
    path.unlink()
    wait_for(lambda: store.keys() == {"kept.bin"}, what="the deleted file's object to go")


def test_open_without_read_of_released_files_stages_them(
    store: Store, make_mount: MountFactory
) -> None:
    """The stage of a tiny file can finish while its open is still in progress."""
    hsm = make_mount(store, FAST)
    files = [archived_then_released(hsm, f"tiny{i}", i % 3) for i in range(20)]
    for path, _ in files:
        os.close(os.open(path, os.O_RDONLY))
    for path, data in files:
        wait_state(path, "archived")
        assert cache_file(hsm, path).read_bytes() == data
