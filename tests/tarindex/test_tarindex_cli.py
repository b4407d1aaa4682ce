"""python -m hsmfs.tarindex: one line per tar, documented exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hsmfs.tarindex import index_tar
from tests.tarindex.tarindex_builders import build_dicom_like_tar, md5sum_text

FILES = {f"CF024730/{n:08X}": os.urandom(1000) for n in range(3)}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmfs.tarindex", *args], capture_output=True, text=True
    )


def test_valid_invalid_and_unreadable(tmp_path: Path) -> None:
    good = tmp_path / "good.tar"
    good.write_bytes(build_dicom_like_tar(FILES))
    result = run(str(good))
    assert result.returncode == 0
    file_bytes = sum(map(len, FILES.values())) + len(md5sum_text(FILES))
    assert result.stdout == f"{good}: valid, 4 files, {file_bytes} bytes, MD5SUM checked\n"

    bad = tmp_path / "bad.tar"
    damaged = bytearray(good.read_bytes())
    with good.open("rb") as tar:
        victim = index_tar(tar).lookup("CF024730/00000002")
    assert victim is not None
    damaged[victim.data_offset + 10] ^= 1
    bad.write_bytes(bytes(damaged))
    result = run(str(good), str(bad))
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == f"{bad}: invalid: MD5 mismatch for CF024730/00000002"

    result = run(str(tmp_path / "missing.tar"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{tmp_path / 'missing.tar'}: cannot read: ")
    assert "Traceback" not in result.stderr


def test_list_prints_every_member(tmp_path: Path) -> None:
    good = tmp_path / "good.tar"
    good.write_bytes(build_dicom_like_tar(FILES))
    lines = run("--list", str(good)).stdout.splitlines()
    assert [line.split()[-1] for line in lines[:-1]] == ["MD5SUM", "CF024730/", *FILES]
