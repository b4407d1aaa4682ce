"""`NAME.tar!MEMBER` paths on a real mount (moto S3 behind it): tars written by Python's
tarfile and by GNU tar, with and without an MD5SUM member, are indexed on close and their
members listed, stat'ed and read like ordinary files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store
from tests.members.support import (
    PREFETCH_NONE,
    make_tar,
    md5,
    md5sum_text,
    member,
    put_tar,
    read_member,
    series,
    tar_status,
    wait_indexed,
)
from tests.mounts import wait_for

USTAR_LONG = "d" * 60 + "/" + "f" * 90  # 151 bytes: ustar's prefix field holds the directory
VERY_LONG = "deep/" + "n" * 200  # one 200-byte component: GNU longname or pax path only
UNICODE = "séries/ünïcode-名前.dcm"  # pax carries UTF-8 names

FORMATS = {
    "ustar": (tarfile.USTAR_FORMAT, [USTAR_LONG]),
    "gnu": (tarfile.GNU_FORMAT, [USTAR_LONG, VERY_LONG]),
    "pax": (tarfile.PAX_FORMAT, [USTAR_LONG, VERY_LONG, UNICODE]),
}


def check_members(tar: Path, files: dict[str, bytes]) -> None:
    """Every member reads back byte for byte, with its size, mode and MD5 attribute."""
    for name, data in files.items():
        path = member(tar, name)
        info = os.stat(path)
        assert stat.S_ISREG(info.st_mode), name
        assert info.st_size == len(data), name
        assert read_member(path) == data, name
        assert os.getxattr(path, "user.hsm.md5").decode() == md5(data), name


@pytest.mark.parametrize("with_md5sum", [True, False], ids=["md5sum", "no-md5sum"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_tarfile_formats_are_indexed_and_readable(
    s3: Store, make_mount: MountFactory, fmt: str, with_md5sum: bool
) -> None:
    tar_format, long_names = FORMATS[fmt]
    files = series(3, 10_000) | {name: os.urandom(777) for name in long_names}
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "2011/8/3/x.tar", make_tar(files, fmt=tar_format, with_md5sum=with_md5sum))

    assert str(tar_status(tar)).startswith("valid: ")
    check_members(tar, files)
    if with_md5sum:
        assert read_member(member(tar, "MD5SUM")) == md5sum_text(files)
    top = {name.split("/")[0] for name in files} | ({"MD5SUM"} if with_md5sum else set())
    assert sorted(os.listdir(member(tar))) == sorted(top)
    assert os.listdir(tar.parent) == ["x.tar"]  # the parent shows the tar, nothing else


@pytest.mark.parametrize("with_md5sum", [True, False], ids=["md5sum", "no-md5sum"])
def test_gnu_tar_written_into_the_mount(
    s3: Store, make_mount: MountFactory, tmp_path: Path, with_md5sum: bool
) -> None:
    src = tmp_path / "src"
    files = series(4, 5_000) | {
        "CF024730/empty": b"",
        VERY_LONG: os.urandom(1234),
        "sub/dir/one.bin": os.urandom(70_000),
    }
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    names = sorted({name.split("/")[0] for name in files})
    if with_md5sum:
        (src / "MD5SUM").write_bytes(md5sum_text(files))
        names.insert(0, "MD5SUM")
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = hsm.mnt / "x.tar"
    subprocess.run(["tar", "-C", str(src), "-cf", str(tar), *names], check=True)
    assert wait_indexed(tar).startswith("valid: ")

    check_members(tar, files)
    listing = subprocess.run(
        ["ls", "-1", str(member(tar))], check=True, capture_output=True, text=True
    ).stdout.split()
    assert listing == sorted(names)
    cat = subprocess.run(
        ["cat", str(member(tar, "sub/dir/one.bin"))], check=True, capture_output=True
    ).stdout
    assert cat == files["sub/dir/one.bin"]
    assert stat.S_ISDIR(os.stat(member(tar, "sub/dir")).st_mode)
    assert os.listdir(member(tar, "sub")) == ["dir"]
    assert os.listdir(hsm.mnt) == ["x.tar"]
    # The same file through the tar root directory and through a NAME.tar!DIR path.
    assert (member(tar) / "sub" / "dir" / "one.bin").read_bytes() == files["sub/dir/one.bin"]
    assert (member(tar, "sub") / "dir" / "one.bin").stat().st_ino == os.stat(
        member(tar, "sub/dir/one.bin")
    ).st_ino


def test_members_appear_once_indexed_even_if_looked_up_before(
    s3: Store, make_mount: MountFactory
) -> None:
    """A reader that looks too early (the tar still open, or not yet indexed) gets ENOENT,
    and the members once the tar is indexed: the early miss is not cached by the kernel."""
    files = series(2, 1000)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = hsm.mnt / "early.tar"
    with open(tar, "wb") as f:
        f.write(make_tar(files))
        f.flush()
        for path in (member(tar), member(tar, "MD5SUM"), member(tar, "CF024730/00000001")):
            assert not os.path.exists(path)
        assert tar_status(tar) is None
    wait_indexed(tar)
    assert sorted(os.listdir(member(tar))) == ["CF024730", "MD5SUM"]
    check_members(tar, files)


def test_rewritten_tar_never_serves_old_or_other_members(
    s3: Store, make_mount: MountFactory
) -> None:
    """A tar written again is indexed again; names the kernel still caches from the old
    index give the new member or ENOENT, never another member's bytes or stale bytes."""
    hsm = make_mount(s3, PREFETCH_NONE)
    first = {"S/a": b"old a" * 100, "S/b": b"old b" * 100}
    tar = put_tar(hsm, "again.tar", make_tar(first, with_md5sum=False))
    for name, data in first.items():  # the kernel now caches these names and pages
        assert read_member(member(tar, name)) == data
    second = {"S/a": b"new a" * 70, "S/aa": b"inserted" * 90, "S/b": b"new b" * 80}
    old_status = tar_status(tar)
    tar.write_bytes(make_tar(second, with_md5sum=False))
    wait_for(lambda: tar_status(tar) != old_status, what="the new index")

    def new_bytes(name: str) -> bool:
        try:
            data = read_member(member(tar, name))
        except FileNotFoundError:
            return False  # a name the kernel still has from the old index, until dropped
        assert data == second[name], name  # never another member's or stale bytes
        return True

    for name in second:
        wait_for(lambda n=name: new_bytes(n), what=f"member {name} of the new index")
    assert sorted(os.listdir(member(tar, "S"))) == ["a", "aa", "b"]


def test_member_inodes_are_stable_across_remount(s3: Store, make_mount: MountFactory) -> None:
    files = series(5, 3000)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "a/b.tar", make_tar(files))
    paths = [member(tar), member(tar, "CF024730"), *(member(tar, n) for n in files)]
    before = [os.stat(p).st_ino for p in paths]
    assert len(set(before)) == len(before)
    assert os.stat(tar).st_ino not in before

    assert hsm.stop() == 0
    hsm.start()
    assert [os.stat(p).st_ino for p in paths] == before
    check_members(tar, files)


def test_bad_md5sum_line_marks_the_tar_invalid_naming_the_member(
    s3: Store, make_mount: MountFactory
) -> None:
    files = series(3, 2000)
    good = md5sum_text(files).decode().splitlines()
    good[1] = "0" * 32 + good[1][32:]  # the second file's line no longer matches its data
    bad_name = list(files)[1]
    data = make_tar({"MD5SUM": ("\n".join(good) + "\n").encode()} | files, with_md5sum=False)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "bad.tar", data)
    status = tar_status(tar)
    assert status is not None and status.startswith("invalid: ")
    assert bad_name in status
    assert bad_name in hsm.log.read_text()  # logged with the member name as well


def test_dcmdump_reads_a_dicom_member(s3: Store, make_mount: MountFactory) -> None:
    sources = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
    files = {f"CF024730/{n:08X}": Path(get_testdata_file(s)).read_bytes()  # type: ignore[arg-type]
             for n, s in enumerate(sources, start=1)}  # fmt: skip
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "2011/8/3/16/745ABFED/CF024730-323397.tar", make_tar(files))
    assert shutil.which("dcmdump") is not None
    for name, data in files.items():
        path = member(tar, name)
        uid = pydicom.dcmread(get_testdata_file(sources[int(name[-1]) - 1])).SOPInstanceUID
        dump = subprocess.run(
            ["dcmdump", "+P", "0008,0018", str(path)], check=True, capture_output=True, text=True
        ).stdout
        assert f"[{uid}]" in dump, dump
        assert pydicom.dcmread(path).SOPInstanceUID == uid
        assert read_member(path) == data
