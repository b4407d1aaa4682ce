"""file:// backend: a plain tree, atomic writes that survive kill -9, helpful errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hsmfs.backends import NoSuchObject, ObjectStoreError, PermanentFailure, open_backend
from hsmfs.backends.local import TMP_DIR, LocalStore
from tests.backends.conftest import MiB, random_file
from tests.mounts import wait_for


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    root = tmp_path / "objects"
    root.mkdir()
    store = open_backend(root.as_uri())
    assert isinstance(store, LocalStore)
    return store


def test_objects_are_plain_files_in_a_tree(local: LocalStore, tmp_path: Path) -> None:
    data = random_file(tmp_path / "series.tar", 10_000)
    local.upload("2011/8/3/16/745ABFED/CF024730-323397.tar", tmp_path / "series.tar")
    stored = local.root / "2011/8/3/16/745ABFED/CF024730-323397.tar"
    assert stored.read_bytes() == data
    assert os.listdir(local.root / TMP_DIR) == []


def test_interrupted_upload_leaves_no_object(local: LocalStore, tmp_path: Path) -> None:
    random_file(tmp_path / "src", 5 * MiB)

    def fail(_: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        local.upload("obj", tmp_path / "src", progress=fail)
    assert local.head("obj") is None
    assert os.listdir(local.root / TMP_DIR) == []


def test_kill_during_upload_never_shows_a_half_object(local: LocalStore, tmp_path: Path) -> None:
    old = b"the previous version"
    local.put_bytes("obj", old)
    random_file(tmp_path / "src", 8 * MiB)
    started = tmp_path / "started"
    # A real process, killed with SIGKILL while it is half way through copying.
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from hsmfs.backends import open_backend
        def stall(_):
            Path({str(started)!r}).touch()
            time.sleep(600)
        open_backend({local.root.as_uri()!r}).upload("obj", Path({str(tmp_path / "src")!r}),
                                                     progress=stall)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        wait_for(started.exists, timeout=60, what="the upload to start")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert local.get_bytes("obj") == old  # the old object, whole and verified
    assert [info.key for info in local.list_objects()] == ["obj"]
    assert len(os.listdir(local.root / TMP_DIR)) == 1  # the leftover, never listed


def test_stale_temporary_files_are_removed_by_ping(local: LocalStore) -> None:
    (local.root / TMP_DIR).mkdir()
    leftover = local.root / TMP_DIR / "upload-crashed"
    leftover.write_bytes(b"half")
    os.utime(leftover, (0, 0))
    local.ping()
    assert not leftover.exists()


def test_metadata_lives_with_the_file(local: LocalStore) -> None:
    local.put_bytes("obj", b"data", metadata={"origin": "hsmfs"})
    (local.root / "copy").write_bytes((local.root / "obj").read_bytes())
    head = local.head("obj")
    assert head is not None and head.metadata["origin"] == "hsmfs"
    foreign = local.head("copy")  # a file put there by someone else: no recorded md5
    assert foreign is not None and foreign.md5 is None and foreign.size == 4


def test_delete_prunes_empty_directories(local: LocalStore) -> None:
    local.put_bytes("2011/8/3/a.tar", b"a")
    local.put_bytes("2011/8/4/b.tar", b"b")
    local.delete("2011/8/3/a.tar")
    assert not (local.root / "2011/8/3").exists()
    assert (local.root / "2011/8/4/b.tar").exists()


def test_reserved_directory_is_not_a_key(local: LocalStore) -> None:
    with pytest.raises(ObjectStoreError, match="reserved"):
        local.put_bytes(f"{TMP_DIR}/x", b"x")


def test_missing_directory_says_what_to_do(tmp_path: Path) -> None:
    store = open_backend((tmp_path / "absent").as_uri())
    with pytest.raises(PermanentFailure, match=r"absent.*does not exist; create it"):
        store.ping()
    with pytest.raises(PermanentFailure, match=r"absent.*does not exist; create it"):
        store.put_bytes("obj", b"x")


def test_missing_source_file_names_it(local: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectStoreError, match=r"cannot read .*nope to upload") as caught:
        local.upload("obj", tmp_path / "nope")
    assert not isinstance(caught.value, NoSuchObject)
