"""ONLINE layout and durable writes: Java hash names, collisions, MD5, no leftovers."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from archived.storage import (
    StorageError,
    date_dir,
    hash_name,
    instance_dir,
    java_string_hash,
    write_instance,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a", 97),
        ("hello", 99162322),
        # printed by Java 17's String.hashCode for these UIDs
        ("1.2.840.10008.1.1", -1009688372),
        ("1.2.826.0.1.3680043.8.498.12345678901234567890", -99255161),
        # a well-known Java overflow: this string hashes to Integer.MIN_VALUE
        ("polygenelubricants", -(1 << 31)),
        ("Aa", 2112),
        ("BB", 2112),
        # one code point, two UTF-16 code units: 0xD83D * 31 + 0xDE00
        ("\U0001f600", 0xD83D * 31 + 0xDE00),
    ],
)
def test_java_string_hash_matches_java(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def test_hash_name_is_eight_upper_case_hex_of_the_unsigned_code() -> None:
    assert hash_name(-1) == "FFFFFFFF"
    assert hash_name(0x1A) == "0000001A"
    assert hash_name("hello") == f"{99162322:08X}"


def test_date_dir_has_no_zero_padding() -> None:
    when = time.mktime((2011, 8, 3, 6, 5, 0, 0, 0, -1))
    assert date_dir(when) == "2011/8/3/6"


def test_instance_dir_uses_study_and_series_hashes() -> None:
    when = time.mktime((2024, 1, 2, 3, 0, 0, 0, 0, -1))
    assert instance_dir("1.2.3", "1.2.3.4", when) == (
        f"2024/1/2/3/{hash_name('1.2.3')}/{hash_name('1.2.3.4')}"
    )


def test_write_instance_is_complete_with_md5_and_no_temporary_files(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    stored = write_instance(tmp_path, "2024/1/2/3/AAAA/BBBB", "1.2.3.4.5", [data[:100], data[100:]])
    assert stored.filepath == f"2024/1/2/3/AAAA/BBBB/{hash_name('1.2.3.4.5')}"
    assert (tmp_path / stored.filepath).read_bytes() == data
    assert stored.md5 == hashlib.md5(data).hexdigest()
    assert stored.size == len(data)
    assert os.listdir(tmp_path / "2024/1/2/3/AAAA/BBBB") == [hash_name("1.2.3.4.5")]


def test_name_collision_increments_the_hash(tmp_path: Path) -> None:
    first = write_instance(tmp_path, "d", "1.2.3", [b"one"])
    second = write_instance(tmp_path, "d", "1.2.3", [b"two"])
    assert first.filepath == f"d/{hash_name('1.2.3')}"
    assert second.filepath == f"d/{hash_name(java_string_hash('1.2.3') + 1)}"
    assert (tmp_path / first.filepath).read_bytes() == b"one"
    assert (tmp_path / second.filepath).read_bytes() == b"two"


def test_collision_probe_skips_every_taken_name(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    code = java_string_hash("1.2.3")
    for taken in (code, code + 1, code + 2):
        (tmp_path / "d" / hash_name(taken)).write_bytes(b"x")
    stored = write_instance(tmp_path, "d", "1.2.3", [b"y"])
    assert stored.filepath == f"d/{hash_name(code + 3)}"


def test_failure_while_writing_leaves_nothing(tmp_path: Path) -> None:
    def chunks():
        yield b"partial"
        raise OSError(5, "simulated I/O error from the source")

    with pytest.raises(StorageError, match=r"1\.2\.3"):
        write_instance(tmp_path, "d", "1.2.3", chunks())
    assert os.listdir(tmp_path / "d") == []
