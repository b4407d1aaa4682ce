"""Read-only queries behind the operator's views (archivectl status, study list|show):
where each study's copies are, the lifecycle's backlog, the index file's size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from archived.index.database import Index
from archived.index.model import FileStatus

CopyCounts = dict[tuple[str, FileStatus], int]  # (file system group, status) -> files


def copies_of_studies(index: Index, study_iuids: Sequence[str]) -> dict[str, CopyCounts]:
    """Per study: how many files it has in each file system group and status."""
    out: dict[str, CopyCounts] = {uid: {} for uid in study_iuids}
    for start in range(0, len(study_iuids), 500):  # SQLite's bound-parameter limit
        chunk = study_iuids[start : start + 500]
        rows = index.read().execute(
            f"""SELECT st.study_iuid, fs.fs_group_id, f.file_status, COUNT(*) FROM file f
                JOIN filesystem fs ON fs.pk = f.filesystem_fk
                JOIN instance i ON i.pk = f.instance_fk
                JOIN series se ON se.pk = i.series_fk
                JOIN study st ON st.pk = se.study_fk
                WHERE st.study_iuid IN ({",".join("?" * len(chunk))})
                GROUP BY st.pk, fs.fs_group_id, f.file_status""",
            tuple(chunk),
        )
        for uid, group, status, n in rows:
            out[uid][(group, FileStatus(status))] = n
    return out


def studies_ending_in(index: Index, ending: str, limit: int = 5) -> list[str]:
    """Study UIDs equal to ``ending`` or ending in it (what a person typed from a list)."""
    exact = (
        index.read()
        .execute("SELECT study_iuid FROM study WHERE study_iuid = ?", (ending,))
        .fetchall()
    )
    if exact:
        return [exact[0][0]]
    pattern = "%" + ending.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = index.read().execute(
        "SELECT study_iuid FROM study WHERE study_iuid LIKE ? ESCAPE '\\' ORDER BY pk LIMIT ?",
        (pattern, limit),
    )
    return [uid for (uid,) in rows]


def instances_without_copy(index: Index, source_group: str, dest_fs_uuid: str) -> int:
    """Instances on the source group (not failed) without any file on the destination."""
    row = (
        index.read()
        .execute(
            """SELECT COUNT(DISTINCT f.instance_fk) FROM file f
           JOIN filesystem fs ON fs.pk = f.filesystem_fk
           WHERE fs.fs_group_id = ? AND f.file_status >= 0
             AND NOT EXISTS (SELECT 1 FROM file c JOIN filesystem d ON d.pk = c.filesystem_fk
                             WHERE c.instance_fk = f.instance_fk AND d.fs_uuid = ?)""",
            (source_group, dest_fs_uuid),
        )
        .fetchone()
    )
    return int(row[0])


def studies_on_group(index: Index, group: str) -> int:
    """Studies with at least one file in the group."""
    row = (
        index.read()
        .execute(
            """SELECT COUNT(DISTINCT sof.study_fk) FROM study_on_fs sof
           JOIN filesystem fs ON fs.pk = sof.filesystem_fk WHERE fs.fs_group_id = ?""",
            (group,),
        )
        .fetchone()
    )
    return int(row[0])


def index_file_bytes(path: Path) -> int:
    """The index file with its write-ahead log (what it takes on disk)."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            total += part.stat().st_size
        except OSError:
            pass
    return total
