"""The DICOM index on a real SQLite file: schema, storing, files API, C-FIND matching."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset

from archived.index import (
    NEARLINE_STORAGE,
    ONLINE_STORAGE,
    SCHEMA_VERSION,
    FileStatus,
    FileSystemSpec,
    Index,
    InstanceAttributes,
    NewFile,
    SchemaVersionError,
    UnknownObjectError,
)
from archived.index.matching import DEFAULT_MATCHING, MatchOptions
from archived.index.query import QueryError, find, match_pks

CASE_SENSITIVE = MatchOptions(case_insensitive_names=False)
COMBINED = MatchOptions(combined_datetime=True)


def attrs(n: int, study: int = 1, series: int = 1, **extra: str) -> InstanceAttributes:
    values = dict(
        sop_iuid=f"1.2.3.{study}.{series}.{n}", sop_cuid="1.2.840.10008.5.1.4.1.1.2",
        series_iuid=f"1.2.3.{study}.{series}", study_iuid=f"1.2.3.{study}",
        pat_id=f"PID{study}", pat_name=f"DOE^JOHN{study}", study_date="20240102",
        study_time="101500", modality="CT", inst_no=str(n),
    )  # fmt: skip
    values.update(extra)
    return InstanceAttributes(**values)


@pytest.fixture
def index(tmp_path: Path) -> Index:
    idx = Index(tmp_path / "index.sqlite")
    idx.mirror_filesystems(
        [
            FileSystemSpec("fs-online", ONLINE_STORAGE, str(tmp_path / "online")),
            FileSystemSpec("fs-tar", NEARLINE_STORAGE, f"tar:{tmp_path / 'mnt'}"),
        ]
    )
    yield idx
    idx.close()


def online_pk(index: Index) -> int:
    return index.filesystem("fs-online").pk


def store(index: Index, a: InstanceAttributes, path: str | None = None, **kw) -> int:
    new = NewFile(online_pk(index), path or f"x/{a.sop_iuid}", "1.2.840.10008.1.2.1", "0" * 32, 10)
    outcome = index.store_instance(a, new, **kw)
    return outcome.instance_pk


def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    Index(tmp_path / "i.sqlite").close()
    conn = sqlite3.connect(tmp_path / "i.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"patient", "study", "series", "instance", "file", "filesystem", "study_on_fs",
            "stgcmt"} <= tables  # fmt: skip
    conn.close()


def test_newer_schema_is_refused_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match=r"i\.sqlite.*upgrade archived"):
        Index(path)


def test_reopening_keeps_data(tmp_path: Path, index: Index) -> None:
    store(index, attrs(1))
    again = Index(index.path)
    assert again.counts()["instance"] == 1
    again.close()


def test_store_counts_series_instances_and_modalities(index: Index) -> None:
    store(index, attrs(1))
    store(index, attrs(2))
    store(index, attrs(1, series=2, modality="MR"))
    assert index.counts() == {"patient": 1, "study": 1, "series": 2, "instance": 3, "file": 3}
    row = (
        index.read()
        .execute("SELECT num_series, num_instances, mods_in_study FROM study")
        .fetchone()
    )
    assert row == (2, 3, "CT\\MR")


def test_duplicate_ignored_keeps_first_file(index: Index) -> None:
    store(index, attrs(1), path="a")
    outcome = index.store_instance(
        attrs(1), NewFile(online_pk(index), "b", "1.2.840.10008.1.2", "1" * 32, 5)
    )
    assert outcome.ignored and outcome.file_pk is None
    assert [f.filepath for f in index.files_of_instance("1.2.3.1.1.1")] == ["a"]


def test_duplicate_replaced_supersedes_old_files(index: Index) -> None:
    store(index, attrs(1), path="a")
    outcome = index.store_instance(
        attrs(1, inst_no="7"),
        NewFile(online_pk(index), "b", "1.2.840.10008.1.2", "1" * 32, 5),
        replace=True,
    )
    assert not outcome.ignored
    assert [f.filepath for f in outcome.replaced_files] == ["a"]
    assert [f.filepath for f in index.files_of_instance("1.2.3.1.1.1")] == ["b"]
    assert index.counts()["instance"] == 1
    assert index.read().execute("SELECT num_instances FROM series").fetchone()[0] == 1


def test_files_api_for_lifecycle_services(index: Index, tmp_path: Path) -> None:
    store(index, attrs(1))
    store(index, attrs(2))
    store(index, attrs(1, study=2))
    pk = index.insert_file(
        "1.2.3.1.1.1", "fs-tar", "2024/1/2/3/S/X-1.tar!X/00000001", "1.2.840.10008.1.2.1",
        "a" * 32, 10, FileStatus.TO_ARCHIVE,
    )  # fmt: skip
    assert len(index.files_of_series("1.2.3.1.1")) == 3
    assert len(index.files_of_study("1.2.3.1", group=NEARLINE_STORAGE)) == 1
    tar_copy = index.file(pk)
    assert tar_copy.absolute_path == tmp_path / "mnt/2024/1/2/3/S/X-1.tar!X/00000001"
    assert tar_copy.status is FileStatus.TO_ARCHIVE
    index.update_file_status(pk, FileStatus.ARCHIVED, md5_check_time=1234.5)
    assert index.file(pk).status is FileStatus.ARCHIVED
    assert index.file(pk).md5_check_time == 1234.5
    assert [f.pk for f in index.files_with_status(FileStatus.ARCHIVED)] == [pk]
    counts = index.file_status_counts()
    assert counts[(NEARLINE_STORAGE, FileStatus.ARCHIVED)] == 1
    assert counts[(ONLINE_STORAGE, FileStatus.DEFAULT)] == 3
    with pytest.raises(UnknownObjectError, match="9999"):
        index.update_file_status(9999, FileStatus.ARCHIVED)
    with pytest.raises(UnknownObjectError, match=r"1\.9\.9"):
        index.insert_file("1.9.9", "fs-tar", "t!m", "1.2", "a" * 32, 1)


def test_best_files_prefer_online_and_skip_failed_copies(index: Index) -> None:
    instance_pk = store(index, attrs(1))
    online = index.files_of_instance("1.2.3.1.1.1")[0]
    tar = index.insert_file("1.2.3.1.1.1", "fs-tar", "t.tar!m", "1.2", "a" * 32, 1)
    assert [f.pk for f in index.best_files([instance_pk])[instance_pk]] == [online.pk, tar]
    index.delete_file(online.pk)
    index.update_file_status(tar, FileStatus.MD5_CHECK_FAILED)
    assert index.best_files([instance_pk])[instance_pk] == []


def test_touch_study_updates_access_time_on_every_file_system(index: Index) -> None:
    index.store_instance(attrs(1), NewFile(online_pk(index), "a", "1.2", "0" * 32, 1), now=100.0)
    index.insert_file("1.2.3.1.1.1", "fs-tar", "t.tar!m", "1.2", "a" * 32, 1)
    index.touch_study("1.2.3.1", now=500.0)
    assert index.study_access_times("1.2.3.1") == {"fs-online": 500.0, "fs-tar": 500.0}


def test_filesystems_mirror_by_uuid(index: Index, tmp_path: Path) -> None:
    index.mirror_filesystems([FileSystemSpec("fs-online", ONLINE_STORAGE, "/new", "RO")])
    fs = index.filesystem("fs-online")
    assert (fs.path, fs.status) == ("/new", "RO")
    assert index.filesystem("fs-tar").status == "RO"  # no longer configured


def test_storage_commitment_records_each_reference(index: Index) -> None:
    store(index, attrs(1))
    committed, failed = index.commit_instances(
        "1.5.5", "MODALITY",
        [("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.1.1"),
         ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.1.1.1"),
         ("1.2.840.10008.5.1.4.1.1.2", "1.9.9")],
    )  # fmt: skip
    assert committed == [("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.1.1")]
    assert [f[2] for f in failed] == [0x0119, 0x0112]
    index.commitment_reported("1.5.5")
    rows = index.commitments("1.5.5")
    assert len(rows) == 3 and all(r[3] is not None for r in rows)
    assert index.read().execute("SELECT commitment FROM instance").fetchone()[0] == 1


def test_concurrent_writers_from_threads(index: Index) -> None:
    def worker(t: int) -> None:
        for n in range(20):
            store(index, attrs(n, study=t))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert index.counts()["instance"] == 80
    assert index.counts()["study"] == 4


# -- C-FIND matching ----------------------------------------------------------------------


def query(**keys: object) -> Dataset:
    ds = Dataset()
    with disable_value_validation():  # range values are no valid DA/TM values
        for keyword, value in keys.items():
            setattr(ds, keyword, value)
    return ds


@pytest.fixture
def populated(index: Index) -> Index:
    store(index, attrs(1, study=1, pat_name="SMITH^ANNA", study_date="20230105"))
    store(index, attrs(2, study=1, pat_name="SMITH^ANNA", study_date="20230105"))
    store(index, attrs(1, study=2, pat_name="SMYTHE^BOB", study_date="20240610",
                       study_time="083000", modality="MR"))  # fmt: skip
    store(index, attrs(1, study=3, pat_name="Müller^Jörg", study_date="20241231",
                       accession_no="ACC3"))  # fmt: skip
    return index


def study_uids(index: Index, options: MatchOptions = DEFAULT_MATCHING, **keys: object) -> list[str]:
    ds = query(**{"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", **keys})
    return [r.StudyInstanceUID for r in find(index.read(), ds, "STUDY", options=options)]


def test_find_exact_wildcard_and_universal(populated: Index) -> None:
    assert study_uids(populated, PatientID="PID2") == ["1.2.3.2"]
    assert study_uids(populated, PatientName="SM?TH^*") == ["1.2.3.1"]
    assert study_uids(populated, PatientName="SM*") == ["1.2.3.1", "1.2.3.2"]
    assert study_uids(populated, PatientName="") == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert study_uids(populated, CASE_SENSITIVE, PatientName="smith*") == []
    assert study_uids(populated, CASE_SENSITIVE, PatientName="SM*") == ["1.2.3.1", "1.2.3.2"]


def test_find_names_regardless_of_case_by_default(populated: Index) -> None:
    assert study_uids(populated, PatientName="smith*") == ["1.2.3.1"]
    assert study_uids(populated, PatientName="sM?tH^aNNA") == ["1.2.3.1"]
    assert study_uids(populated, PatientName="smith^anna") == ["1.2.3.1"]
    assert study_uids(populated, PatientName="*^bob") == ["1.2.3.2"]
    assert study_uids(populated, PatientName=["smith^anna", "SMYTHE*"]) == ["1.2.3.1", "1.2.3.2"]
    # non-ASCII letters fold too, and LIKE's own wildcards stay literal
    assert study_uids(populated, PatientName="MÜLLER^JÖRG") == ["1.2.3.3"]
    assert study_uids(populated, PatientName="mü*") == ["1.2.3.3"]
    assert study_uids(populated, PatientName="SM_TH%") == []


def test_caseless_names_use_the_name_index(populated: Index) -> None:
    from archived.index.query import compile_query

    ds = query(QueryRetrieveLevel="STUDY", PatientName="smi*", StudyInstanceUID="")
    compiled = compile_query(ds, "STUDY")
    plan = " ".join(row[3] for row in populated.read().execute(
        "EXPLAIN QUERY PLAN " + compiled.sql, compiled.args))  # fmt: skip
    assert "INDEX patient_name" in plan


def test_find_date_and_time_ranges(populated: Index) -> None:
    assert study_uids(populated, StudyDate="20240101-") == ["1.2.3.2", "1.2.3.3"]
    assert study_uids(populated, StudyDate="-20231231") == ["1.2.3.1"]
    assert study_uids(populated, StudyDate="20240601-20240630") == ["1.2.3.2"]
    assert study_uids(populated, StudyTime="0800-0830") == ["1.2.3.2"]
    assert study_uids(populated, StudyDate="20230105-20230105") == ["1.2.3.1"]
    assert study_uids(populated, StudyDate="2023.01.05-") == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]


@pytest.mark.parametrize(("times", "matches"), [
    ("08-08", ["0800", "083000", "085959.999999"]),  # an hour: all of its minutes
    ("0830-", ["083000", "085959.999999", "0900", "101530.5"]),
    ("-0829", ["0800"]),
    ("101530.5-", ["101530.5"]),
    ("101530.50-101530.5", ["101530.5"]),  # trailing zeros do not change the value
    ("-101530", ["0800", "083000", "085959.999999", "0900", "101530.5"]),  # 10:15:30.xxx
    ("-101529", ["0800", "083000", "085959.999999", "0900"]),
    ("08:30-09:00", ["083000", "085959.999999", "0900"]),  # ACR-NEMA colons
])  # fmt: skip
def test_find_time_ranges_with_partial_times_and_fractions(
    index: Index, times: str, matches: list[str]
) -> None:
    stored = ["0800", "083000", "085959.999999", "0900", "101530.5"]
    for n, value in enumerate(stored, 1):
        store(index, attrs(1, study=n, study_time=value))
    found = study_uids(index, StudyTime=times)
    assert sorted(stored[int(uid.rsplit(".", 1)[1]) - 1] for uid in found) == sorted(matches)


@pytest.mark.parametrize("value", ["2024-01-01-", "20240101-2024", "1015-25:00", "x-"])
def test_malformed_range_is_a_query_error_naming_the_key(populated: Index, value: str) -> None:
    keyword = "StudyTime" if ":" in value else "StudyDate"
    with pytest.raises(QueryError, match=keyword):
        study_uids(populated, **{keyword: value})


@pytest.fixture
def overnight(index: Index) -> Index:
    """Studies around midnight of 2006-01-01/02, one without a time."""
    for n, (date, time_) in enumerate([
        ("20060101", "110000"), ("20060101", "130000"), ("20060102", "070000"),
        ("20060102", "090000"), ("20060101", ""), ("20060103", "070000"),
    ], 1):  # fmt: skip
        store(index, attrs(1, study=n, study_date=date, study_time=time_))
    return index


def test_combined_datetime_range_spans_midnight(overnight: Index) -> None:
    keys = {"StudyDate": "20060101-20060102", "StudyTime": "120000-080000"}
    assert study_uids(overnight, COMBINED, **keys) == ["1.2.3.2", "1.2.3.3"]
    # independent matching: no time is both after noon and before 8 o'clock
    assert study_uids(overnight, **keys) == []


def test_combined_datetime_open_ranges_and_mismatched_forms(overnight: Index) -> None:
    assert study_uids(overnight, COMBINED, StudyDate="20060102-", StudyTime="080000-") == [
        "1.2.3.4", "1.2.3.6"]  # fmt: skip
    assert study_uids(overnight, COMBINED, StudyDate="-20060101", StudyTime="-120000") == [
        "1.2.3.1"]  # fmt: skip
    # different forms are matched each on its own (PS3.4 C.2.2.2.5.4)
    assert study_uids(overnight, COMBINED, StudyDate="20060101-20060102",
                      StudyTime="-080000") == ["1.2.3.3"]  # fmt: skip
    # an empty time: only days strictly inside the range match
    assert study_uids(overnight, COMBINED, StudyDate="20051231-20060102",
                      StudyTime="120000-080000") == ["1.2.3.1", "1.2.3.2", "1.2.3.3",
                                                     "1.2.3.5"]  # fmt: skip


def test_find_uid_list_and_modalities(populated: Index) -> None:
    assert study_uids(populated, StudyInstanceUID=["1.2.3.1", "1.2.3.3"]) == ["1.2.3.1", "1.2.3.3"]
    assert study_uids(populated, ModalitiesInStudy="MR") == ["1.2.3.2"]
    assert study_uids(populated, ModalitiesInStudy=["MR", "CT"]) == ["1.2.3.1", "1.2.3.2",
                                                                     "1.2.3.3"]  # fmt: skip


def test_find_returns_requested_keys_counts_and_empty_unknowns(populated: Index) -> None:
    ds = query(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3.1", PatientName="",
               NumberOfStudyRelatedInstances="", NumberOfStudyRelatedSeries="",
               ModalitiesInStudy="", PatientComments="", RetrieveAETitle="")  # fmt: skip
    (rsp,) = find(populated.read(), ds, "STUDY", retrieve_aet="ARCHIVED")
    assert rsp.PatientName == "SMITH^ANNA"
    assert rsp.NumberOfStudyRelatedInstances == 2
    assert rsp.NumberOfStudyRelatedSeries == 1
    assert rsp.ModalitiesInStudy == "CT"
    assert rsp.RetrieveAETitle == "ARCHIVED"
    assert "PatientComments" in rsp and not rsp.PatientComments
    assert "SpecificCharacterSet" not in rsp


def test_find_non_ascii_names_come_back_in_utf8(populated: Index) -> None:
    ds = query(QueryRetrieveLevel="STUDY", AccessionNumber="ACC3", PatientName="")
    (rsp,) = find(populated.read(), ds, "STUDY")
    assert rsp.SpecificCharacterSet == "ISO_IR 192"
    assert str(rsp.PatientName) == "Müller^Jörg"


def test_find_at_patient_series_and_image_levels(populated: Index) -> None:
    ds = query(QueryRetrieveLevel="PATIENT", PatientID="PID1", NumberOfPatientRelatedStudies="",
               NumberOfPatientRelatedInstances="")  # fmt: skip
    (rsp,) = find(populated.read(), ds, "PATIENT")
    assert (rsp.NumberOfPatientRelatedStudies, rsp.NumberOfPatientRelatedInstances) == (1, 2)
    ds = query(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2.3.1", SeriesInstanceUID="",
               NumberOfSeriesRelatedInstances="", Modality="")  # fmt: skip
    (rsp,) = find(populated.read(), ds, "SERIES")
    assert (rsp.SeriesInstanceUID, rsp.NumberOfSeriesRelatedInstances) == ("1.2.3.1.1", 2)
    ds = query(QueryRetrieveLevel="IMAGE", SeriesInstanceUID="1.2.3.1.1", SOPInstanceUID="",
               InstanceNumber="2")  # fmt: skip
    assert [r.SOPInstanceUID for r in find(populated.read(), ds, "IMAGE")] == ["1.2.3.1.1.2"]


def test_match_pks_expands_a_study_to_its_instances(populated: Index) -> None:
    ds = query(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3.1")
    assert len(match_pks(populated.read(), ds, "STUDY")) == 2


def test_bad_level_is_a_query_error(populated: Index) -> None:
    with pytest.raises(QueryError, match="FRAME"):
        list(find(populated.read(), query(QueryRetrieveLevel="FRAME"), "FRAME"))
