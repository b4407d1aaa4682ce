"""A clean unmount and a new mount give back the same file system, attribute for attribute."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.mounts import HsmMount

Snapshot = dict[str, dict[str, Any]]


def snapshot(root: Path, *, times: bool = True) -> Snapshot:
    """Everything observable about every name under root, keyed by relative path."""
    result: Snapshot = {}

    def visit(path: Path) -> None:
        st = os.lstat(path)
        info: dict[str, Any] = {
            "ino": st.st_ino,
            "mode": st.st_mode,
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "size": st.st_size,
        }
        if times:
            info.update(atime=st.st_atime_ns, mtime=st.st_mtime_ns, ctime=st.st_ctime_ns)
        if stat.S_ISLNK(st.st_mode):
            info["target"] = os.readlink(path)
        else:
            info["xattrs"] = {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}
        if stat.S_ISREG(st.st_mode):
            info["data"] = path.read_bytes()
        result[str(path.relative_to(root))] = info
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                visit(path / name)

    visit(root)
    return result


def populate(mnt: Path) -> None:
    """A tree that uses every kind of inode and attribute the catalog stores."""
    (mnt / "dir" / "sub" / "deeper").mkdir(parents=True)
    (mnt / "dir" / "empty").mkdir()
    os.chmod(mnt / "dir" / "sub", 0o2751)
    os.chown(mnt / "dir" / "sub", 11, 12)
    (mnt / "dir" / "sub" / "deeper" / "file").write_bytes(b"deep contents\n" * 1000)
    (mnt / "empty-file").write_bytes(b"")
    with open(mnt / "sparse", "wb") as f:
        f.write(b"begin")
        f.seek(3 * 1024 * 1024)
        f.write(b"end")
    (mnt / "owned").write_bytes(os.urandom(200_000))
    os.chmod(mnt / "owned", 0o4710)
    os.chown(mnt / "owned", 1001, 2002)
    os.utime(mnt / "owned", ns=(1_111_111_111_123_456_789, 1_222_222_222_987_654_321))
    os.utime(mnt / "dir" / "empty", ns=(5, 6))
    os.setxattr(mnt / "owned", "user.checksum", b"\x00\x01md5")
    os.setxattr(mnt / "owned", "user.note", b"x" * 5000)
    os.setxattr(mnt / "dir", "user.dir-tag", b"tag")
    os.symlink("dir/sub/deeper/file", mnt / "relative-link")
    os.symlink("/absolute/target/\u00e9", mnt / "dir" / "dangling-link")
    os.lchown(mnt / "relative-link", 3, 4)
    os.link(mnt / "owned", mnt / "dir" / "hardlink-1")
    os.link(mnt / "owned", mnt / "dir" / "sub" / "hardlink-2")
    os.mkfifo(mnt / "fifo", 0o640)
    (mnt / ("n" * 255)).write_bytes(b"long name")
    os.mkdir(os.fsencode(mnt) + b"/raw-\xff-name")


def test_tree_contents_and_attributes_survive_remount(hsm: HsmMount) -> None:
    populate(hsm.mnt)
    before = snapshot(hsm.mnt)
    assert before["owned"]["nlink"] == 3
    assert hsm.stop() == 0
    assert not os.path.ismount(hsm.mnt)
    hsm.start()
    after = snapshot(hsm.mnt)
    assert after.keys() == before.keys()
    for path, info in before.items():
        assert after[path] == info, path


def test_changes_after_a_remount_persist_too(hsm: HsmMount) -> None:
    populate(hsm.mnt)
    hsm.stop()
    hsm.start()
    mnt = hsm.mnt
    os.unlink(mnt / "dir" / "hardlink-1")
    os.rename(mnt / "dir" / "sub", mnt / "moved")
    os.truncate(mnt / "owned", 10)
    os.removexattr(mnt / "owned", "user.note")
    os.rmdir(mnt / "dir" / "empty")
    (mnt / "moved" / "new").write_bytes(b"written after the first remount")
    before = snapshot(mnt)
    assert before["owned"]["nlink"] == 2
    hsm.stop()
    hsm.start()
    assert snapshot(mnt) == before


def test_new_inodes_after_remount_do_not_reuse_numbers(hsm: HsmMount) -> None:
    populate(hsm.mnt)
    os.unlink(hsm.mnt / "empty-file")  # a freed number must not come back either
    used = {info["ino"] for info in snapshot(hsm.mnt, times=False).values()}
    hsm.stop()
    hsm.start()
    fresh = []
    for i in range(20):
        (hsm.mnt / f"fresh-{i}").write_bytes(b"")
        fresh.append(os.stat(hsm.mnt / f"fresh-{i}").st_ino)
    assert len(set(fresh)) == 20
    assert not set(fresh) & used


def test_file_written_just_before_unmount_is_complete(hsm: HsmMount) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    with open(hsm.mnt / "big", "wb") as f:
        f.write(data)
    os.utime(hsm.mnt / "big", ns=(42, 43))
    hsm.stop()
    hsm.start()
    assert os.stat(hsm.mnt / "big").st_size == len(data)
    assert (hsm.mnt / "big").read_bytes() == data
    assert os.stat(hsm.mnt / "big").st_mtime_ns == 43


def test_empty_file_system_survives_remount(hsm: HsmMount) -> None:
    before = snapshot(hsm.mnt)
    hsm.stop()
    hsm.start()
    assert snapshot(hsm.mnt) == before
    assert os.listdir(hsm.mnt) == []
