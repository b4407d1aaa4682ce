"""Member reads on a real mount over a real (moto) S3 endpoint: resident tars are read
from the cache; a released tar serves a member with one ranged GET of just that member,
prefetches the whole tar when told to, shares one fetch among concurrent readers, and
never serves bytes that fail their MD5."""

from __future__ import annotations

import errno
import io
import os
import platform
import subprocess
from pathlib import Path

import pytest

from hsmfs.tarindex import TarMember, index_tar
from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store, cache_file, hsm_state, hsmctl, wait_state
from tests.members.support import (
    PREFETCH_NONE,
    PREFETCH_WHOLE,
    make_tar,
    md5,
    member,
    object_path,
    put_tar,
    read_member,
    release,
    series,
)
from tests.mounts import wait_for

KiB = 1024
OPENAT = {"x86_64": 257, "aarch64": 56}[platform.machine()]


def members_of(data: bytes) -> dict[str, TarMember]:
    return {m.path: m for m in index_tar(io.BytesIO(data))}


def member_range(m: TarMember) -> str:
    """The Range header of a GET of exactly this member's data."""
    return f"bytes={m.data_offset}-{m.data_offset + m.size - 1}"


def test_resident_tar_is_read_from_the_cache(s3: Store, make_mount: MountFactory) -> None:
    files = series(20, 50 * KiB)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "2011/8/res.tar", make_tar(files))
    wait_state(tar, "archived")
    s3.bucket.server.clear()  # type: ignore[union-attr]
    for name, data in files.items():
        assert read_member(member(tar, name)) == data
        assert os.getxattr(member(tar, name), "user.hsm.state") == b"archived"
    assert s3.bucket.server.requests() == []  # type: ignore[union-attr]


def test_released_member_read_is_one_ranged_get_of_that_member(
    s3: Store, make_mount: MountFactory
) -> None:
    files = series(8, 300 * KiB) | {"CF024730/BIG": os.urandom(512 * KiB)}
    data = make_tar(files)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "2011/8/rel.tar", data)
    release(tar)
    server = s3.bucket.server  # type: ignore[union-attr]
    server.clear()

    # Names, attributes and MD5s come from the catalog: no request at all.
    assert sorted(os.listdir(member(tar, "CF024730"))) == sorted(n[9:] for n in files)
    for name, content in files.items():
        assert os.stat(member(tar, name)).st_size == len(content)
        assert os.getxattr(member(tar, name), "user.hsm.md5").decode() == md5(content)
        assert os.getxattr(member(tar, name), "user.hsm.state") == b"released"
    assert server.requests() == []

    assert read_member(member(tar, "CF024730/BIG")) == files["CF024730/BIG"]
    key = object_path(s3, tar, hsm)
    gets = server.requests("GET")
    assert [(r.path, r.range) for r in gets] == [
        (key, member_range(members_of(data)["CF024730/BIG"]))
    ]
    assert server.count("GET", ranged=False) == 0
    assert hsm_state(tar) == "released"  # member_prefetch = "none": nothing else fetched
    assert not cache_file(hsm, tar).exists()

    # The next member is one more ranged GET of just that member.
    assert read_member(member(tar, "CF024730/00000003")) == files["CF024730/00000003"]
    assert [r.range for r in server.requests("GET")][1:] == [
        member_range(members_of(data)["CF024730/00000003"])
    ]
    assert server.count("GET", ranged=False) == 0


def test_prefetch_whole_stages_the_tar_after_the_first_member(
    s3: Store, make_mount: MountFactory
) -> None:
    files = series(30, 200 * KiB)
    data = make_tar(files)
    hsm = make_mount(s3, PREFETCH_WHOLE)
    tar = put_tar(hsm, "2011/8/pre.tar", data)
    release(tar)
    server = s3.bucket.server  # type: ignore[union-attr]
    server.clear()

    first = "CF024730/00000001"
    assert read_member(member(tar, first)) == files[first]
    wait_state(tar, "archived")  # the background stage brought the whole tar back
    assert cache_file(hsm, tar).read_bytes() == data
    member_get = [
        r for r in server.requests("GET") if r.range == member_range(members_of(data)[first])
    ]
    assert len(member_get) == 1  # the first member came alone, not after the whole tar
    server.clear()
    for name, content in files.items():  # the rest of the series is read from the cache
        assert read_member(member(tar, name)) == content
    assert server.requests("GET") == []


def test_reading_every_member_of_a_released_tar_in_order(
    s3: Store, make_mount: MountFactory
) -> None:
    files = series(40, 100 * KiB) | series(3, 2 * 1024 * KiB, prefix="LARGE")
    hsm = make_mount(s3, PREFETCH_WHOLE)
    tar = put_tar(hsm, "2011/8/all.tar", make_tar(files))
    release(tar)
    for name, content in files.items():
        assert read_member(member(tar, name)) == content, name
    wait_state(tar, "archived")


def test_a_tar_with_an_open_member_is_not_released(s3: Store, make_mount: MountFactory) -> None:
    files = series(3, 100 * KiB)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "2011/8/open.tar", make_tar(files))
    wait_state(tar, "archived")
    name = "CF024730/00000002"
    with open(member(tar, name), "rb") as reader:
        result = hsmctl("release", tar)
        assert result.returncode == 1
        assert f"{tar}: not released: it is open" in result.stdout
        assert hsm_state(tar) == "archived" and cache_file(hsm, tar).exists()
        assert reader.read() == files[name]
    # Closed (the kernel's release of the handle follows close() asynchronously): now it may go.
    wait_for(lambda: hsmctl("release", tar).returncode == 0, what="release after close")
    assert hsm_state(tar) == "released"


def _in_open(pid: int) -> bool:
    """Whether process `pid` is blocked in openat (waiting for the daemon's answer)."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == str(OPENAT)
    except (FileNotFoundError, IndexError):
        return False


def test_concurrent_readers_of_one_member_share_one_fetch(
    s3: Store, make_mount: MountFactory
) -> None:
    files = series(4, 400 * KiB)
    data = make_tar(files)
    hsm = make_mount(s3, PREFETCH_NONE)
    tar = put_tar(hsm, "2011/8/conc.tar", data)
    release(tar)
    server = s3.bucket.server  # type: ignore[union-attr]
    server.clear()
    name = "CF024730/00000002"
    path = member(tar, name)
    os.stat(path)  # looked up before the endpoint stalls

    server.stall()  # the first fetch hangs until every reader is waiting on it
    try:
        readers = [subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) for _ in range(6)]
        wait_for(lambda: server.count("GET") >= 1, what="the member's GET")
        wait_for(lambda: all(_in_open(r.pid) for r in readers), what="every reader in open()")
        assert server.count("GET") == 1
    finally:
        server.resume()
    for reader in readers:
        out, _ = reader.communicate(timeout=120)
        assert reader.returncode == 0 and out == files[name]
    assert [r.range for r in server.requests("GET")] == [member_range(members_of(data)[name])]


@pytest.mark.parametrize("config", [PREFETCH_NONE, PREFETCH_WHOLE], ids=["none", "whole"])
def test_damaged_object_fails_with_eio_and_the_tar_is_lost(
    s3: Store, make_mount: MountFactory, config: str
) -> None:
    files = {"S/small": os.urandom(10 * KiB), "S/big": os.urandom(600 * KiB), "S/z": b"z" * 99}
    data = make_tar(files)
    big = members_of(data)["S/big"]
    assert big.data_offset < len(data) // 2 < big.data_offset + big.size  # damage() hits it
    hsm = make_mount(s3, config)
    tar = put_tar(hsm, "2011/8/rot.tar", data)
    release(tar)
    s3.damage("2011/8/rot.tar")

    with pytest.raises(OSError) as caught:
        read_member(member(tar, "S/big"))
    assert caught.value.errno == errno.EIO
    wait_state(tar, "lost")
    assert os.getxattr(member(tar, "S/small"), "user.hsm.state") == b"lost"
    for name in files:  # a lost tar serves nothing, not even its undamaged members
        with pytest.raises(OSError) as caught:
            read_member(member(tar, name))
        assert caught.value.errno == errno.EIO
    assert "S/big" in hsm.log.read_text()
