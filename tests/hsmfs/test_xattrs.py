"""Extended attributes on a real mount: user.* stored, user.hsm.* reserved and virtual."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tests.hsmfs.test_posix import errno_of


def test_set_get_list_remove(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    os.setxattr(f, "user.a", b"one")
    os.setxattr(f, "user.b", b"\0binary\xff" * 100)
    assert os.getxattr(f, "user.a") == b"one"
    assert os.getxattr(f, "user.b") == b"\0binary\xff" * 100
    assert sorted(os.listxattr(f)) == ["user.a", "user.b"]
    os.setxattr(f, "user.a", b"replaced")
    assert os.getxattr(f, "user.a") == b"replaced"
    os.removexattr(f, "user.a")
    assert os.listxattr(f) == ["user.b"]
    assert errno_of(os.getxattr, f, "user.a") == errno.ENODATA


def test_empty_value(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"")
    os.setxattr(mnt / "f", "user.empty", b"")
    assert os.getxattr(mnt / "f", "user.empty") == b""
    assert os.listxattr(mnt / "f") == ["user.empty"]


def test_xattrs_on_directories(mnt: Path) -> None:
    (mnt / "d").mkdir()
    os.setxattr(mnt / "d", "user.tag", b"dir")
    assert os.getxattr(mnt / "d", "user.tag") == b"dir"
    assert os.listxattr(mnt / "d") == ["user.tag"]


def test_missing_attribute_is_enodata(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"")
    assert errno_of(os.getxattr, mnt / "f", "user.nothing") == errno.ENODATA
    assert errno_of(os.removexattr, mnt / "f", "user.nothing") == errno.ENODATA
    assert os.listxattr(mnt / "f") == []


def test_create_and_replace_flags(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"")
    assert errno_of(os.setxattr, f, "user.k", b"v", os.XATTR_REPLACE) == errno.ENODATA
    os.setxattr(f, "user.k", b"v", os.XATTR_CREATE)
    assert errno_of(os.setxattr, f, "user.k", b"w", os.XATTR_CREATE) == errno.EEXIST
    os.setxattr(f, "user.k", b"w", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.k") == b"w"


def test_attributes_are_per_inode_and_follow_hard_links(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"")
    (mnt / "g").write_bytes(b"")
    os.link(mnt / "f", mnt / "f2")
    os.setxattr(mnt / "f", "user.k", b"f")
    assert os.getxattr(mnt / "f2", "user.k") == b"f"
    assert errno_of(os.getxattr, mnt / "g", "user.k") == errno.ENODATA


def test_attributes_go_with_the_inode(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"")
    os.setxattr(mnt / "f", "user.k", b"old")
    os.unlink(mnt / "f")
    (mnt / "f").write_bytes(b"")
    assert os.listxattr(mnt / "f") == []


def test_hsm_prefix_is_reserved(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"x")
    assert errno_of(os.setxattr, f, "user.hsm.state", b"archived") == errno.EPERM
    assert errno_of(os.setxattr, f, "user.hsm.anything", b"x") == errno.EPERM
    assert errno_of(os.removexattr, f, "user.hsm.state") == errno.EPERM
    assert os.getxattr(f, "user.hsm.state") == b"dirty"
    assert errno_of(os.getxattr, f, "user.hsm.nonexistent") == errno.ENODATA
    assert os.listxattr(f) == []  # virtual attributes are not stored


def test_hsm_state_only_on_regular_files(mnt: Path) -> None:
    (mnt / "d").mkdir()
    assert errno_of(os.getxattr, mnt / "d", "user.hsm.state") == errno.ENODATA


def test_value_size_limit(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"")
    os.setxattr(mnt / "f", "user.big", b"v" * 65536)
    assert os.getxattr(mnt / "f", "user.big") == b"v" * 65536
    assert errno_of(os.setxattr, mnt / "f", "user.huge", b"v" * 65537) == errno.E2BIG


def test_long_attribute_names(mnt: Path) -> None:
    (mnt / "f").write_bytes(b"")
    name = "user." + "n" * 250  # 255 bytes, the limit
    os.setxattr(mnt / "f", name, b"ok")
    assert os.getxattr(mnt / "f", name) == b"ok"
    assert errno_of(os.setxattr, mnt / "f", name + "n", b"x") == errno.ERANGE


def test_setxattr_updates_ctime_not_mtime(mnt: Path) -> None:
    f = mnt / "f"
    f.write_bytes(b"")
    os.utime(f, ns=(10**9, 10**9))
    before = os.stat(f)
    os.setxattr(f, "user.k", b"v")
    after = os.stat(f)
    assert after.st_mtime_ns == 10**9
    assert after.st_ctime_ns >= before.st_ctime_ns
