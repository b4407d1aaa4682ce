"""Tars are read-only through their members: every write, create, unlink, rename,
attribute change or setxattr inside ``NAME.tar!`` fails with EROFS, and the tar and its
members stay as they were."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store
from tests.members.support import PREFETCH_NONE, make_tar, member, put_tar, read_member

FILES = {"CF024730/00000001": b"first member", "CF024730/00000002": b"second member"}


def _open_for(mode: str) -> Callable[[Path], Any]:
    def run(path: Path) -> None:
        with open(path, mode) as f:
            f.write(b"x")

    return run


# (what, function of (tar, mount root)); each must fail with EROFS.
ATTEMPTS: dict[str, Callable[[Path, Path], Any]] = {
    "write member": lambda t, m: _open_for("r+b")(member(t, "CF024730/00000001")),
    "append member": lambda t, m: _open_for("ab")(member(t, "CF024730/00000001")),
    "truncate-open member": lambda t, m: _open_for("wb")(member(t, "CF024730/00000001")),
    "write root member": lambda t, m: _open_for("r+b")(member(t, "MD5SUM")),
    "create in member dir": lambda t, m: _open_for("wb")(member(t, "CF024730/new")),
    "create at tar root": lambda t, m: _open_for("wb")(member(t, "new")),
    "create via root dir": lambda t, m: _open_for("wb")(member(t) / "new"),
    "mkdir in member dir": lambda t, m: os.mkdir(member(t, "CF024730/sub")),
    "mkdir at tar root": lambda t, m: os.mkdir(member(t, "sub")),
    "symlink in tar": lambda t, m: os.symlink("x", member(t, "CF024730/link")),
    "hard link into tar": lambda t, m: os.link(m / "outside", member(t, "CF024730/ln")),
    "unlink member": lambda t, m: os.unlink(member(t, "CF024730/00000001")),
    "unlink root member": lambda t, m: os.unlink(member(t, "MD5SUM")),
    "unlink via root dir": lambda t, m: os.unlink(member(t) / "MD5SUM"),
    "rmdir member dir": lambda t, m: os.rmdir(member(t, "CF024730")),
    "rename in tar": lambda t, m: os.rename(
        member(t, "CF024730/00000001"), member(t, "CF024730/00000009")
    ),
    "rename out of tar": lambda t, m: os.rename(member(t, "CF024730/00000001"), m / "stolen"),
    "rename into tar": lambda t, m: os.rename(m / "outside", member(t, "CF024730/00000009")),
    "rename into tar root": lambda t, m: os.rename(m / "outside", member(t, "moved")),
    "rename root member": lambda t, m: os.rename(member(t, "MD5SUM"), m / "stolen"),
    "symlink at tar root": lambda t, m: os.symlink("x", member(t, "link")),
    "hard link at tar root": lambda t, m: os.link(m / "outside", member(t, "ln")),
    "rename over member": lambda t, m: os.rename(m / "outside", member(t, "CF024730/00000001")),
    "chmod member": lambda t, m: os.chmod(member(t, "CF024730/00000001"), 0o777),
    "chmod member dir": lambda t, m: os.chmod(member(t, "CF024730"), 0o777),
    "chown member": lambda t, m: os.chown(member(t, "CF024730/00000001"), 1, 1),
    "utime member": lambda t, m: os.utime(member(t, "CF024730/00000001"), (1, 1)),
    "truncate member": lambda t, m: os.truncate(member(t, "CF024730/00000001"), 0),
    "setxattr member": lambda t, m: os.setxattr(member(t, "CF024730/00000001"), "user.x", b"1"),
    "hsm action on member": lambda t, m: os.setxattr(
        member(t, "CF024730/00000001"), "user.hsm.action", b"release"
    ),
    "removexattr member": lambda t, m: os.removexattr(
        member(t, "CF024730/00000001"), "user.hsm.md5"
    ),
}


def test_changes_inside_a_tar_fail_with_erofs(s3: Store, make_mount: MountFactory) -> None:
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "ro.tar", make_tar(FILES))
    (hsm.mnt / "outside").write_bytes(b"a real file")
    tar_bytes = read_member(tar)
    paths = [member(tar, name) for name in ("MD5SUM", "CF024730", *FILES)]
    before = {path: os.stat(path) for path in paths}

    wrong: dict[str, str] = {}
    for what, attempt in ATTEMPTS.items():
        try:
            attempt(tar, hsm.mnt)
            wrong[what] = "succeeded"
        except OSError as exc:
            if exc.errno != errno.EROFS:
                wrong[what] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    assert wrong == {}, "expected EROFS"

    assert sorted(os.listdir(hsm.mnt)) == ["outside", "ro.tar"]
    assert read_member(tar) == tar_bytes
    assert (hsm.mnt / "outside").read_bytes() == b"a real file"
    for path, info in before.items():
        now = os.stat(path)
        assert (now.st_ino, now.st_mode, now.st_size, now.st_mtime_ns) == (
            info.st_ino,
            info.st_mode,
            info.st_size,
            info.st_mtime_ns,
        ), path
    for name, data in FILES.items():
        assert read_member(member(tar, name)) == data
    assert sorted(os.listdir(member(tar, "CF024730"))) == ["00000001", "00000002"]
    assert sorted(os.listdir(member(tar))) == ["CF024730", "MD5SUM"]
