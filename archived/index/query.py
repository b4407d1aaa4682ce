"""C-FIND matching on the index: identifier keys -> SQL, rows -> response identifiers.

Matching follows PS3.4 C.2.2.2 (matching.py turns each key into SQL): single value
(exact), wildcard (``*`` ``?``; person names regardless of letter case unless
MatchOptions says otherwise), date/time range (``A-B``, ``-B``, ``A-``; a Date and Time
range pair as one date-time range when the requestor negotiated it), UID list (backslash
separated), universal (empty). Keys of the query level and the levels above it match;
keys below the query level are ignored. Every requested key is returned, empty if the
index does not hold it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from archived.index.matching import (
    DEFAULT_MATCHING,
    Condition,
    MatchOptions,
    QueryError,
    caseless_name_condition,
    datetime_condition,
    glob_pattern,
    is_range,
    parse_range,
    range_condition,
)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_DEPTH = {level: n for n, level in enumerate(LEVELS)}


@dataclass(frozen=True)
class Key:
    keyword: str
    level: str
    column: str  # SQL expression
    kind: str  # str | pn | uid | date | time | multi | count
    # Table whose index on the column serves range scans (caseless name matching).
    indexed_table: str = ""


KEYS: tuple[Key, ...] = (
    Key("PatientID", "PATIENT", "p.pat_id", "str"),
    Key("IssuerOfPatientID", "PATIENT", "p.pat_id_issuer", "str"),
    Key("PatientName", "PATIENT", "p.pat_name", "pn", "patient"),
    Key("PatientBirthDate", "PATIENT", "p.pat_birthdate", "date"),
    Key("PatientSex", "PATIENT", "p.pat_sex", "str"),
    Key("NumberOfPatientRelatedStudies", "PATIENT",
        "(SELECT COUNT(*) FROM study s2 WHERE s2.patient_fk = p.pk)", "count"),
    Key("NumberOfPatientRelatedSeries", "PATIENT",
        "(SELECT COALESCE(SUM(num_series), 0) FROM study s2 WHERE s2.patient_fk = p.pk)",
        "count"),
    Key("NumberOfPatientRelatedInstances", "PATIENT",
        "(SELECT COALESCE(SUM(num_instances), 0) FROM study s2 WHERE s2.patient_fk = p.pk)",
        "count"),
    Key("StudyInstanceUID", "STUDY", "st.study_iuid", "uid"),
    Key("StudyID", "STUDY", "st.study_id", "str"),
    Key("StudyDate", "STUDY", "st.study_date", "date"),
    Key("StudyTime", "STUDY", "st.study_time", "time"),
    Key("AccessionNumber", "STUDY", "st.accession_no", "str"),
    Key("ReferringPhysicianName", "STUDY", "st.ref_physician", "pn"),
    Key("StudyDescription", "STUDY", "st.study_desc", "str"),
    Key("ModalitiesInStudy", "STUDY", "st.mods_in_study", "multi"),
    Key("SOPClassesInStudy", "STUDY", "st.cuids_in_study", "multi"),
    Key("NumberOfStudyRelatedSeries", "STUDY", "st.num_series", "count"),
    Key("NumberOfStudyRelatedInstances", "STUDY", "st.num_instances", "count"),
    Key("SeriesInstanceUID", "SERIES", "se.series_iuid", "uid"),
    Key("SeriesNumber", "SERIES", "se.series_no", "str"),
    Key("Modality", "SERIES", "se.modality", "str"),
    Key("SeriesDescription", "SERIES", "se.series_desc", "str"),
    Key("BodyPartExamined", "SERIES", "se.body_part", "str"),
    Key("SeriesDate", "SERIES", "se.series_date", "date"),
    Key("SeriesTime", "SERIES", "se.series_time", "time"),
    Key("InstitutionName", "SERIES", "se.institution", "str"),
    Key("StationName", "SERIES", "se.station_name", "str"),
    Key("NumberOfSeriesRelatedInstances", "SERIES", "se.num_instances", "count"),
    Key("SOPInstanceUID", "IMAGE", "i.sop_iuid", "uid"),
    Key("SOPClassUID", "IMAGE", "i.sop_cuid", "uid"),
    Key("InstanceNumber", "IMAGE", "i.inst_no", "str"),
    Key("ContentDate", "IMAGE", "i.content_date", "date"),
    Key("ContentTime", "IMAGE", "i.content_time", "time"),
)  # fmt: skip
KEYS_BY_KEYWORD = {key.keyword: key for key in KEYS}
# Date and Time keys that combined date-time matching pairs (the index holds no others).
DATE_TIME_PAIRS = (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"),
                   ("ContentDate", "ContentTime"))  # fmt: skip

_FROM = {
    "PATIENT": "FROM patient p",
    "STUDY": "FROM patient p JOIN study st ON st.patient_fk = p.pk",
    "SERIES": "FROM patient p JOIN study st ON st.patient_fk = p.pk "
    "JOIN series se ON se.study_fk = st.pk",
    "IMAGE": "FROM patient p JOIN study st ON st.patient_fk = p.pk "
    "JOIN series se ON se.study_fk = st.pk JOIN instance i ON i.series_fk = se.pk",
}
_PK = {"PATIENT": "p.pk", "STUDY": "st.pk", "SERIES": "se.pk", "IMAGE": "i.pk"}


def _condition(key: Key, raw: str, options: MatchOptions) -> Condition | None:
    """SQL condition and arguments for one matching key, None for universal matching."""
    value = raw.strip()
    if not value or value == "*":
        return None
    col = key.column
    if key.kind == "count":
        return None  # counts are return keys only
    if key.kind == "pn" and options.case_insensitive_names:
        values = [v.strip() for v in value.split("\\") if v.strip()]
        return caseless_name_condition(col, values, key.indexed_table) if values else None
    if key.kind == "uid" or ("\\" in value and key.kind in ("str", "pn")):
        values = [v.strip() for v in value.split("\\") if v.strip()]
        return f"{col} IN ({','.join('?' * len(values))})", values
    if key.kind == "multi":
        values = [v.strip() for v in value.split("\\") if v.strip()]
        ors = " OR ".join(f"('\\' || {col} || '\\') GLOB ?" for _ in values)
        return f"({ors})", [f"*\\{glob_pattern(v)}\\*" for v in values]
    if key.kind in ("date", "time") and is_range(value):
        return range_condition(col, parse_range(key.keyword, key.kind, value))
    if "*" in value or "?" in value:
        return f"{col} GLOB ?", [glob_pattern(value)]
    return f"{col} = ?", [value]


def _combined_datetime(identifier: Dataset, depth: int) -> tuple[list[Condition], set[str]]:
    """Conditions of the Date and Time range pairs matched as one date-time range, and
    the keywords they stand for (those keys do not match on their own)."""
    conditions, combined = [], set()
    for date_keyword, time_keyword in DATE_TIME_PAIRS:
        date_key, time_key = KEYS_BY_KEYWORD[date_keyword], KEYS_BY_KEYWORD[time_keyword]
        if _DEPTH[date_key.level] > depth:
            continue
        if date_keyword not in identifier or time_keyword not in identifier:
            continue
        dates = _value_of(identifier, date_keyword).strip()
        times = _value_of(identifier, time_keyword).strip()
        if not (is_range(dates) and is_range(times)):
            continue
        condition = datetime_condition(
            date_key.column, time_key.column,
            parse_range(date_keyword, "date", dates), parse_range(time_keyword, "time", times),
        )  # fmt: skip
        if condition is not None:
            conditions.append(condition)
            combined |= {date_keyword, time_keyword}
    return conditions, combined


def _value_of(identifier: Dataset, keyword: str) -> str:
    elem = identifier[keyword]
    if elem.VR == "SQ" or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    args: list[str]
    returned: list[Key]


def compile_query(
    identifier: Dataset, level: str, target_level: str | None = None,
    options: MatchOptions = DEFAULT_MATCHING,
) -> CompiledQuery:  # fmt: skip
    """SQL selecting the ``target_level`` rows (default: ``level``) that match.

    The columns selected are the pk of the target level followed by the known return keys
    of ``identifier`` at or above ``level``.
    """
    if level not in _DEPTH:
        raise QueryError(f"QueryRetrieveLevel {level!r} is not one of {', '.join(LEVELS)}")
    target = target_level or level
    depth = _DEPTH[level]
    conditions: list[str] = []
    args: list[str] = []
    returned: list[Key] = []
    combined: set[str] = set()
    if options.combined_datetime:
        pairs, combined = _combined_datetime(identifier, depth)
        for sql, pair_args in pairs:
            conditions.append(sql)
            args.extend(pair_args)
    for elem in identifier:
        key = KEYS_BY_KEYWORD.get(elem.keyword)
        if key is None or _DEPTH[key.level] > depth:
            continue
        returned.append(key)
        if key.keyword in combined:
            continue
        condition = _condition(key, _value_of(identifier, elem.keyword), options)
        if condition is not None:
            conditions.append(condition[0])
            args.extend(condition[1])
    columns = ", ".join([_PK[target], *(k.column for k in returned)])
    sql = f"SELECT {columns} {_FROM[target]}"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += f" ORDER BY {_PK[target]}"
    return CompiledQuery(sql, args, returned)


def find(
    conn: sqlite3.Connection, identifier: Dataset, level: str, retrieve_aet: str = "",
    options: MatchOptions = DEFAULT_MATCHING,
) -> Iterator[Dataset]:  # fmt: skip
    """Yield one response identifier per match (the requested keys, filled in)."""
    query = compile_query(identifier, level, options=options)
    for row in conn.execute(query.sql, query.args):
        yield _response(identifier, query.returned, row[1:], level, retrieve_aet)


def _response(
    identifier: Dataset, returned: list[Key], values: tuple, level: str, retrieve_aet: str
) -> Dataset:
    rsp = Dataset()
    known = dict(zip((k.keyword for k in returned), values, strict=True))
    non_ascii = False
    for elem in identifier:
        keyword = elem.keyword
        if keyword == "SpecificCharacterSet" or not keyword:
            continue
        if keyword == "QueryRetrieveLevel":
            rsp.QueryRetrieveLevel = level
        elif keyword == "RetrieveAETitle":
            rsp.RetrieveAETitle = retrieve_aet
        elif keyword in known:
            value = known[keyword]
            key = KEYS_BY_KEYWORD[keyword]
            if key.kind == "multi":
                value = value.split("\\") if value else []
            elif key.kind == "count":
                value = int(value)
            elif isinstance(value, str) and not value.isascii():
                non_ascii = True
            setattr(rsp, keyword, value)
        elif elem.VR == "SQ":
            rsp.add_new(elem.tag, "SQ", DicomSequence())
        else:
            rsp.add_new(elem.tag, elem.VR, None)
    if non_ascii:
        rsp.SpecificCharacterSet = "ISO_IR 192"
    return rsp


def match_pks(
    conn: sqlite3.Connection, identifier: Dataset, level: str, target_level: str = "IMAGE"
) -> list[int]:
    """pks of the ``target_level`` rows below the matches at ``level`` (for retrieves)."""
    query = compile_query(identifier, level, target_level)
    return [row[0] for row in conn.execute(query.sql, query.args)]
