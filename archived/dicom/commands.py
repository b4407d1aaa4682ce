"""archivectl sub-commands of the DICOM index and service: study list|show, status.

(`archivectl ae list` belongs to archived.conf.commands.) Tables by default, JSON with
--json. The index file: --index, else $ARCHIVED_INDEX, else IndexPath in the configuration
(see archived.indexpath). Errors print one line on stderr: 65 unknown study, 66 index file
missing, 78 index written by a newer archived, 70-76 configuration store errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from archived.conf import ConfigError, open_store
from archived.dicom.status_file import read_status, status_path
from archived.index import ArchiveIndexError, FileStatus, Index
from archived.index.query import find
from archived.indexpath import IndexLocation, configured_index, locate_index
from archived.services.status import split_service_status

EX_NOINPUT = 66


def _configured(args: argparse.Namespace) -> IndexLocation:
    with open_store(args.config) as store:
        return configured_index(store)


def _open(args: argparse.Namespace) -> Index:
    location = locate_index(args.index, lambda: _configured(args))
    if not location.path.is_file():
        raise _NoIndexError(location.missing())
    return Index(location.path)


class _NoIndexError(ArchiveIndexError):
    exit_code = EX_NOINPUT


def _command(handler: Callable[[argparse.Namespace, Index], Any]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with _open(args) as index:
                result = handler(args, index)
        except (ArchiveIndexError, ConfigError) as exc:
            print(f"archivectl: {exc}", file=sys.stderr)
            return exc.exit_code
        if args.json:
            json.dump(result, sys.stdout, indent=2, ensure_ascii=False, default=str)
            sys.stdout.write("\n")
        else:
            _render(args.render, result)
        return 0

    return run


# ---------------------------------------------------------------------------- study


def _study_list(args: argparse.Namespace, index: Index) -> list[dict[str, Any]]:
    from pydicom.dataset import Dataset

    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = ""
    keys.PatientID = args.patient_id or ""
    keys.PatientName = args.name or ""
    keys.StudyDate = args.date or ""
    keys.StudyDescription = ""
    keys.ModalitiesInStudy = ""
    keys.NumberOfStudyRelatedInstances = ""
    rows = []
    for match in find(index.read(), keys, "STUDY"):
        rows.append({
            "study_iuid": str(match.StudyInstanceUID), "patient_id": str(match.PatientID),
            "patient_name": str(match.PatientName), "study_date": str(match.StudyDate),
            "description": str(match.StudyDescription),
            "modalities": "\\".join(match.ModalitiesInStudy)
            if isinstance(match.ModalitiesInStudy, list) else str(match.ModalitiesInStudy),
            "instances": int(match.NumberOfStudyRelatedInstances),
        })  # fmt: skip
        if len(rows) >= args.limit:
            break
    return rows


def _study_show(args: argparse.Namespace, index: Index) -> dict[str, Any]:
    conn = index.read()
    study = conn.execute(
        """SELECT st.study_iuid, p.pat_id, p.pat_name, st.study_date, st.study_time,
                  st.accession_no, st.study_desc, st.num_series, st.num_instances
           FROM study st JOIN patient p ON p.pk = st.patient_fk WHERE st.study_iuid = ?""",
        (args.study_iuid,),
    ).fetchone()
    if study is None:
        from archived.index import UnknownObjectError

        raise UnknownObjectError(
            f"study {args.study_iuid} is not in the index; find it with `archivectl study list`"
        )
    names = ("study_iuid", "patient_id", "patient_name", "study_date", "study_time",
             "accession_no", "description", "series", "instances")  # fmt: skip
    copies: dict[tuple[str, str, str], int] = {}
    for f in index.files_of_study(args.study_iuid):
        key = (f.series_iuid, f.filesystem.group, f.status.name)
        copies[key] = copies.get(key, 0) + 1
    series = conn.execute(
        """SELECT series_iuid, series_no, modality, series_desc, num_instances FROM series
           WHERE study_fk = (SELECT pk FROM study WHERE study_iuid = ?) ORDER BY pk""",
        (args.study_iuid,),
    ).fetchall()
    return {
        **dict(zip(names, study, strict=True)),
        "access_times": {
            uuid: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
            for uuid, t in index.study_access_times(args.study_iuid).items()
        },
        "series_list": [
            {
                "series_iuid": s[0],
                "number": s[1],
                "modality": s[2],
                "description": s[3],
                "instances": s[4],
                "copies": {
                    f"{group}/{status}": n
                    for (uid, group, status), n in copies.items()
                    if uid == s[0]
                },
            }
            for s in series
        ],
    }


# ---------------------------------------------------------------------------- status


def _status(args: argparse.Namespace, index: Index) -> dict[str, Any]:
    daemon = read_status(status_path(index.path))
    if daemon is not None and time.time() - daemon.get("written", 0) > 30:
        daemon = {**daemon, "stale": True}
    counts = index.file_status_counts()
    daemon, lifecycle = split_service_status(index, daemon)
    return {
        "daemon": daemon or "not running (no recent status file next to the index)",
        **lifecycle,
        "index": index.counts(),
        "files": {f"{group}/{FileStatus(status).name}": n for (group, status), n in counts.items()},
    }


# ---------------------------------------------------------------------------- output


def _render(kind: str, result: Any) -> None:
    console = Console()
    if kind == "rows":
        table = Table(*(result[0].keys() if result else ["(no studies)"]))
        for row in result:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)
        return
    table = Table("key", "value", show_header=False)
    for key, value in result.items():
        table.add_row(key, json.dumps(value, indent=1, default=str)
                      if isinstance(value, dict | list) else str(value))  # fmt: skip
    console.print(table)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser, render: str) -> None:
        p.add_argument(
            "--index", default=None,
            help="index file (default: $ARCHIVED_INDEX, else IndexPath in the configuration)",
        )  # fmt: skip
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(render=render)

    study = subparsers.add_parser("study", help="studies in the index", epilog=__doc__)
    sub = study.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="studies matching DICOM-style keys (wildcards * ?)")
    p.add_argument("--patient-id")
    p.add_argument("--name", help="patient name, e.g. 'DOE^*'")
    p.add_argument("--date", help="study date or range, e.g. 20240101-20240131")
    p.add_argument("--limit", type=int, default=100)
    common(p, "rows")
    p.set_defaults(handler=_command(_study_list))
    p = sub.add_parser("show", help="one study: series, copies per file system group/status")
    p.add_argument("study_iuid")
    common(p, "mapping")
    p.set_defaults(handler=_command(_study_show))
    p = subparsers.add_parser("status", help="associations, counters, files per status")
    common(p, "mapping")
    p.set_defaults(handler=_command(_status))
