"""The DICOM index: SQLite in WAL mode, one connection per thread, serialized writers.

Concurrency: pynetdicom serves each association on its own thread, so every thread gets
its own connection (threading.local). Writers take ``BEGIN IMMEDIATE`` under one
in-process lock, which keeps write transactions short and ordered; readers never block
(WAL). Other processes (archivectl, the lifecycle services) may open the same file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from archived.index.errors import UnknownFileSystemError, UnknownObjectError
from archived.index.migrations import upgrade
from archived.index.model import (
    NEARLINE_STORAGE,
    ONLINE_STORAGE,
    FileRecord,
    FileStatus,
    FileSystemRecord,
    FileSystemSpec,
    InstanceAttributes,
    NewFile,
    NewInstance,
    StoreOutcome,
)

BUSY_TIMEOUT_MS = 30_000

_FILE_SELECT = """
SELECT f.pk, i.sop_iuid, i.sop_cuid, se.series_iuid, st.study_iuid,
       fs.pk, fs.fs_uuid, fs.fs_group_id, fs.dirpath, fs.fs_status,
       f.filepath, f.file_tsuid, f.file_md5, f.file_size, f.file_status,
       f.md5_check_time, f.created_time
FROM file f
JOIN filesystem fs ON fs.pk = f.filesystem_fk
JOIN instance i ON i.pk = f.instance_fk
JOIN series se ON se.pk = i.series_fk
JOIN study st ON st.pk = se.study_fk
"""


def _file_record(row: Sequence) -> FileRecord:
    fs = FileSystemRecord(row[5], row[6], row[7], row[8], row[9])
    return FileRecord(
        pk=row[0], sop_iuid=row[1], sop_cuid=row[2], series_iuid=row[3], study_iuid=row[4],
        filesystem=fs, filepath=row[10], tsuid=row[11], md5=row[12], size=row[13],
        status=FileStatus(row[14]), md5_check_time=row[15], created_time=row[16],
    )  # fmt: skip


def _join_values(existing: str, value: str) -> str:
    """Add ``value`` to a backslash-separated set (ModalitiesInStudy, SOPClassesInStudy)."""
    if not value:
        return existing
    values = existing.split("\\") if existing else []
    return existing if value in values else "\\".join([*values, value])


class Index:
    """The archive's index of patients, studies, series, instances and their files."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        upgrade(conn, str(self.path))

    # -- connections and transactions ---------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )  # fmt: skip
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a commit is on disk before the peer hears Success.
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception.

        ``durable=False``: the commit does not wait for the disk (synchronous=NORMAL);
        it becomes durable with the next ``sync_wal`` or durable commit.
        """
        with self._write_lock:
            conn = self._conn()
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")

    def read(self) -> sqlite3.Connection:
        """This thread's connection, for queries (autocommit: each SELECT sees the latest)."""
        return self._conn()

    def close(self) -> None:
        """Close every thread's connection (call once no handler runs any more)."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- file systems -------------------------------------------------------------------

    def mirror_filesystems(self, specs: Iterable[FileSystemSpec]) -> None:
        """Insert or update file systems from the configuration, matched by uuid.

        File systems no longer configured keep their rows (files still refer to them)
        but become read-only.
        """
        now = time.time()
        specs = list(specs)
        with self.write() as conn:
            for spec in specs:
                conn.execute(
                    """INSERT INTO filesystem (fs_uuid, fs_group_id, dirpath, fs_status,
                                               updated_time)
                       VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT (fs_uuid) DO UPDATE SET
                         fs_group_id = excluded.fs_group_id, dirpath = excluded.dirpath,
                         fs_status = excluded.fs_status, updated_time = excluded.updated_time
                       WHERE fs_group_id != excluded.fs_group_id
                          OR dirpath != excluded.dirpath OR fs_status != excluded.fs_status""",
                    (spec.uuid, spec.group, spec.path, spec.status, now),
                )
            known = [spec.uuid for spec in specs]
            marks = ",".join("?" * len(known))
            conn.execute(
                f"UPDATE filesystem SET fs_status = 'RO', updated_time = ? "
                f"WHERE fs_status != 'RO' AND fs_uuid NOT IN ({marks})",
                (now, *known),
            )

    def filesystems(self, group: str | None = None) -> list[FileSystemRecord]:
        sql = "SELECT pk, fs_uuid, fs_group_id, dirpath, fs_status FROM filesystem"
        args: tuple = ()
        if group is not None:
            sql += " WHERE fs_group_id = ?"
            args = (group,)
        return [FileSystemRecord(*row) for row in self.read().execute(sql + " ORDER BY pk", args)]

    def filesystem(self, uuid: str) -> FileSystemRecord:
        row = (
            self.read()
            .execute(
                "SELECT pk, fs_uuid, fs_group_id, dirpath, fs_status FROM filesystem "
                "WHERE fs_uuid = ?",
                (uuid,),
            )
            .fetchone()
        )
        if row is None:
            raise UnknownFileSystemError(
                f"file system {uuid} is not in the index; add it with `archivectl fs add` "
                "and restart archived"
            )
        return FileSystemRecord(*row)

    # -- storing instances --------------------------------------------------------------

    def instance_exists(self, sop_iuid: str) -> bool:
        row = self.read().execute("SELECT 1 FROM instance WHERE sop_iuid = ?", (sop_iuid,))
        return row.fetchone() is not None

    def store_instance(
        self,
        attrs: InstanceAttributes,
        new_file: NewFile,
        *,
        src_aet: str = "",
        replace: bool = False,
        now: float | None = None,
        durable: bool = True,
    ) -> StoreOutcome:
        """Index a received instance and its first file in one transaction.

        A SOP Instance UID already indexed is ignored (``replace=False``) or has its
        attributes updated and its previous files superseded (``replace=True``).
        ``durable=False`` commits without syncing the WAL (the opt-in early Success of
        archived.dicom.groupcommit); ``sync_wal`` makes such commits durable later.
        """
        now = time.time() if now is None else now
        with self.write(durable=durable) as conn:
            return self._store_one(conn, attrs, new_file, src_aet, replace, now)

    def store_instances(
        self, batch: Sequence[NewInstance], now: float | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> list[StoreOutcome | Exception]:  # fmt: skip
        """Index several instances in one transaction (group commit); a row that fails
        (a constraint, say) fails alone, under its own savepoint. ``before_commit`` runs
        last inside the transaction (the group's fsyncs finish there); if it raises,
        nothing is committed."""
        now = time.time() if now is None else now
        results: list[StoreOutcome | Exception] = []
        with self.write() as conn:
            for item in batch:
                conn.execute("SAVEPOINT one_instance")
                try:
                    outcome = self._store_one(
                        conn, item.attrs, item.new_file, item.src_aet, item.replace, now
                    )
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO one_instance")
                    conn.execute("RELEASE one_instance")
                    results.append(exc)
                    continue
                conn.execute("RELEASE one_instance")
                results.append(outcome)
            if before_commit is not None:
                before_commit()
        return results

    def sync_wal(self) -> None:
        """Make every commit so far durable: fsync the write-ahead log (and the database
        file, which a checkpoint may have written). Used after ``durable=False`` commits."""
        for path in (self.path.with_name(self.path.name + "-wal"), self.path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _store_one(
        self, conn: sqlite3.Connection, attrs: InstanceAttributes, new_file: NewFile,
        src_aet: str, replace: bool, now: float,
    ) -> StoreOutcome:  # fmt: skip
        study_pk = self._upsert_study(conn, attrs, now)
        series_pk = self._upsert_series(conn, attrs, study_pk, src_aet, now)
        row = conn.execute(
            "SELECT pk, series_fk FROM instance WHERE sop_iuid = ?", (attrs.sop_iuid,)
        ).fetchone()
        replaced: tuple[FileRecord, ...] = ()
        if row is None:
            instance_pk = self._insert_instance(conn, attrs, series_pk, study_pk, now)
        elif not replace:
            return StoreOutcome(instance_pk=row[0], file_pk=None, ignored=True)
        else:
            instance_pk = row[0]
            replaced = self._supersede(conn, instance_pk, row[1], attrs, series_pk, now)
        file_pk = self._insert_file(conn, instance_pk, new_file, now)
        conn.execute(
            """INSERT INTO study_on_fs (study_fk, filesystem_fk, access_time)
               VALUES (?, ?, ?)
               ON CONFLICT (study_fk, filesystem_fk) DO UPDATE SET
                 access_time = excluded.access_time""",
            (study_pk, new_file.filesystem_pk, now),
        )
        return StoreOutcome(instance_pk, file_pk, ignored=False, replaced_files=replaced)

    def _upsert_study(self, conn: sqlite3.Connection, a: InstanceAttributes, now: float) -> int:
        row = conn.execute("SELECT pk FROM study WHERE study_iuid = ?", (a.study_iuid,))
        found = row.fetchone()
        if found is not None:
            return int(found[0])
        patient_pk = None
        if a.pat_id:
            hit = conn.execute(
                "SELECT pk FROM patient WHERE pat_id = ? AND pat_id_issuer = ? LIMIT 1",
                (a.pat_id, a.pat_id_issuer),
            ).fetchone()
            patient_pk = hit[0] if hit else None
        if patient_pk is None:
            patient_pk = conn.execute(
                """INSERT INTO patient (pat_id, pat_id_issuer, pat_name, pat_birthdate,
                                        pat_sex, created_time, updated_time)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (a.pat_id, a.pat_id_issuer, a.pat_name, a.pat_birthdate, a.pat_sex, now, now),
            ).lastrowid
        return int(
            conn.execute(
                """INSERT INTO study (patient_fk, study_iuid, study_id, study_date, study_time,
                                      accession_no, ref_physician, study_desc,
                                      created_time, updated_time)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (patient_pk, a.study_iuid, a.study_id, a.study_date, a.study_time,
                 a.accession_no, a.ref_physician, a.study_desc, now, now),
            ).lastrowid  # type: ignore[arg-type]
        )  # fmt: skip

    def _upsert_series(
        self, conn: sqlite3.Connection, a: InstanceAttributes, study_pk: int, src_aet: str,
        now: float,
    ) -> int:  # fmt: skip
        found = conn.execute(
            "SELECT pk FROM series WHERE series_iuid = ?", (a.series_iuid,)
        ).fetchone()
        if found is not None:
            return int(found[0])
        series_pk = conn.execute(
            """INSERT INTO series (study_fk, series_iuid, series_no, modality, series_desc,
                                   body_part, series_date, series_time, institution,
                                   station_name, src_aet, created_time, updated_time)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (study_pk, a.series_iuid, a.series_no, a.modality, a.series_desc, a.body_part,
             a.series_date, a.series_time, a.institution, a.station_name, src_aet, now, now),
        ).lastrowid  # fmt: skip
        mods = conn.execute("SELECT mods_in_study FROM study WHERE pk = ?", (study_pk,))
        conn.execute(
            "UPDATE study SET num_series = num_series + 1, mods_in_study = ?, updated_time = ? "
            "WHERE pk = ?",
            (_join_values(mods.fetchone()[0], a.modality), now, study_pk),
        )
        return int(series_pk)  # type: ignore[arg-type]

    def _insert_instance(
        self, conn: sqlite3.Connection, a: InstanceAttributes, series_pk: int, study_pk: int,
        now: float,
    ) -> int:  # fmt: skip
        instance_pk = conn.execute(
            """INSERT INTO instance (series_fk, sop_iuid, sop_cuid, inst_no, content_date,
                                     content_time, created_time, updated_time)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (series_pk, a.sop_iuid, a.sop_cuid, a.inst_no, a.content_date, a.content_time,
             now, now),
        ).lastrowid  # fmt: skip
        self._count_instance(conn, series_pk, study_pk, +1, now)
        cuids = conn.execute("SELECT cuids_in_study FROM study WHERE pk = ?", (study_pk,))
        merged = _join_values(cuids.fetchone()[0], a.sop_cuid)
        conn.execute("UPDATE study SET cuids_in_study = ? WHERE pk = ?", (merged, study_pk))
        return int(instance_pk)  # type: ignore[arg-type]

    @staticmethod
    def _count_instance(
        conn: sqlite3.Connection, series_pk: int, study_pk: int, delta: int, now: float
    ) -> None:
        conn.execute(
            "UPDATE series SET num_instances = num_instances + ?, updated_time = ? WHERE pk = ?",
            (delta, now, series_pk),
        )
        conn.execute(
            "UPDATE study SET num_instances = num_instances + ?, updated_time = ? WHERE pk = ?",
            (delta, now, study_pk),
        )

    def _supersede(
        self, conn: sqlite3.Connection, instance_pk: int, old_series_pk: int,
        a: InstanceAttributes, series_pk: int, now: float,
    ) -> tuple[FileRecord, ...]:  # fmt: skip
        """Replace policy: drop the instance's previous files, move it to its new series."""
        old_files = tuple(
            _file_record(r)
            for r in conn.execute(_FILE_SELECT + " WHERE f.instance_fk = ?", (instance_pk,))
        )
        conn.execute("DELETE FROM file WHERE instance_fk = ?", (instance_pk,))
        if old_series_pk != series_pk:
            old_study = conn.execute("SELECT study_fk FROM series WHERE pk = ?", (old_series_pk,))
            self._count_instance(conn, old_series_pk, old_study.fetchone()[0], -1, now)
            new_study = conn.execute("SELECT study_fk FROM series WHERE pk = ?", (series_pk,))
            self._count_instance(conn, series_pk, new_study.fetchone()[0], +1, now)
        conn.execute(
            """UPDATE instance SET series_fk = ?, sop_cuid = ?, inst_no = ?, content_date = ?,
                                   content_time = ?, commitment = 0, updated_time = ?
               WHERE pk = ?""",
            (series_pk, a.sop_cuid, a.inst_no, a.content_date, a.content_time, now,
             instance_pk),
        )  # fmt: skip
        return old_files

    @staticmethod
    def _insert_file(conn: sqlite3.Connection, instance_pk: int, f: NewFile, now: float) -> int:
        return int(
            conn.execute(
                """INSERT INTO file (instance_fk, filesystem_fk, filepath, file_tsuid, file_md5,
                                     file_size, file_status, created_time)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (instance_pk, f.filesystem_pk, f.filepath, f.tsuid, f.md5, f.size,
                 int(f.status), now),
            ).lastrowid  # type: ignore[arg-type]
        )  # fmt: skip

    # -- files: the lifecycle services' API ---------------------------------------------

    def insert_file(
        self, sop_iuid: str, filesystem_uuid: str, filepath: str, tsuid: str, md5: str,
        size: int, status: FileStatus = FileStatus.DEFAULT,
    ) -> int:  # fmt: skip
        """Add a copy of an indexed instance (FileCopy's tar members); return its pk."""
        fs = self.filesystem(filesystem_uuid)
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                """SELECT i.pk, se.study_fk FROM instance i JOIN series se ON se.pk = i.series_fk
                   WHERE i.sop_iuid = ?""",
                (sop_iuid,),
            ).fetchone()
            if row is None:
                raise UnknownObjectError(f"instance {sop_iuid} is not in the index")
            file_pk = self._insert_file(
                conn, row[0], NewFile(fs.pk, filepath, tsuid, md5, size, status), now
            )
            conn.execute(
                """INSERT INTO study_on_fs (study_fk, filesystem_fk, access_time)
                   VALUES (?, ?, ?) ON CONFLICT (study_fk, filesystem_fk) DO NOTHING""",
                (row[1], fs.pk, now),
            )
        return file_pk

    def update_file_status(
        self, file_pk: int, status: FileStatus, md5_check_time: float | None = None
    ) -> None:
        """Set a file's status; record when its MD5 was last verified, if given."""
        with self.write() as conn:
            cur = conn.execute(
                "UPDATE file SET file_status = ?, "
                "md5_check_time = COALESCE(?, md5_check_time) WHERE pk = ?",
                (int(status), md5_check_time, file_pk),
            )
            if cur.rowcount == 0:
                raise UnknownObjectError(f"file {file_pk} is not in the index")

    def delete_file(self, file_pk: int) -> None:
        """Forget one copy (the caller removes the bytes; instances stay indexed)."""
        with self.write() as conn:
            conn.execute("DELETE FROM file WHERE pk = ?", (file_pk,))

    def file(self, file_pk: int) -> FileRecord:
        row = self.read().execute(_FILE_SELECT + " WHERE f.pk = ?", (file_pk,)).fetchone()
        if row is None:
            raise UnknownObjectError(f"file {file_pk} is not in the index")
        return _file_record(row)

    def files_of_instance(self, sop_iuid: str) -> list[FileRecord]:
        return self._files(" WHERE i.sop_iuid = ?", (sop_iuid,), None)

    def files_of_series(self, series_iuid: str, group: str | None = None) -> list[FileRecord]:
        """Every copy of every instance of the series (optionally only in one group)."""
        return self._files(" WHERE se.series_iuid = ?", (series_iuid,), group)

    def files_of_study(self, study_iuid: str, group: str | None = None) -> list[FileRecord]:
        """Every copy of every instance of the study (optionally only in one group)."""
        return self._files(" WHERE st.study_iuid = ?", (study_iuid,), group)

    def files_with_status(
        self, status: FileStatus, group: str | None = None, limit: int = 1000
    ) -> list[FileRecord]:
        """Files in one status, oldest first (SyncFileStatus's work list)."""
        return self._files(
            " WHERE f.file_status = ?", (int(status),), group, f" ORDER BY f.pk LIMIT {limit:d}"
        )

    def _files(
        self, where: str, args: tuple, group: str | None, tail: str = " ORDER BY f.pk"
    ) -> list[FileRecord]:
        if group is not None:
            where += " AND fs.fs_group_id = ?"
            args = (*args, group)
        rows = self.read().execute(_FILE_SELECT + where + tail, args)
        return [_file_record(row) for row in rows]

    def best_files(self, instance_pks: Sequence[int]) -> dict[int, list[FileRecord]]:
        """Readable copies per instance pk, best first: ONLINE, then NEARLINE, then others.

        Copies with a failure status (negative codes) are never offered.
        """
        rank = {ONLINE_STORAGE: 0, NEARLINE_STORAGE: 1}
        result: dict[int, list[FileRecord]] = {pk: [] for pk in instance_pks}
        conn = self.read()
        for start in range(0, len(instance_pks), 500):
            chunk = list(instance_pks[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                _FILE_SELECT.replace("SELECT f.pk,", "SELECT f.instance_fk, f.pk,")
                + f" WHERE f.instance_fk IN ({marks}) AND f.file_status >= 0",
                chunk,
            )
            for row in rows:
                result[row[0]].append(_file_record(row[1:]))
        for files in result.values():
            files.sort(key=lambda f: (rank.get(f.filesystem.group, 2), f.pk))
        return result

    def touch_study(self, study_iuid: str, now: float | None = None) -> None:
        """Record an access (retrieve) of the study on every file system that holds it."""
        now = time.time() if now is None else now
        with self.write() as conn:
            conn.execute(
                """INSERT OR IGNORE INTO study_on_fs (study_fk, filesystem_fk, access_time)
                   SELECT DISTINCT se.study_fk, f.filesystem_fk, ?
                   FROM study st JOIN series se ON se.study_fk = st.pk
                   JOIN instance i ON i.series_fk = se.pk JOIN file f ON f.instance_fk = i.pk
                   WHERE st.study_iuid = ?""",
                (now, study_iuid),
            )
            conn.execute(
                """UPDATE study_on_fs SET access_time = ?
                   WHERE study_fk = (SELECT pk FROM study WHERE study_iuid = ?)""",
                (now, study_iuid),
            )

    def study_access_times(self, study_iuid: str) -> dict[str, float]:
        """Last access of the study per file system uuid."""
        rows = self.read().execute(
            """SELECT fs.fs_uuid, sof.access_time FROM study_on_fs sof
               JOIN filesystem fs ON fs.pk = sof.filesystem_fk
               JOIN study st ON st.pk = sof.study_fk WHERE st.study_iuid = ?""",
            (study_iuid,),
        )
        return dict(rows.fetchall())

    # -- storage commitment -------------------------------------------------------------

    def commit_instances(
        self, transaction_uid: str, requester_aet: str, refs: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]]]:
        """Check each (SOP Class, SOP Instance) against the index and record the request.

        An instance is committed when it is indexed with that SOP Class and has at least
        one copy without a failure status. Returns (committed, failed with reason code:
        0x0112 no such object instance, 0x0119 class/instance conflict).
        """
        now = time.time()
        committed: list[tuple[str, str]] = []
        failed: list[tuple[str, str, int]] = []
        with self.write() as conn:
            for cuid, iuid in refs:
                row = conn.execute(
                    """SELECT i.pk, i.sop_cuid,
                              EXISTS (SELECT 1 FROM file f
                                      WHERE f.instance_fk = i.pk AND f.file_status >= 0)
                       FROM instance i WHERE i.sop_iuid = ?""",
                    (iuid,),
                ).fetchone()
                reason: int | None
                if row is None or not row[2]:
                    reason = 0x0112
                elif row[1] != cuid:
                    reason = 0x0119
                else:
                    reason = None
                    conn.execute("UPDATE instance SET commitment = 1 WHERE pk = ?", (row[0],))
                conn.execute(
                    """INSERT INTO stgcmt (transaction_uid, requester_aet, sop_iuid, sop_cuid,
                                           failure_reason, request_time)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    (transaction_uid, requester_aet, iuid, cuid, reason, now),
                )
                if reason is None:
                    committed.append((cuid, iuid))
                else:
                    failed.append((cuid, iuid, reason))
        return committed, failed

    def commitment_reported(self, transaction_uid: str) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE stgcmt SET report_time = ? WHERE transaction_uid = ?",
                (time.time(), transaction_uid),
            )

    def commitments(self, transaction_uid: str) -> list[tuple[str, str, int | None, float | None]]:
        """(sop_iuid, sop_cuid, failure_reason, report_time) of one transaction."""
        rows = self.read().execute(
            "SELECT sop_iuid, sop_cuid, failure_reason, report_time FROM stgcmt "
            "WHERE transaction_uid = ? ORDER BY pk",
            (transaction_uid,),
        )
        return rows.fetchall()

    # -- operator views -----------------------------------------------------------------

    def file_status_counts(self) -> dict[tuple[str, FileStatus], int]:
        """Number of files per (file system group, status)."""
        rows = self.read().execute(
            """SELECT fs.fs_group_id, f.file_status, COUNT(*) FROM file f
               JOIN filesystem fs ON fs.pk = f.filesystem_fk
               GROUP BY fs.fs_group_id, f.file_status ORDER BY 1, 2"""
        )
        return {(group, FileStatus(status)): n for group, status, n in rows}

    def counts(self) -> dict[str, int]:
        """Rows per level (patients, studies, series, instances, files)."""
        conn = self.read()
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("patient", "study", "series", "instance", "file")
        }
