"""Index queries and transactions of the lifecycle services (FileCopy, SyncFileStatus, deleter).

Functions take the Index; each write is one transaction. The deleter's transaction
re-checks, under the write lock, that every instance of the study still has a qualifying
copy before it removes anything (the only copy is never deleted).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from archived.index.database import _FILE_SELECT, Index, _file_record
from archived.index.errors import UnknownObjectError
from archived.index.model import FileRecord, FileStatus

# -- FileCopy ---------------------------------------------------------------------------


def files_to_copy(
    index: Index, source_group: str, dest_fs_pk: int, quiet_since: float, limit: int = 10_000
) -> list[FileRecord]:
    """Source copies of instances without an equal copy (MD5, size) on the destination.

    Only series that received no instance after ``quiet_since``; one copy per instance
    (the oldest), ordered by series then file pk.
    """
    rows = index.read().execute(
        _FILE_SELECT
        + """ WHERE fs.fs_group_id = ? AND fs.dirpath NOT LIKE 'tar:%' AND f.file_status >= 0
              AND se.updated_time <= ?
              AND NOT EXISTS (SELECT 1 FROM file c
                              WHERE c.instance_fk = f.instance_fk AND c.filesystem_fk = ?
                                AND c.file_md5 = f.file_md5 AND c.file_size = f.file_size)
            ORDER BY se.pk, f.pk LIMIT ?""",
        (source_group, quiet_since, dest_fs_pk, limit),
    )
    seen: set[str] = set()
    files = []
    for row in rows:
        record = _file_record(row)
        if record.sop_iuid not in seen:
            seen.add(record.sop_iuid)
            files.append(record)
    return files


@dataclass(frozen=True)
class NewCopy:
    """A copy of an indexed instance written by FileCopy (``filepath`` = 'tar!member')."""

    sop_iuid: str
    filepath: str
    tsuid: str
    md5: str
    size: int


def add_copies(
    index: Index, fs_pk: int, copies: Sequence[NewCopy], status: FileStatus
) -> list[int]:
    """Index the members of one tar in one transaction; return the new file pks.

    The same transaction clears FileCopy's retry state of their series (copyretry).
    """
    now = time.time()
    pks = []
    series_pks: set[int] = set()
    with index.write() as conn:
        for copy in copies:
            row = conn.execute(
                """SELECT i.pk, se.study_fk, se.pk FROM instance i
                   JOIN series se ON se.pk = i.series_fk WHERE i.sop_iuid = ?""",
                (copy.sop_iuid,),
            ).fetchone()
            if row is None:
                raise UnknownObjectError(f"instance {copy.sop_iuid} is not in the index")
            cur = conn.execute(
                """INSERT INTO file (instance_fk, filesystem_fk, filepath, file_tsuid, file_md5,
                                     file_size, file_status, created_time)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (row[0], fs_pk, copy.filepath, copy.tsuid, copy.md5, copy.size, int(status), now),
            )
            pks.append(int(cur.lastrowid))  # type: ignore[arg-type]
            conn.execute(
                """INSERT INTO study_on_fs (study_fk, filesystem_fk, access_time)
                   VALUES (?, ?, ?) ON CONFLICT (study_fk, filesystem_fk) DO NOTHING""",
                (row[1], fs_pk, now),
            )
            series_pks.add(row[2])
        conn.executemany(
            "DELETE FROM filecopy_retry WHERE series_fk = ?", [(pk,) for pk in series_pks]
        )
    return pks


# -- SyncFileStatus ---------------------------------------------------------------------


def files_to_check(
    index: Index, fs_pk: int, status: FileStatus, created_before: float, limit: int
) -> list[FileRecord]:
    """Files of one file system in ``status`` created before ``created_before``, oldest first."""
    rows = index.read().execute(
        _FILE_SELECT + " WHERE f.filesystem_fk = ? AND f.file_status = ? AND f.created_time <= ?"
        " ORDER BY f.pk LIMIT ?",
        (fs_pk, int(status), created_before, limit),
    )
    return [_file_record(row) for row in rows]


def files_of_tar(index: Index, fs_pk: int, tar_path: str) -> list[FileRecord]:
    """Every indexed member of one tar (filepath 'tar_path!...'), whatever its status."""
    # A range on the (filesystem_fk, filepath) unique index: '"' sorts right after '!'.
    rows = index.read().execute(
        _FILE_SELECT + " WHERE f.filesystem_fk = ? AND f.filepath >= ? AND f.filepath < ?"
        " ORDER BY f.pk",
        (fs_pk, f"{tar_path}!", f'{tar_path}"'),
    )
    return [_file_record(row) for row in rows]


def set_status(
    index: Index, file_pks: Iterable[int], status: FileStatus, md5_checked: float | None = None
) -> int:
    """Set the status of many files in one transaction; return how many rows changed."""
    pks = list(file_pks)
    with index.write() as conn:
        changed = 0
        for start in range(0, len(pks), 500):
            chunk = pks[start : start + 500]
            cur = conn.execute(
                f"""UPDATE file SET file_status = ?,
                       md5_check_time = COALESCE(?, md5_check_time)
                    WHERE pk IN ({",".join("?" * len(chunk))})""",
                (int(status), md5_checked, *chunk),
            )
            changed += cur.rowcount
    return changed


# -- deleter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyRule:
    """What makes a copy outside the deleted group qualify (DeleteStudyOnlyIf... rules)."""

    group: str | None = None  # ...CopyOnFileSystemOfFileSystemGroup
    read_only: bool = False  # ...CopyOnReadOnlyFileSystem
    archived: bool = False  # ...CopyArchived

    def sql(self) -> tuple[str, tuple[object, ...]]:
        """Conditions on ``c`` (file) and ``cfs`` (its file system) for a qualifying copy."""
        where = "c.file_status >= 0 AND cfs.fs_group_id != ?"
        args: list[object] = []
        if self.group is not None:
            where += " AND cfs.fs_group_id = ?"
            args.append(self.group)
        if self.read_only:
            where += " AND cfs.fs_status = 'RO'"
        if self.archived:
            where += f" AND c.file_status = {int(FileStatus.ARCHIVED)}"
        return where, tuple(args)


@dataclass(frozen=True)
class StudyOnGroup:
    """A study with files on the file systems of one group."""

    pk: int
    study_iuid: str
    access_time: float  # the latest access on any file system of the group
    size: int  # bytes of its files there


def studies_by_access(
    index: Index, group: str, accessed_before: float, limit: int
) -> list[StudyOnGroup]:
    """Studies on the group's file systems not accessed since ``accessed_before``, LRU first."""
    rows = index.read().execute(
        """SELECT st.pk, st.study_iuid, MAX(sof.access_time) AS last,
                  (SELECT COALESCE(SUM(f.file_size), 0) FROM file f
                   JOIN filesystem ffs ON ffs.pk = f.filesystem_fk
                   JOIN instance i ON i.pk = f.instance_fk
                   JOIN series se ON se.pk = i.series_fk
                   WHERE se.study_fk = st.pk AND ffs.fs_group_id = ?)
           FROM study_on_fs sof JOIN filesystem fs ON fs.pk = sof.filesystem_fk
           JOIN study st ON st.pk = sof.study_fk
           WHERE fs.fs_group_id = ?
           GROUP BY st.pk HAVING last <= ? ORDER BY last, st.pk LIMIT ?""",
        (group, group, accessed_before, limit),
    )
    return [StudyOnGroup(*row) for row in rows]


@dataclass(frozen=True)
class StudyCheck:
    """Why a study may or may not leave a group."""

    instances: int
    without_copy: int  # instances lacking a qualifying copy
    committed: int  # instances with a storage commitment
    files: int  # its files on the group

    @property
    def has_copies(self) -> bool:
        return self.instances > 0 and self.without_copy == 0


def check_study(conn: sqlite3.Connection, study_pk: int, group: str, rule: CopyRule) -> StudyCheck:
    where, args = rule.sql()
    row = conn.execute(
        f"""SELECT COUNT(*),
                  COALESCE(SUM(NOT EXISTS (
                      SELECT 1 FROM file c JOIN filesystem cfs ON cfs.pk = c.filesystem_fk
                      WHERE c.instance_fk = i.pk AND {where})), 0),
                  COALESCE(SUM(i.commitment), 0),
                  (SELECT COUNT(*) FROM file f JOIN filesystem fs ON fs.pk = f.filesystem_fk
                   JOIN instance fi ON fi.pk = f.instance_fk
                   JOIN series fse ON fse.pk = fi.series_fk
                   WHERE fse.study_fk = ? AND fs.fs_group_id = ?)
           FROM instance i JOIN series se ON se.pk = i.series_fk WHERE se.study_fk = ?""",
        (group, *args, study_pk, group, study_pk),
    ).fetchone()
    return StudyCheck(*row)


def study_check(index: Index, study_pk: int, group: str, rule: CopyRule) -> StudyCheck:
    return check_study(index.read(), study_pk, group, rule)


def delete_study_from_group(
    index: Index, study_pk: int, group: str, rule: CopyRule, keep_committed: bool
) -> list[FileRecord] | StudyCheck:
    """Remove the study's files and access rows on ``group`` in one transaction.

    Re-checks first, inside the transaction, that every instance has a qualifying copy
    (and, with ``keep_committed``, that none is storage-committed); if not, nothing is
    removed and the check is returned. Returns the removed file rows: the caller unlinks
    their bytes after the commit.
    """
    with index.write() as conn:
        check = check_study(conn, study_pk, group, rule)
        if not check.has_copies or (keep_committed and check.committed):
            return check
        scope = """FROM file f JOIN filesystem fs ON fs.pk = f.filesystem_fk
                   JOIN instance i ON i.pk = f.instance_fk JOIN series se ON se.pk = i.series_fk
                   WHERE se.study_fk = ? AND fs.fs_group_id = ?"""
        removed = [
            _file_record(row)
            for row in conn.execute(
                _FILE_SELECT + " WHERE se.study_fk = ? AND fs.fs_group_id = ?",
                (study_pk, group),
            )
        ]
        conn.execute(f"DELETE FROM file WHERE pk IN (SELECT f.pk {scope})", (study_pk, group))
        conn.execute(
            """DELETE FROM study_on_fs WHERE study_fk = ? AND filesystem_fk IN
               (SELECT pk FROM filesystem WHERE fs_group_id = ?)""",
            (study_pk, group),
        )
    return removed


def tar_path_of(record: FileRecord) -> str:
    """The tar of a member row ('x.tar!member' -> 'x.tar')."""
    return record.filepath.partition("!")[0]


def file_counts_by_fs(index: Index) -> dict[tuple[str, str, FileStatus], int]:
    """Number of files per (file system uuid, its path, status)."""
    rows = index.read().execute(
        """SELECT fs.fs_uuid, fs.dirpath, f.file_status, COUNT(*) FROM file f
           JOIN filesystem fs ON fs.pk = f.filesystem_fk
           GROUP BY fs.pk, f.file_status ORDER BY fs.pk, f.file_status"""
    )
    return {(uuid, path, FileStatus(status)): n for uuid, path, status, n in rows}
