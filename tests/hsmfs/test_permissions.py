"""Permission checks under default_permissions, by a non-root user in a child process.

The child opens the mount's root while still root (pytest's temporary directories are
private to root), then drops to an unprivileged uid and works relative to that fd.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

USER = 4321
GROUP = 4322

_CHILD = textwrap.dedent(
    """
    import json, os, sys
    root = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    os.setgroups([])
    os.setresgid({group}, {group}, {group})
    os.setresuid({user}, {user}, {user})
    os.fchdir(root)
    results = {{}}
    def attempt(name, func, *args):
        try:
            func(*args)
            results[name] = 0
        except OSError as exc:
            results[name] = exc.errno
    def read(path):
        with open(path, "rb") as f:
            f.read()
    def write(path):
        with open(path, "ab") as f:
            f.write(b"x")
    def create(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    attempt("read_secret", read, "secret")
    attempt("read_public", read, "public")
    attempt("write_public", write, "public")
    attempt("write_shared", write, "shared")
    attempt("create_in_closed", create, "closed/new")
    attempt("list_closed", os.listdir, "private")
    attempt("enter_private", os.stat, "private/inside")
    attempt("create_in_open", create, "open/mine")
    attempt("mkdir_in_open", os.mkdir, "open/mydir")
    attempt("chmod_public", os.chmod, "public", 0o777)
    attempt("chmod_mine", os.chmod, "open/mine", 0o600)
    attempt("chown_mine", os.chown, "open/mine", 0, 0)
    attempt("utime_public_explicit", os.utime, "public", (1, 1))
    attempt("utime_public_now", os.utime, "public")
    attempt("truncate_public", os.truncate, "public", 0)
    attempt("unlink_in_sticky", os.unlink, "sticky/roots")
    attempt("unlink_in_closed", os.unlink, "closed/file")
    attempt("rename_in_closed", os.rename, "closed/file", "closed/file2")
    attempt("setxattr_public", os.setxattr, "public", "user.k", b"v")
    attempt("getxattr_public", os.getxattr, "public", "user.hsm.state")
    attempt("exec_noexec", os.execv, "script", ["script"])
    print(json.dumps(results))
    """
).format(user=USER, group=GROUP)


def run_as_user(mnt: Path) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(mnt)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_unprivileged_user_is_held_to_the_mode_bits(mnt: Path) -> None:
    import errno

    (mnt / "secret").write_bytes(b"s")
    os.chmod(mnt / "secret", 0o600)
    (mnt / "public").write_bytes(b"p")
    os.chmod(mnt / "public", 0o644)
    (mnt / "shared").write_bytes(b"")
    os.chmod(mnt / "shared", 0o666)
    (mnt / "script").write_bytes(b"#!/bin/sh\nexit 0\n")
    os.chmod(mnt / "script", 0o644)
    (mnt / "closed").mkdir(mode=0o755)
    (mnt / "closed" / "file").write_bytes(b"")
    (mnt / "private").mkdir()
    os.chmod(mnt / "private", 0o700)
    (mnt / "private" / "inside").write_bytes(b"")
    (mnt / "open").mkdir()
    os.chmod(mnt / "open", 0o777)
    (mnt / "sticky").mkdir()
    os.chmod(mnt / "sticky", 0o1777)
    (mnt / "sticky" / "roots").write_bytes(b"")

    results = run_as_user(mnt)

    assert results == {
        "read_secret": errno.EACCES,
        "read_public": 0,
        "write_public": errno.EACCES,
        "write_shared": 0,
        "create_in_closed": errno.EACCES,
        "list_closed": errno.EACCES,
        "enter_private": errno.EACCES,
        "create_in_open": 0,
        "mkdir_in_open": 0,
        "chmod_public": errno.EPERM,
        "chmod_mine": 0,
        "chown_mine": errno.EPERM,
        "utime_public_explicit": errno.EPERM,
        "utime_public_now": errno.EACCES,
        "truncate_public": errno.EACCES,
        "unlink_in_sticky": errno.EPERM,
        "unlink_in_closed": errno.EACCES,
        "rename_in_closed": errno.EACCES,
        "setxattr_public": errno.EACCES,
        "getxattr_public": 0,
        "exec_noexec": errno.EACCES,
    }
    # What the user created is theirs; nothing the user was refused changed.
    st = os.stat(mnt / "open" / "mine")
    assert (st.st_uid, st.st_gid) == (USER, GROUP)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (os.stat(mnt / "open" / "mydir").st_uid, os.stat(mnt / "open" / "mydir").st_gid) == (
        USER,
        GROUP,
    )
    assert (mnt / "public").read_bytes() == b"p"
    assert (mnt / "shared").read_bytes() == b"x"
    assert stat.S_IMODE(os.stat(mnt / "public").st_mode) == 0o644
    assert (mnt / "sticky" / "roots").exists()
    assert sorted(os.listdir(mnt / "closed")) == ["file"]


def test_new_entries_in_setgid_directory_take_its_group(mnt: Path) -> None:
    (mnt / "g").mkdir()
    os.chown(mnt / "g", 0, 777)
    os.chmod(mnt / "g", 0o2775)
    (mnt / "g" / "f").write_bytes(b"")
    (mnt / "g" / "sub").mkdir()
    assert os.stat(mnt / "g" / "f").st_gid == 777
    sub = os.stat(mnt / "g" / "sub")
    assert sub.st_gid == 777
    assert sub.st_mode & stat.S_ISGID
    os.symlink("f", mnt / "g" / "link")
    assert os.lstat(mnt / "g" / "link").st_gid == 777
