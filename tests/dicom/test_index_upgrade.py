"""Upgrading a real version-1 index file (built from the version-1 schema text of
index_schema_v1.sql, as archived wrote it) to the current schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from archived.index import NEARLINE_STORAGE, ONLINE_STORAGE, SCHEMA_VERSION, Index
from archived.index import migrations as index_migrations
from archived.index.copyretry import copy_retries, record_copy_failure

V1_SCHEMA = Path(__file__).with_name("index_schema_v1.sql")
STUDY, SERIES, SOP = "1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.1"


def version_1_index(path: Path) -> None:
    """An index as archived with schema version 1 left it: one stored and copied instance."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA.read_text())
    conn.executescript(f"""
        INSERT INTO filesystem VALUES (1, 'fs-online', '{ONLINE_STORAGE}', '/online', 'RW', 1);
        INSERT INTO filesystem VALUES (2, 'fs-tar', '{NEARLINE_STORAGE}', 'tar:/mnt', 'RW', 1);
        INSERT INTO patient (pk, pat_id, pat_name, created_time, updated_time)
            VALUES (1, 'PID1', 'DOE^JOHN', 1, 1);
        INSERT INTO study (pk, patient_fk, study_iuid, num_series, num_instances,
                           created_time, updated_time) VALUES (1, 1, '{STUDY}', 1, 1, 1, 1);
        INSERT INTO series (pk, study_fk, series_iuid, modality, num_instances, created_time,
                            updated_time) VALUES (1, 1, '{SERIES}', 'CT', 1, 1, 1);
        INSERT INTO instance (pk, series_fk, sop_iuid, sop_cuid, created_time, updated_time)
            VALUES (1, 1, '{SOP}', '1.2.840.10008.5.1.4.1.1.2', 1, 1);
        INSERT INTO file (instance_fk, filesystem_fk, filepath, file_tsuid, file_md5,
                          file_size, file_status, created_time)
            VALUES (1, 1, '2024/1/2/10/A/B/C', '1.2.840.10008.1.2.1', '{"0" * 32}', 10, 0, 1),
                   (1, 2, 'x.tar!B/00000001', '1.2.840.10008.1.2.1', '{"0" * 32}', 10, 1, 2);
        INSERT INTO study_on_fs (study_fk, filesystem_fk, access_time) VALUES (1, 1, 5);
        PRAGMA user_version = 1;
    """)  # fmt: skip
    conn.close()


def shape(path: Path) -> dict[str, object]:
    """Every table's columns, indexes and foreign keys (what a migration must reproduce)."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
        return {
            table: (
                conn.execute(f"PRAGMA table_info({table})").fetchall(),
                sorted(r[1:] for r in conn.execute(f"PRAGMA index_list({table})")),
                conn.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            )
            for table in tables
        }
    finally:
        conn.close()


def test_the_version_1_fixture_is_what_version_1_wrote(tmp_path: Path) -> None:
    version_1_index(tmp_path / "v1.sqlite")
    conn = sqlite3.connect(tmp_path / "v1.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "filecopy_retry" not in names and {"file", "series", "stgcmt"} <= names


def test_a_version_1_index_is_upgraded_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    version_1_index(path)
    with Index(path) as index:
        assert index.read().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert index.counts()["study"] == 1
        files = index.files_of_study(STUDY)
        assert [(f.filesystem.group, f.filepath) for f in files] == [
            (ONLINE_STORAGE, "2024/1/2/10/A/B/C"),
            (NEARLINE_STORAGE, "x.tar!B/00000001"),
        ]
        assert copy_retries(index) == {}
        record_copy_failure(index, SERIES, "mount gone", 100.0, lambda n: 160.0)
    with Index(path) as reopened:  # a second open finds version 2 and changes nothing
        assert copy_retries(reopened)[SERIES].failures == 1
    fresh = tmp_path / "fresh.sqlite"
    Index(fresh).close()
    assert shape(path) == shape(fresh)  # the migration builds what schema.sql builds


def test_a_failed_upgrade_leaves_the_version_1_index_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.sqlite"
    version_1_index(path)
    before = shape(path)
    broken = index_migrations.MIGRATIONS[2] + "\nCREATE TABLE file (pk INTEGER);\n"
    monkeypatch.setitem(index_migrations.MIGRATIONS, 2, broken)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        Index(path)
    assert shape(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    monkeypatch.undo()
    with Index(path) as index:  # the real migration still applies afterwards
        assert index.files_of_study(STUDY)
