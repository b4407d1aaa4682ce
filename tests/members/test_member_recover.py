"""hsmfs recover from the bucket alone (state and cache gone) keeps every member path
working: from the snapshot of a clean unmount, and from object metadata only."""

from __future__ import annotations

import os
import tarfile

import pytest

from tests.hsm.conftest import MountFactory
from tests.hsm.support import Store, hsm_state, hsmfs_cli
from tests.members.support import (
    PREFETCH_NONE,
    make_tar,
    md5,
    md5sum_text,
    member,
    object_path,
    put_tar,
    read_member,
    release,
    series,
    tar_status,
)
from tests.mounts import HsmMount

SNAPSHOT_KEY = ".hsmfs/catalog.mdb"


def recover_into(store: Store, make_mount: MountFactory, name: str) -> HsmMount:
    target = make_mount(store, PREFETCH_NONE, name=name, start=False)
    result = hsmfs_cli(
        "recover", "--backend", store.url, "--state", target.state, "--cache", target.cache
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target.start()


@pytest.mark.parametrize("source", ["snapshot", "metadata"])
def test_member_paths_survive_recover(s3: Store, make_mount: MountFactory, source: str) -> None:
    good = series(6, 20_000) | {"deep/" + "n" * 150: os.urandom(5000)}
    other = series(3, 7000, prefix="SECOND")
    bad_files = series(2, 1000, prefix="BAD")
    bad_md5sum = md5sum_text(bad_files).replace(md5(bad_files["BAD/00000002"]).encode(), b"0" * 32)
    tars = {
        "2011/8/3/16/745ABFED/CF024730-323397.tar": (make_tar(good), good),
        "2011/8/3/16/745ABFED/SECOND-1.tar": (make_tar(other, fmt=tarfile.GNU_FORMAT), other),
        "2011/8/bad.tar": (make_tar({"MD5SUM": bad_md5sum} | bad_files, with_md5sum=False), {}),
    }
    old = make_mount(s3, PREFETCH_NONE, name="old")
    for path, (data, _) in tars.items():
        put_tar(old, path, data)
    for path in tars:
        release(old.mnt / path)
    assert old.stop() == 0  # a clean unmount leaves a catalog snapshot in the bucket
    client = s3.bucket.client()  # type: ignore[union-attr]
    try:
        if source == "metadata":
            client.delete_object(Bucket=s3.bucket_name, Key=s3.full_key(SNAPSHOT_KEY))  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]

    new = recover_into(s3, make_mount, "new")
    server = s3.bucket.server  # type: ignore[union-attr]
    for path, (_, files) in tars.items():
        tar = new.mnt / path
        assert hsm_state(tar) == "released"
        server.clear()
        for name, content in files.items():
            assert os.getxattr(member(tar, name), "user.hsm.md5").decode() == md5(content)
            assert read_member(member(tar, name)) == content
        assert server.count("GET", ranged=False, path=object_path(s3, tar, new)) == 0
        assert server.count("GET", ranged=True, path=object_path(s3, tar, new)) == len(files)
    assert str(tar_status(new.mnt / "2011/8/3/16/745ABFED/SECOND-1.tar")).startswith("valid: ")
    bad = str(tar_status(new.mnt / "2011/8/bad.tar"))
    assert bad.startswith("invalid: ") and "BAD/00000002" in bad
    listing = os.listdir(member(new.mnt / "2011/8/3/16/745ABFED/CF024730-323397.tar"))
    assert sorted(listing) == ["CF024730", "MD5SUM", "deep"]
