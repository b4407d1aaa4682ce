"""Schema versions of the index and the upgrade path between them.

Change log:
  1  initial schema: filesystem, patient, study, series, instance, file, study_on_fs,
     stgcmt (schema.sql).
  2  filecopy_retry: FileCopy's retry state of failed series (failures, next attempt,
     error), which was kept in memory and lost on a restart.

A new version adds ``MIGRATIONS[n]`` (the SQL that turns version n-1 into n) and updates
schema.sql, which always describes the newest version in full.
"""

from __future__ import annotations

import sqlite3
from importlib import resources

from archived.index.errors import SchemaVersionError

SCHEMA_VERSION = 2

# version -> SQL upgrading the database from version-1 to version. Written out in full
# (never read from schema.sql, which moves on with later versions).
MIGRATIONS: dict[int, str] = {
    2: """
CREATE TABLE filecopy_retry (
    series_fk     INTEGER PRIMARY KEY REFERENCES series (pk) ON DELETE CASCADE,
    failures      INTEGER NOT NULL CHECK (failures >= 1),
    next_attempt  REAL,
    error         TEXT NOT NULL,
    failed_time   REAL NOT NULL
);
""",
}


def schema_sql() -> str:
    return resources.files("archived.index").joinpath("schema.sql").read_text("utf-8")


def upgrade(conn: sqlite3.Connection, name: str) -> int:
    """Bring the database to SCHEMA_VERSION; return the version it had before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{name}: index schema version {found} is newer than this archived "
                f"supports ({SCHEMA_VERSION}); upgrade archived"
            )
        if found == 0:
            for statement in _statements(schema_sql()):
                conn.execute(statement)
        else:
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]
