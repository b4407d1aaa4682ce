"""S3 backend against a real moto endpoint: request counts, verification, outages, URLs."""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

import pytest

from hsmfs.backends import (
    AccessDenied,
    BadBackendURL,
    ObjectStoreError,
    PermanentFailure,
    TemporaryFailure,
    UploadNotVerified,
    is_temp_failure,
    open_backend,
)
from hsmfs.backends.s3 import S3Store
from tests.backends.conftest import SMALL_PARTS, MiB, random_file
from tests.conftest import S3Bucket

# An endpoint that is down must fail within these bounds, not hang.
FAST_FAIL = {"connect_timeout": 1, "read_timeout": 1, "retry_attempts": 3, "retry_deadline": 2}


def s3_store(bucket: S3Bucket, **options: float) -> S3Store:
    store = open_backend(bucket.url("pfx"), **{**SMALL_PARTS, **options})
    assert isinstance(store, S3Store)
    return store


def test_ranged_read_is_exactly_one_get_with_range(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    data = random_file(tmp_path / "series.tar", 12 * MiB)
    with s3_store(s3_bucket) as store:
        store.upload("2011/8/3/series.tar", tmp_path / "series.tar")
        s3_bucket.server.clear()
        with store.open_range("2011/8/3/series.tar", 5 * MiB + 512, 5 * MiB + 1024) as reader:
            assert reader.read() == data[5 * MiB + 512 : 5 * MiB + 1024]
    requests = s3_bucket.server.requests()
    assert len(requests) == 1
    assert requests[0].method == "GET"
    assert requests[0].path == f"/{s3_bucket.name}/pfx/2011/8/3/series.tar"
    assert requests[0].range == f"bytes={5 * MiB + 512}-{5 * MiB + 1023}"


def test_read_from_the_start_to_the_end_is_one_plain_get(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "obj", 3 * MiB)
    with s3_store(s3_bucket) as store:
        store.upload("obj", tmp_path / "obj")
        s3_bucket.server.clear()
        with store.open_range("obj") as reader:
            assert b"".join(reader) == data
    assert s3_bucket.server.count("GET", ranged=False) == 1
    assert len(s3_bucket.server.requests()) == 1


def test_large_upload_is_multipart_and_verified_by_etag(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "big", 17 * MiB)
    with s3_store(s3_bucket) as store:
        info = store.upload("big", tmp_path / "big")
    parts = [r for r in s3_bucket.server.requests("PUT") if "partNumber=" in r.query]
    assert len(parts) == 4  # 5 + 5 + 5 + 2 MiB
    assert s3_bucket.server.count("HEAD") == 1  # the verification
    part_md5s = b"".join(
        hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)
    )
    assert info.etag == f"{hashlib.md5(part_md5s).hexdigest()}-4"
    assert info.metadata["md5"] == hashlib.md5(data).hexdigest()


def test_small_upload_is_one_put(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    data = random_file(tmp_path / "small", 4 * MiB)
    with s3_store(s3_bucket) as store:
        info = store.upload("small", tmp_path / "small")
    assert s3_bucket.server.count("PUT") == 1
    assert info.etag == hashlib.md5(data).hexdigest()


def test_download_uses_parallel_ranged_gets(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    data = random_file(tmp_path / "big", 23 * MiB)
    with s3_store(s3_bucket, transfer_concurrency=3) as store:
        store.upload("big", tmp_path / "big")
        s3_bucket.server.clear()
        store.download("big", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data
    ranges = sorted(r.range or "" for r in s3_bucket.server.requests("GET"))
    assert len(ranges) == math.ceil(23 / 5)
    assert all(r.startswith("bytes=") for r in ranges)


def test_file_changed_during_upload_is_not_verified(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    source = tmp_path / "changing"
    random_file(source, 12 * MiB)
    changed = False

    def change_the_last_part(_: int) -> None:
        # One part at a time (transfer_concurrency=1): the last part is read after this.
        nonlocal changed
        if not changed:
            with open(source, "r+b") as f:
                f.seek(-100, os.SEEK_END)
                f.write(b"\x00" * 100)
            changed = True

    with s3_store(s3_bucket, transfer_concurrency=1) as store:
        with pytest.raises(
            UploadNotVerified, match=r"pfx/changing.*changed during the upload"
        ) as caught:
            store.upload("changing", source, progress=change_the_last_part)
    assert caught.value.exit_code == 65
    assert not is_temp_failure(caught.value)


def test_endpoint_down_fails_in_bounded_time_and_recovers(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    random_file(tmp_path / "obj", 1000)
    with s3_store(s3_bucket, **FAST_FAIL) as store:
        store.upload("obj", tmp_path / "obj")
        with s3_bucket.server.outage():
            for operation in (
                lambda: store.head("obj"),
                lambda: store.open_range("obj", 0, 10),
                lambda: store.download("obj", tmp_path / "back"),
                lambda: store.upload("obj2", tmp_path / "obj"),
                store.ping,
            ):
                started = time.monotonic()
                with pytest.raises(TemporaryFailure, match="unreachable") as caught:
                    operation()
                assert time.monotonic() - started < 10
                assert is_temp_failure(caught.value)
                assert caught.value.exit_code == 75
            assert "unreachable" in (store.statistics()["last_error"] or "")
        # Same store, same port, after the outage: everything works again.
        store.ping()
        info = store.upload("obj2", tmp_path / "obj")
        assert info.size == 1000
        with store.open_range("obj2", 0, 10) as reader:
            assert reader.read() == (tmp_path / "obj").read_bytes()[:10]


def test_hung_endpoint_times_out(s3_bucket: S3Bucket) -> None:
    with s3_store(s3_bucket, **FAST_FAIL) as store:
        store.put_bytes("obj", b"x")
        s3_bucket.server.stall()
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="timed out"):
            store.head("obj")
        elapsed = time.monotonic() - started
        s3_bucket.server.resume()
        assert elapsed <= store.options.call_time_bound + 1  # 2 + 1 + 1 s, plus slack
        assert store.get_bytes("obj") == b"x"


def test_retry_rides_out_a_short_outage(s3_bucket: S3Bucket) -> None:
    import threading

    with s3_store(s3_bucket, retry_attempts=50, retry_max_delay=0.2, retry_deadline=60) as store:
        store.put_bytes("obj", b"still here")
        s3_bucket.server.stop()
        threading.Timer(1.0, s3_bucket.server.start).start()
        assert store.get_bytes("obj") == b"still here"
        assert store.statistics()["retries"] >= 1


def test_reader_resumes_after_a_dropped_connection(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    data = random_file(tmp_path / "big", 64 * MiB)
    with s3_store(s3_bucket) as store:
        store.upload("big", tmp_path / "big")
        s3_bucket.server.clear()
        with store.open_range("big", 0, len(data)) as reader:
            first = reader.read(MiB)
            s3_bucket.server.restart()  # cuts the connection in the middle of the body
            rest = b"".join(reader)
    assert first + rest == data
    gets = s3_bucket.server.requests("GET")
    assert len(gets) >= 2
    assert gets[0].range == f"bytes=0-{len(data) - 1}"
    assert gets[1].range is not None and not gets[1].range.startswith("bytes=0-")


def test_missing_bucket_is_permanent(s3_bucket: S3Bucket) -> None:
    url = s3_bucket.url().replace(s3_bucket.name, "no-such-bucket", 1)
    with open_backend(url, **FAST_FAIL) as store:
        with pytest.raises(PermanentFailure, match=r"no-such-bucket.*does not exist") as caught:
            store.ping()
    assert not is_temp_failure(caught.value)


def test_missing_credentials_say_what_to_do(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with open_backend(s3_bucket.url(), **FAST_FAIL) as store:
        with pytest.raises(AccessDenied, match="AWS_ACCESS_KEY_ID"):
            store.head("x")


def test_describe_masks_secrets(s3_bucket: S3Bucket) -> None:
    url = (
        f"s3://{s3_bucket.name}/p?endpoint=http://user:hunter2@127.0.0.1:9/&region=eu-west-1"
        "&addressing=virtual&verify=false"
    )
    with open_backend(url) as store:
        text = store.describe()
    assert "hunter2" not in text and "user" not in text
    assert "testing-secret" not in text
    assert text == (
        f"s3://{s3_bucket.name}/p/?endpoint=http://***@127.0.0.1:9/&region=eu-west-1"
        "&addressing=virtual&verify=false"
    )


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://x/y", {}, "unknown scheme"),
        ("s3:///prefix", {}, "no bucket"),
        ("s3://b/p?endpoint=http://h&colour=red", {}, "unknown parameter.*colour"),
        ("s3://b/p?addressing=sideways", {}, "addressing=sideways"),
        ("s3://b/p?endpoint=h:9000", {}, "endpoint must be"),
        ("s3://b/p", {"conect_timeout": 3}, "unknown backend option.*conect_timeout"),
        ("s3://b/p", {"read_timeout": "soon"}, "read_timeout='soon' is not a float"),
        ("s3://b/p", {"transfer_concurrency": 20}, "must not exceed max_pool_connections"),
        ("file://host/dir", {}, "file:///ABSOLUTE/DIR"),
    ],
)
def test_bad_urls_and_options(url: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(BadBackendURL, match=message) as caught:
        open_backend(url, **options)
    assert caught.value.exit_code == 64


def test_connection_pool_matches_the_option(s3_bucket: S3Bucket) -> None:
    with s3_store(s3_bucket, max_pool_connections=7, transfer_concurrency=3) as store:
        assert store.client.meta.config.max_pool_connections == 7
        assert store.transfer_config.max_request_concurrency == 3


def test_reader_never_resumes_into_a_replaced_object(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    random_file(tmp_path / "old", 64 * MiB)
    with s3_store(s3_bucket) as store:
        store.upload("obj", tmp_path / "old")
        with store.open_range("obj") as reader:
            reader.read(MiB)
            store.put_bytes("obj", b"a different object")
            s3_bucket.server.restart()  # cut the stream: the reader must ask again
            # It asks with If-Match on the ETag it started with, and S3 refuses, rather
            # than splicing the new object's bytes onto the old one's.
            with pytest.raises(
                ObjectStoreError, match=r"pfx/obj: the object was replaced while it was being read"
            ):
                b"".join(reader)


def test_download_rides_out_a_restart(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    data = random_file(tmp_path / "big", 64 * MiB)
    with s3_store(s3_bucket, download_chunksize=32 * MiB, transfer_concurrency=2) as store:
        store.upload("big", tmp_path / "big")
        s3_bucket.server.clear()
        s3_bucket.server.hold_bodies(after=MiB)  # both ranges stop after their first MiB
        restarted = False

        def restart_once(_: int) -> None:
            nonlocal restarted
            if not restarted:
                s3_bucket.server.restart()  # cuts both ranges in the middle
                restarted = True

        store.download("big", tmp_path / "back", progress=restart_once)
    assert (tmp_path / "back").read_bytes() == data
    starts = sorted(
        int((r.range or "").split("=")[1].split("-")[0]) for r in s3_bucket.server.requests("GET")
    )
    # Range 0 had delivered (at most) its first MiB when the connection was cut: it went
    # on from there, never from 0 again. Range 1 likewise from at most its first MiB.
    assert starts.count(0) == 1
    assert any(0 < start <= MiB for start in starts), starts
    assert all(start <= MiB or 32 * MiB <= start <= 33 * MiB for start in starts), starts


def test_list_pages_through_many_keys(s3_bucket: S3Bucket) -> None:
    with s3_store(s3_bucket) as store:
        store.list_page_size = 2
        keys = [f"2011/8/{n}.tar" for n in range(7)]
        for key in keys:
            store.put_bytes(key, b"x")
        s3_bucket.server.clear()
        assert [info.key for info in store.list_objects("2011/")] == sorted(keys)
    assert s3_bucket.server.count("GET") == 4  # 2 + 2 + 2 + 1


def test_credentials_from_a_profile(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[archive]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s3cr3t\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    with open_backend(s3_bucket.url() + "&profile=archive") as store:
        store.put_bytes("obj", b"via profile")
        assert store.get_bytes("obj") == b"via profile"
        assert "s3cr3t" not in store.describe() and "AKIDEXAMPLE" not in store.describe()
    with pytest.raises(PermanentFailure, match="profile 'nobody' not found"):
        open_backend(s3_bucket.url() + "&profile=nobody")
