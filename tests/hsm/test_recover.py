"""hsmfs recover: a mount rebuilt from the object store alone (state and cache wiped),
from the snapshot of a clean unmount and from objects archived after it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store, hsm_state, hsmctl, hsmfs_cli, status, wait_state
from tests.mounts import HsmMount, wait_for

# Files migrate when asked; no snapshot but the one of a clean unmount.
MANUAL = "[hsm]\nmigrate_after = 3600\nscan_interval = 0.2\nsnapshot_interval = 3600\n"


@dataclass
class Expected:
    data: bytes
    mode: int
    uid: int
    gid: int
    mtime_ns: int


def make_files(mnt: Path, specs: dict[str, tuple[int, int, int, int]]) -> dict[str, Expected]:
    """Files with the given (size, mode, uid, gid) and an mtime of their own, archived."""
    made = {}
    for number, (name, (size, mode, uid, gid)) in enumerate(specs.items()):
        path = mnt / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        os.chmod(path, mode)
        os.chown(path, uid, gid)
        mtime_ns = 1_300_000_000_123_456_789 + number * 86_400_000_000_000
        os.utime(path, ns=(mtime_ns, mtime_ns))
        made[name] = Expected(data, mode, uid, gid, mtime_ns)
    result = hsmctl("archive", *(mnt / name for name in specs))
    assert result.returncode == 0, result.stdout + result.stderr
    return made


def recover_into(store: Store, make_mount: MountFactory, name: str) -> HsmMount:
    target = make_mount(store, MANUAL, name=name, start=False)
    result = hsmfs_cli(
        "recover", "--backend", store.url, "--state", target.state, "--cache", target.cache
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "recovered from" in result.stdout
    return target.start()


def assert_recovered(hsm: HsmMount, files: dict[str, Expected]) -> None:
    for name, want in files.items():
        path = hsm.mnt / name
        st = os.stat(path)
        assert hsm_state(path) == "released", name
        got = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_size)
        assert got == (want.mode, want.uid, want.gid, want.mtime_ns, len(want.data)), name
        assert stat.S_ISREG(st.st_mode)
        assert path.read_bytes() == want.data, name
        wait_state(path, "archived")


FIRST = {
    "2011/8/3/study.tar": (3_000_000, 0o640, 1234, 5678),
    "2011/8/3/other.tar": (1, 0o600, 0, 0),
    "top.bin": (70_000, 0o755, 42, 43),
    "empty": (0, 0o644, 0, 0),
}


def test_recover_from_the_snapshot_of_a_clean_unmount(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, MANUAL)
    files = make_files(hsm.mnt, FIRST)
    (hsm.mnt / "never-archived").write_bytes(b"only in the old cache")
    os.symlink("top.bin", hsm.mnt / "link")
    assert hsm.stop() == 0  # takes the snapshot

    recovered = recover_into(store, make_mount, "recovered")
    assert_recovered(recovered, files)
    assert os.readlink(recovered.mnt / "link") == "top.bin"
    assert hsm_state(recovered.mnt / "never-archived") == "lost"
    with pytest.raises(OSError):
        (recovered.mnt / "never-archived").read_bytes()


def test_recover_with_objects_archived_after_the_snapshot(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, MANUAL)
    files = make_files(hsm.mnt, FIRST)
    assert hsm.stop() == 0  # the snapshot knows FIRST only

    hsm.start()
    later = make_files(
        hsm.mnt,
        {
            "2011/8/4/new.tar": (2_500_000, 0o640, 1234, 5678),
            "2011/8/3/late.tar": (10, 0o600, 7, 8),
        },
    )
    # Changed after the snapshot: the object in the store is newer than the snapshot's record.
    changed = hsm.mnt / "top.bin"
    same_size = os.urandom(len(files["top.bin"].data))
    changed.write_bytes(same_size)
    os.utime(changed, ns=(files["top.bin"].mtime_ns,) * 2)
    grown = hsm.mnt / "2011/8/3/other.tar"
    grown.write_bytes(b"grown")
    os.utime(grown, ns=(files["2011/8/3/other.tar"].mtime_ns,) * 2)
    assert hsmctl("archive", changed, grown).returncode == 0
    files["top.bin"].data = same_size
    files["2011/8/3/other.tar"].data = b"grown"
    hsm.kill()  # no snapshot at the end

    recovered = recover_into(store, make_mount, "recovered")
    assert_recovered(recovered, {**files, **later})


def test_recover_without_any_snapshot_from_object_metadata(
    store: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(store, MANUAL)
    files = make_files(hsm.mnt, FIRST)
    hsm.kill()  # never unmounted cleanly: the store holds no catalog snapshot
    assert not any(key.startswith(".hsmfs/") for key in store.keys())

    target = make_mount(store, MANUAL, name="recovered", start=False)
    result = hsmfs_cli(
        "recover", "--backend", store.url, "--state", target.state, "--cache", target.cache
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "object metadata only" in result.stdout
    assert f"{len(files)} rebuilt from metadata" in result.stdout
    target.start()
    assert_recovered(target, files)


def test_a_snapshot_soon_after_a_change_serves_a_recover_after_kill(
    s3: Store, make_mount: MountFactory
) -> None:
    hsm = make_mount(s3, MANUAL.replace("snapshot_interval = 3600", "snapshot_interval = 0.5"))
    files = make_files(hsm.mnt, {"a/b.bin": (1000, 0o640, 3, 4)})
    os.symlink("a/b.bin", hsm.mnt / "link")  # only a snapshot knows symlinks
    wait_for(lambda: not status(hsm)["snapshots"]["snapshot_pending"], what="a snapshot")
    hsm.kill()

    recovered = recover_into(s3, make_mount, "recovered")
    assert os.readlink(recovered.mnt / "link") == "a/b.bin"
    assert_recovered(recovered, files)
