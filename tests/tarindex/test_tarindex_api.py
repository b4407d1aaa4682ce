"""The package's public surface, progress reports, and the read-every-byte-once promise."""

from __future__ import annotations

import errno
import inspect
import io
import os

import pytest

import hsmfs.tarindex
from hsmfs.tarindex import SourceReadError, TarIndexError, index_tar
from tests.tarindex.tarindex_builders import BLOCK, build_dicom_like_tar

FILES = {f"CF024730/{n:08X}": os.urandom(20_000 + n) for n in range(40)}


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(hsmfs.tarindex) if not name.startswith("_")}
    assert set(hsmfs.tarindex.__all__) == public
    for name in hsmfs.tarindex.__all__:
        value = getattr(hsmfs.tarindex, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{name} has no docstring"


def test_errors_share_one_base() -> None:
    for name in ("SourceReadError", "RecordFormatError", "MemberLookupError"):
        assert issubclass(getattr(hsmfs.tarindex, name), TarIndexError)


class CountingFile(io.BytesIO):
    """A file object that counts the bytes handed out by read()."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_every_byte_is_read_once() -> None:
    tar = build_dicom_like_tar(FILES)
    source = CountingFile(tar)
    index = index_tar(source)
    assert index.invalid is None
    # tarfile reads the first end-of-archive block, and the end check reads it again.
    assert source.bytes_read == len(tar) + BLOCK


def test_headers_only_reads_little() -> None:
    tar = build_dicom_like_tar(FILES)
    source = CountingFile(tar)
    index_tar(source, verify=False)
    assert source.bytes_read < len(tar) // 10


def test_progress_is_monotonic_and_complete() -> None:
    tar = build_dicom_like_tar(FILES)
    reports: list[tuple[int, int]] = []
    index_tar(io.BytesIO(tar), progress=lambda done, total: reports.append((done, total)))
    assert len(reports) >= len(FILES)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert {total for _, total in reports} == {len(tar)}
    assert reports[-1] == (len(tar), len(tar))


class FailingFile(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 30_000:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(size)


def test_io_errors_raise_source_read_error() -> None:
    with pytest.raises(SourceReadError, match=r"cannot read the tar: .*Input/output error"):
        index_tar(FailingFile(build_dicom_like_tar(FILES)))


def test_a_real_file_on_disk(tmp_path: object) -> None:
    path = tmp_path / "t.tar"  # type: ignore[operator]
    path.write_bytes(build_dicom_like_tar(FILES))
    with path.open("rb") as tar:
        index = index_tar(tar)
    assert index.invalid is None and len(index) == len(FILES) + 2
