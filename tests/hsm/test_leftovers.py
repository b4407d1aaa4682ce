"""What a crash, a kill or a rename used to leave behind, or lose.

- Unfinished multipart uploads of the mount's prefix are aborted at mount and by fsck.
- Catalog changes (modes, owners, renames, deletions, symlinks, empty directories, hard
  links) reach the object store in a snapshot soon after they happen, so a recover after
  kill -9 has them; objects of deleted files go only after such a snapshot.
- A new file under the old name of a file renamed after migration never overwrites that
  file's copy.
- A file dirty at the last snapshot and archived after it recovers with its data.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.hsm.conftest import MountFactory
from tests.hsm.support import FAST, MiB, Store, hsm_attr, hsm_state, hsmctl, hsmfs_cli, status
from tests.hsm.test_recover import MANUAL, recover_into
from tests.hsm.test_staging import drop_kernel_cache
from tests.mounts import HsmMount, wait_for

SOON = MANUAL.replace("snapshot_interval = 3600", "snapshot_interval = 0.5")


def stale_upload(store: Store, key: str) -> str:
    """An upload killed half-way: a multipart upload with one part, never completed."""
    assert store.bucket is not None
    client: Any = store.bucket.client()
    try:
        upload = client.create_multipart_upload(Bucket=store.bucket_name, Key=key)
        client.upload_part(Bucket=store.bucket_name, Key=key, PartNumber=1,
                           UploadId=upload["UploadId"], Body=os.urandom(MiB))  # fmt: skip
        return str(upload["UploadId"])
    finally:
        client.close()


def unfinished(store: Store, prefix: str) -> list[str]:
    assert store.bucket is not None
    client: Any = store.bucket.client()
    try:
        found = client.list_multipart_uploads(Bucket=store.bucket_name, Prefix=prefix)
        return [u["Key"] for u in found.get("Uploads", [])]
    finally:
        client.close()


def test_unfinished_uploads_of_the_prefix_are_aborted_at_mount(
    s3: Store, make_mount: MountFactory
) -> None:
    stale_upload(s3, s3.full_key("2011/8/3/big.tar"))
    stale_upload(s3, "another-node/2011/x.tar")  # another prefix: not ours to touch
    hsm = make_mount(s3)
    wait_for(lambda: unfinished(s3, s3.prefix) == [], what="the stale upload to be aborted")
    assert unfinished(s3, "another-node/") == ["another-node/2011/x.tar"]
    assert "aborted 1 unfinished upload" in hsm.log.read_text()


def test_fsck_aborts_unfinished_uploads(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3)
    assert hsm.stop() == 0
    stale_upload(s3, s3.full_key("left/over.bin"))
    result = hsmfs_cli("fsck", "--state", hsm.state, "--cache", hsm.cache, "--backend", s3.url)
    assert result.returncode == 1, result.stdout + result.stderr  # found and repaired
    assert "unfinished upload" in result.stdout
    assert unfinished(s3, s3.prefix) == []


def snapshot_taken(hsm: HsmMount) -> None:
    """Wait until a snapshot holds every catalog change made so far."""
    wait_for(lambda: not status(hsm)["snapshots"]["snapshot_pending"], what="a snapshot")


def test_metadata_changes_after_migration_survive_a_kill(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, SOON)
    path = hsm.mnt / "2011/study.tar"
    path.parent.mkdir()
    data = os.urandom(100_000)
    path.write_bytes(data)
    assert hsmctl("archive", path).returncode == 0
    snapshot_taken(hsm)
    os.chmod(path, 0o640)  # after the migration and after the last snapshot
    os.chown(path, 1234, 5678)
    os.rename(path, hsm.mnt / "2011/renamed.tar")
    snapshot_taken(hsm)
    hsm.kill()

    recovered = recover_into(store, make_mount, "recovered")
    st = os.stat(recovered.mnt / "2011/renamed.tar")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert not (recovered.mnt / "2011/study.tar").exists()
    assert (recovered.mnt / "2011/renamed.tar").read_bytes() == data


def test_a_file_deleted_after_a_snapshot_does_not_come_back(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, SOON)
    gone, kept = hsm.mnt / "gone.bin", hsm.mnt / "kept.bin"
    for path in (gone, kept):
        path.write_bytes(os.urandom(10_000))
    assert hsmctl("archive", gone, kept).returncode == 0
    snapshot_taken(hsm)
    gone.unlink()
    snapshot_taken(hsm)
    wait_for(lambda: "gone.bin" not in store.keys(), what="the deleted file's object to go")
    hsm.kill()

    recovered = recover_into(store, make_mount, "recovered")
    assert sorted(os.listdir(recovered.mnt)) == ["kept.bin"]


def test_without_an_earlier_snapshot_the_namespace_survives_a_kill(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, SOON)
    first = hsm.mnt / "a" / "first"
    first.parent.mkdir()
    first.write_bytes(b"linked")
    os.link(first, hsm.mnt / "second")
    os.symlink("a/first", hsm.mnt / "link")
    os.makedirs(hsm.mnt / "empty" / "dir")
    assert hsmctl("archive", first).returncode == 0
    snapshot_taken(hsm)
    hsm.kill()  # no clean unmount ever happened

    recovered = recover_into(store, make_mount, "recovered")
    mnt = recovered.mnt
    assert os.readlink(mnt / "link") == "a/first"
    assert os.listdir(mnt / "empty" / "dir") == []
    assert os.stat(mnt / "second").st_ino == os.stat(mnt / "a" / "first").st_ino
    assert (mnt / "second").read_bytes() == b"linked"


def test_a_new_file_under_a_renamed_files_old_name_keeps_both_copies(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, FAST)
    old, new = hsm.mnt / "x.bin", hsm.mnt / "y.bin"
    old_data, new_data = os.urandom(MiB), os.urandom(MiB)
    old.write_bytes(old_data)
    assert hsmctl("archive", old).returncode == 0
    old.rename(new)  # its copy stays under x.bin until it is next migrated
    old.write_bytes(new_data)  # a new file under the old name
    assert hsmctl("archive", old).returncode == 0
    ino = os.stat(old).st_ino
    assert hsm_attr(new, "key") == "x.bin"
    assert hsm_attr(old, "key") == f"x.bin~{ino}"
    assert store.get("x.bin") == old_data
    assert store.get(f"x.bin~{ino}") == new_data
    assert hsmctl("release", old, new).returncode == 0
    for path, data in ((new, old_data), (old, new_data)):
        drop_kernel_cache(path)
        assert path.read_bytes() == data, path
        assert hsm_state(path) in ("released", "archived")


def test_a_file_dirty_at_the_snapshot_and_archived_after_recovers(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, MANUAL)
    path: Path = hsm.mnt / "late.bin"
    data = os.urandom(200_000)
    path.write_bytes(data)
    assert hsm.stop() == 0  # the snapshot has it dirty
    hsm.start()
    assert hsmctl("archive", path).returncode == 0
    hsm.kill()  # no snapshot knows it is archived

    recovered = recover_into(store, make_mount, "recovered")
    assert hsm_state(recovered.mnt / "late.bin") == "released"
    assert (recovered.mnt / "late.bin").read_bytes() == data
