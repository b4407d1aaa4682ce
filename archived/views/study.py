"""archivectl study list|show: the studies in the index and where their copies are.

``study list`` matches DICOM-style keys (``*`` and ``?`` wildcards, date ranges) and
shows one line per study that fits the terminal: the UIDs cut to their last characters
(enough to tell the listed studies apart), long names and descriptions cut with an
ellipsis. ``study show`` takes a whole Study Instance UID or the end of one, as the list
shows it. ``--wide`` prints every value whole, ``--json`` every field raw.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pydicom.dataset import Dataset
from rich.console import Console
from rich.table import Table
from rich.text import Text

from archived.conf import ConfigStore
from archived.index import FileStatus, Index, UnknownObjectError
from archived.index.overview import CopyCounts, copies_of_studies, studies_ending_in
from archived.index.query import find
from archived.indexpath import IndexLocation
from archived.views import humanize
from archived.views.output import Column, fitted_table

NO_STUDIES = "no studies match; store one (storescu) or widen the keys"


# ---------------------------------------------------------------------------- gather


def study_list(
    args: argparse.Namespace, index: Index, _loc: IndexLocation, _store: ConfigStore | None
) -> list[dict[str, Any]]:
    keys = Dataset()
    keys.QueryRetrieveLevel = "STUDY"
    keys.StudyInstanceUID = ""
    keys.PatientID = args.patient_id or ""
    keys.PatientName = args.name or ""
    keys.StudyDate = args.date or ""
    keys.StudyDescription = ""
    keys.ModalitiesInStudy = ""
    keys.NumberOfStudyRelatedInstances = ""
    rows: list[dict[str, Any]] = []
    for match in find(index.read(), keys, "STUDY"):
        modalities = match.ModalitiesInStudy
        rows.append({
            "study_iuid": str(match.StudyInstanceUID), "patient_id": str(match.PatientID),
            "patient_name": str(match.PatientName), "study_date": str(match.StudyDate),
            "description": str(match.StudyDescription),
            "modalities": "\\".join(modalities) if isinstance(modalities, list)
            else str(modalities),
            "instances": int(match.NumberOfStudyRelatedInstances),
        })  # fmt: skip
        if len(rows) >= args.limit:
            break
    copies = copies_of_studies(index, [row["study_iuid"] for row in rows])
    for row in rows:
        row["copies"] = copy_labels(copies[row["study_iuid"]])
    return rows


def resolve_study(index: Index, typed: str) -> str:
    """The one study whose UID is ``typed`` or ends in it (as `study list` shows it)."""
    ending = humanize.uid_ending(typed)
    found = studies_ending_in(index, ending) if ending else []
    if not found:
        raise UnknownObjectError(
            f"study {typed} is not in the index; find it with `archivectl study list`"
        )
    if len(found) > 1:
        shown = ", ".join(found[:3])
        raise UnknownObjectError(
            f"study {typed} is ambiguous: it ends {len(found)}+ UIDs ({shown}); give more of it"
        )
    return found[0]


def study_show(
    args: argparse.Namespace, index: Index, _loc: IndexLocation, _store: ConfigStore | None
) -> dict[str, Any]:
    uid = resolve_study(index, args.study_iuid)
    conn = index.read()
    study = conn.execute(
        """SELECT st.study_iuid, p.pat_id, p.pat_name, st.study_date, st.study_time,
                  st.accession_no, st.study_desc, st.num_series, st.num_instances
           FROM study st JOIN patient p ON p.pk = st.patient_fk WHERE st.study_iuid = ?""",
        (uid,),
    ).fetchone()
    names = ("study_iuid", "patient_id", "patient_name", "study_date", "study_time",
             "accession_no", "description", "series", "instances")  # fmt: skip
    per_series: dict[str, CopyCounts] = {}
    for f in index.files_of_study(uid):
        counts = per_series.setdefault(f.series_iuid, {})
        key = (f.filesystem.group, f.status)
        counts[key] = counts.get(key, 0) + 1
    series = conn.execute(
        """SELECT series_iuid, series_no, modality, series_desc, num_instances FROM series
           WHERE study_fk = (SELECT pk FROM study WHERE study_iuid = ?) ORDER BY pk""",
        (uid,),
    ).fetchall()
    file_systems = {fs.uuid: fs for fs in index.filesystems()}
    accessed = index.study_access_times(uid)
    access = [
        {"file_system": uuid, "group": file_systems[uuid].group,
         "path": file_systems[uuid].path, "time": t}
        for uuid, t in accessed.items() if uuid in file_systems
    ]  # fmt: skip
    series_list = [
        {
            "series_iuid": s[0], "number": s[1], "modality": s[2], "description": s[3],
            "instances": s[4], "copies": copy_labels(per_series.get(s[0], {})),
        }
        for s in series
    ]  # fmt: skip
    return {
        **dict(zip(names, study, strict=True)),
        "copies": copy_labels(copies_of_studies(index, [uid])[uid]),
        "access_times": {
            uuid: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
            for uuid, t in accessed.items()
        },
        "accessed": access,
        "series_list": series_list,
    }


def copy_labels(counts: CopyCounts) -> dict[str, int]:
    """{'ONLINE_STORAGE/DEFAULT': 5, 'NEARLINE_STORAGE/ARCHIVED': 5} (the JSON form)."""
    return {f"{group}/{status.name}": n for (group, status), n in sorted(counts.items())}


# ---------------------------------------------------------------------------- render


def where(copies: dict[str, int], instances: int) -> Text:
    """'ONLINE, NEARLINE ARCHIVED'; a count where not every instance has that copy; red
    for failed copies."""
    text = Text()
    ordered = sorted(copies.items(), key=lambda item: (not item[0].startswith("ONLINE"), item))
    for label, n in ordered:
        group, _, status = label.partition("/")
        word = group.removesuffix("_STORAGE")
        if status != FileStatus.DEFAULT.name:
            word += f" {status}"
        if n != instances:
            word += f" {n}/{instances}"
        if text:
            text.append(", ")
        failed = FileStatus[status] < 0
        text.append(word, style="red" if failed else None)
    return text or Text("nowhere", style="red")


def _date(value: str | None) -> str:
    value = value or ""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 else value


def _time(value: str | None) -> str:
    value = (value or "").split(".")[0]
    return ":".join(value[i : i + 2] for i in range(0, len(value), 2)) if value else ""


def render_list(console: Console, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not rows:
        console.print(NO_STUDIES)
        return
    short = humanize.short_uids(r["study_iuid"] for r in rows)
    columns = [
        Column("study", [r["study_iuid"] if args.wide else short[r["study_iuid"]] for r in rows]),
        Column("patient", [r["patient_id"] for r in rows], minimum=8, shrink=2),
        Column("name", [r["patient_name"] for r in rows], minimum=10, shrink=3),
        Column("date", [_date(r["study_date"]) for r in rows]),
        Column("mod", [r["modalities"] for r in rows], minimum=3, shrink=1, optional=True),
        Column("inst", [str(r["instances"]) for r in rows], justify="right"),
        Column("copies", [where(r["copies"], r["instances"]) for r in rows], minimum=25, shrink=1),
        Column("description", [r["description"] for r in rows], minimum=12, shrink=4,
               optional=True),
    ]  # fmt: skip
    console.print(fitted_table(console, columns, args.wide))
    if len(rows) >= args.limit:
        console.print(f"(the first {args.limit}; --limit N shows more)", style="dim")


def render_show(console: Console, study: dict[str, Any], args: argparse.Namespace) -> None:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("study", study["study_iuid"])
    facts.add_row("patient", f"{study['patient_id']}  {study['patient_name']}".strip())
    when = f"{_date(study['study_date'])} {_time(study['study_time'])}".strip()
    accession = f"   accession {study['accession_no']}" if study["accession_no"] else ""
    facts.add_row("date", (when or "-") + accession)
    if study["description"]:
        facts.add_row("description", study["description"])
    facts.add_row(
        "size",
        f"{humanize.count(study['series'], 'series', 'series')}, "
        f"{humanize.count(study['instances'], 'instance')}",
    )
    facts.add_row("copies", where(study["copies"], study["instances"]))
    for seen in study["accessed"]:
        facts.add_row(
            "last access", f"{humanize.moment(seen['time'])} on {seen['group']} {seen['path']}"
        )
    console.print(facts)
    console.print()
    series = study["series_list"]
    short = humanize.short_uids(s["series_iuid"] for s in series)
    columns = [
        Column("#", ["" if s["number"] is None else str(s["number"]) for s in series],
               justify="right"),
        Column("series", [s["series_iuid"] if args.wide else short[s["series_iuid"]]
                          for s in series]),
        Column("mod", [s["modality"] or "" for s in series], minimum=3, shrink=1),
        Column("inst", [str(s["instances"]) for s in series], justify="right"),
        Column("copies", [where(s["copies"], s["instances"]) for s in series], minimum=25,
               shrink=1),
        Column("description", [s["description"] or "" for s in series], minimum=10, shrink=2,
               optional=True),
    ]  # fmt: skip
    console.print(fitted_table(console, columns, args.wide))
