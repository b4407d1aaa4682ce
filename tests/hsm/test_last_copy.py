"""The last good copy is never freed, and a transient fault does not stay permanent.

- A release confirms the object (a HEAD: size and ETag or MD5) before it frees the cache
  data; a file whose object vanished stays resident, becomes dirty and migrates again.
- A release that cannot happen (the file is being staged) fails instead of answering 0.
- A lost file whose object is back becomes released again with ``hsmctl recheck``.
- Every reader of one stage shares its deadline: four readers of a file whose store is
  down fail together, not one stage timeout after another.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.hsm.conftest import MountFactory
from tests.hsm.support import FAST, MiB, Store, hsm_attr, hsm_state, hsmctl, status, wait_state
from tests.hsm.test_failures import OUTAGE, STAGE_TIMEOUT
from tests.hsm.test_staging import archived_then_released, drop_kernel_cache
from tests.mounts import wait_for


def archived(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    wait_state(path, "archived")


def test_release_of_a_file_whose_object_vanished_keeps_it_and_migrates_it_again(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store)
    path = hsm.mnt / "2011/8/3/study.tar"
    data = os.urandom(3 * MiB)
    archived(path, data)
    store.delete("2011/8/3/study.tar")  # bucket recreated, lifecycle expiry, a mistake

    result = hsmctl("release", path)
    assert result.returncode == 1
    assert f"{path}: not released: its object 2011/8/3/study.tar is missing" in result.stdout
    assert path.read_bytes() == data  # the only copy is still here
    wait_state(path, "archived")  # migrated again
    assert store.get("2011/8/3/study.tar") == data
    assert "2011/8/3/study.tar" in hsm.log.read_text()  # the log names the key
    assert status(hsm)["migration"]["copies_missing"] == 1

    assert hsmctl("release", path).returncode == 0  # now the copy is confirmed
    assert hsm_state(path) == "released"
    drop_kernel_cache(path)
    assert path.read_bytes() == data


def test_release_of_a_file_whose_object_was_replaced_keeps_it(
    s3: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(s3)
    path = hsm.mnt / "replaced.bin"
    data = os.urandom(MiB)
    archived(path, data)
    s3.damage("replaced.bin")  # same size and metadata, other bytes: another ETag

    with pytest.raises(OSError) as caught:
        os.setxattr(path, "user.hsm.action", b"release")
    assert caught.value.errno == errno.EBUSY
    assert "was replaced" in hsm.log.read_text()
    wait_state(path, "archived")
    assert s3.get("replaced.bin") == data


def test_watermark_release_never_frees_a_file_whose_object_vanished(
    store: Store, make_mount: MountFactory
) -> None:
    # Every archived file is over the marks at once: release_after = 0 releases all.
    hsm = make_mount(store, FAST + "release_after = 3600\n")
    keep, free = hsm.mnt / "keep.bin", hsm.mnt / "free.bin"
    keep_data, free_data = os.urandom(2 * MiB), os.urandom(2 * MiB)
    archived(keep, keep_data)
    archived(free, free_data)
    store.delete("keep.bin")
    hsm.config_text = FAST + "release_after = 0\n"
    hsm.config.write_text(hsm.config_text)
    assert hsm.proc is not None
    hsm.proc.send_signal(signal.SIGHUP)

    wait_state(free, "released")
    wait_for(lambda: store.get("keep.bin") == keep_data, what="keep.bin to be migrated again")
    # Archived again, its copy confirmed: now it may go too.
    wait_state(keep, "released")
    for path, data in ((keep, keep_data), (free, free_data)):
        drop_kernel_cache(path)
        assert path.read_bytes() == data


def test_release_while_a_stage_is_running_fails(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3)
    server = s3.bucket.server  # type: ignore[union-attr]
    path, data = archived_then_released(hsm, "staging.bin", 4 * MiB)
    server.hold_bodies(after=64 * 1024)  # the stage starts and then waits
    os.setxattr(path, "user.hsm.action", b"stage")  # a stage with no reader holding it open
    try:
        wait_for(lambda: status(hsm)["staging"]["stages_in_flight"] == 1, what="a stage")
        with pytest.raises(OSError) as caught:  # it would not happen: it must fail
            os.setxattr(path, "user.hsm.action", b"release")
        assert caught.value.errno == errno.EBUSY
        result = hsmctl("release", path)
        assert result.returncode == 1 and "being staged" in result.stdout, result.stdout
    finally:
        server.resume()
    wait_state(path, "archived")
    drop_kernel_cache(path)
    assert path.read_bytes() == data


def test_recheck_returns_a_lost_file_whose_object_is_back(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store)
    path, data = archived_then_released(hsm, "2011/lost.bin", 2 * MiB)
    original = store.get("2011/lost.bin")
    assert original == data
    store.delete("2011/lost.bin")
    with pytest.raises(OSError) as caught:
        path.read_bytes()
    assert caught.value.errno == errno.EIO
    wait_state(path, "lost")
    assert "hsmctl recheck" in hsm.log.read_text()  # the log says what to do
    assert hsm_attr(path, "key") == "2011/lost.bin"  # and hsmctl state shows the key

    result = hsmctl("recheck", path)  # the object is still gone
    assert result.returncode == 1
    assert f"{path}: lost: its object 2011/lost.bin is missing" in result.stdout
    assert hsm_state(path) == "lost"

    restore(store, "2011/lost.bin", path, data)
    result = hsmctl("recheck", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert hsm_state(path) == "released"
    assert path.read_bytes() == data
    wait_state(path, "archived")


def test_recheck_marks_copies_that_are_gone(store: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(store)
    released, _ = archived_then_released(hsm, "gone.bin", MiB)
    kept, kept_data = hsm.mnt / "kept.bin", os.urandom(MiB)
    archived(kept, kept_data)
    store.delete("gone.bin")
    store.delete("kept.bin")

    result = hsmctl("recheck", released, kept)
    assert result.returncode == 1
    assert f"{released}: lost: its object gone.bin is missing" in result.stdout
    assert f"{kept}: " in result.stdout and "migrates anew" in result.stdout
    assert hsm_state(released) == "lost"
    # The archived file still had its data in the cache: it is copied again.
    wait_for(lambda: store.get("kept.bin") == kept_data, what="kept.bin to be migrated again")
    wait_state(kept, "archived")
    assert hsmctl("recheck", kept).returncode == 0


def restore(store: Store, key: str, path: Path, data: bytes) -> None:
    """Put the object back as migrated: the same bytes and metadata (so the same ETag)."""
    if store.root is not None:
        # file://: the object file and its metadata attribute, as the store wrote them
        from hsmfs.backends.local import LocalStore

        source = Path(str(store.root)) / ".restore"
        source.write_bytes(data)
        md5 = hsm_attr(path, "md5")
        LocalStore(store.root).upload(key, source, md5=md5)
        source.unlink()
        return
    assert store.bucket is not None
    client = store.bucket.client()
    try:
        client.put_object(  # type: ignore[attr-defined]
            Bucket=store.bucket_name,
            Key=store.full_key(key),
            Body=data,
            Metadata={"md5": hsm_attr(path, "md5") or ""},
        )
    finally:
        client.close()  # type: ignore[attr-defined]


def test_readers_of_one_stage_share_its_deadline(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, OUTAGE)
    server = s3.bucket.server  # type: ignore[union-attr]
    path, _ = archived_then_released(hsm, "wanted.bin", 2 * MiB)
    server.stop()
    failed_at: list[float] = []
    errors: list[int] = []

    def read() -> None:
        try:
            path.read_bytes()
        except OSError as exc:
            errors.append(exc.errno or 0)
        failed_at.append(time.monotonic())

    readers = [threading.Thread(target=read) for _ in range(4)]
    try:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(120)
    finally:
        server.start()
    assert errors == [errno.EIO] * 4
    # One shared deadline: all fail within one stage timeout of each other (readers that
    # each waited a timeout of their own, one after the other, spread over three more).
    assert max(failed_at) - min(failed_at) < STAGE_TIMEOUT
    assert hsm_state(path) == "released"  # unreachable is not lost
