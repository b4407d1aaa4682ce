"""C-FIND matching with real peers: date and time ranges, combined date-time matching
negotiated by a pynetdicom SCU (DCMTK's findscu cannot negotiate it), and person names
matched regardless of letter case unless the configuration says otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from archived.conf import open_store
from archived.dicom.config import settings_from_config
from tests.dicom.conftest import Archive
from tests.dicom.data import ct_study
from tests.dicom.test_query_retrieve import findscu
from tests.dicom.test_store import storescu

STUDY_ROOT = StudyRootQueryRetrieveInformationModelFind
PATIENT_ROOT = PatientRootQueryRetrieveInformationModelFind
COMBINED = b"\x00\x01"  # relational queries no, combined date-time matching yes
EXT = "/dicomConfigurationRoot/dicomDevicesRoot/archived/deviceExtensions/ArchiveDeviceExtension"

# Patient ID -> (name, referring physician, study date, study time)
STUDIES = {
    "P1": ("DOE^JANE", "WELBY^MARCUS", "20060101", "110000"),
    "P2": ("doe^john", "", "20060101", "130000"),
    "P3": ("Roe^Richard", "", "20060102", "070000"),
    "P4": ("ROE^RITA", "", "20060102", "090000.5"),
}


def store_studies(archive: Archive, directory: Path) -> None:
    paths = []
    for seed, (pid, (name, physician, date, time_)) in enumerate(STUDIES.items(), 1):
        (path,) = ct_study(directory / pid, 1, rows=8, columns=8, patient_id=pid,
                           patient_name=name, seed=seed)  # fmt: skip
        ds = pydicom.dcmread(path)
        ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = date, time_, physician
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    storescu(archive, *paths)


@pytest.fixture
def studies(archive: Archive, tmp_path: Path) -> Archive:
    store_studies(archive, tmp_path / "in")
    return archive


def patient_ids(rsps: list[Dataset]) -> list[str]:
    return sorted(str(r.PatientID) for r in rsps)


def find_study_pids(archive: Archive, out: Path, *keys: str) -> list[str]:
    """Patient IDs of the studies DCMTK's findscu finds (Study Root, no negotiation)."""
    return patient_ids(findscu(archive, out, "-S", "QueryRetrieveLevel=STUDY", "PatientID",
                               *keys))  # fmt: skip


class PynetdicomFind:
    """One association of a pynetdicom SCU, optionally with a C-FIND extended negotiation."""

    def __init__(self, archive: Archive, info: bytes | None, sop_class: str = STUDY_ROOT) -> None:
        self.sop_class = sop_class
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(sop_class)
        items = []
        if info is not None:
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = sop_class
            item.service_class_application_information = info
            items.append(item)
        self.assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title,
                                  ext_neg=items)  # fmt: skip
        assert self.assoc.is_established

    @property
    def accepted(self) -> dict[str, bytes]:
        """The archive's answer to the extended negotiation, by SOP class."""
        return {str(uid): info for uid, info in self.assoc.acceptor.sop_class_extended.items()}

    def find(self, **keys: str) -> tuple[list[Dataset], Dataset]:
        """The matches and the final status of a STUDY level query."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientID = ""
        with disable_value_validation():  # a malformed range on purpose
            for keyword, value in keys.items():
                setattr(ds, keyword, value)
        matches, final = [], None
        for status, identifier in self.assoc.send_c_find(ds, self.sop_class):
            if status.Status in (0xFF00, 0xFF01):
                matches.append(identifier)
            else:
                final = status
        assert final is not None, "no final C-FIND response"
        return matches, final

    def close(self) -> None:
        self.assoc.release()


OpenSCU = Callable[..., PynetdicomFind]


@pytest.fixture
def scu(studies: Archive) -> Iterator[OpenSCU]:
    opened: list[PynetdicomFind] = []

    def open_(info: bytes | None, sop_class: str = STUDY_ROOT) -> PynetdicomFind:
        opened.append(PynetdicomFind(studies, info, sop_class))
        return opened[-1]

    yield open_
    for one in opened:
        one.close()


# -- date and time ranges -----------------------------------------------------------------


def test_findscu_date_ranges(studies: Archive, tmp_path: Path) -> None:
    assert find_study_pids(studies, tmp_path / "a", "StudyDate=-20060101") == ["P1", "P2"]
    assert find_study_pids(studies, tmp_path / "b", "StudyDate=20060102-") == ["P3", "P4"]
    assert find_study_pids(studies, tmp_path / "c", "StudyDate=20060101-20060101") == [
        "P1", "P2"]  # fmt: skip
    assert find_study_pids(studies, tmp_path / "d", "StudyDate=20051201-20051231") == []


def test_findscu_time_ranges_with_partial_times_and_fractions(
    studies: Archive, tmp_path: Path
) -> None:
    # '13-': from 13:00 on; '-09': up to 09:59:59.999999, so 09:00:00.5 too
    assert find_study_pids(studies, tmp_path / "a", "StudyTime=13-") == ["P2"]
    assert find_study_pids(studies, tmp_path / "b", "StudyTime=-09") == ["P3", "P4"]
    # a bound in seconds takes in its fractions; a fractional bound is exact
    assert find_study_pids(studies, tmp_path / "c", "StudyTime=0700-090000") == ["P3", "P4"]
    assert find_study_pids(studies, tmp_path / "d", "StudyTime=090000.6-") == ["P1", "P2"]
    assert find_study_pids(studies, tmp_path / "e", "StudyTime=090000.5-0900") == ["P4"]


def test_combined_range_across_midnight_with_negotiation(scu: OpenSCU) -> None:
    one = scu(COMBINED)
    matches, final = one.find(StudyDate="20060101-20060102", StudyTime="120000-080000")
    assert final.Status == 0x0000
    # 2006-01-01 12:00 to 2006-01-02 08:00: 13:00 on the first day, 07:00 on the second
    assert patient_ids(matches) == ["P2", "P3"]


def test_same_ranges_without_negotiation_match_date_and_time_each_on_its_own(
    scu: OpenSCU, studies: Archive, tmp_path: Path
) -> None:
    keys = ("StudyDate=20060101-20060102", "StudyTime=120000-080000")
    # no time of day is both after noon and before 08:00
    assert find_study_pids(studies, tmp_path / "a", *keys) == []
    # a requestor that asks for byte 2 = 0 does not get combined matching either
    matches, _ = scu(b"\x00\x00").find(StudyDate="20060101-20060102", StudyTime="120000-080000")
    assert matches == []
    # 08:00-12:00 on each day alone, against 2006-01-01 08:00 to 2006-01-02 12:00 combined
    keys = ("StudyDate=20060101-20060102", "StudyTime=0800-1200")
    assert find_study_pids(studies, tmp_path / "b", *keys) == ["P1", "P4"]
    matches, _ = scu(COMBINED).find(StudyDate="20060101-20060102", StudyTime="0800-1200")
    assert patient_ids(matches) == ["P1", "P2", "P3", "P4"]


@pytest.mark.parametrize(("offered", "answered"), [
    (b"\x00\x01", b"\x00\x01"),
    (b"\x01\x01\x01\x01", b"\x00\x01\x00\x00"),  # relational, fuzzy, timezone: not supported
    (b"\x01\x01\x01\x01\x01", b"\x00\x01\x00\x00"),  # bytes past the fourth are not known
    (b"\x00\x00", b"\x00\x00"),
    (b"\x01", b"\x00"),
])  # fmt: skip
def test_negotiation_is_answered_with_combined_datetime_accepted(
    scu: OpenSCU, offered: bytes, answered: bytes
) -> None:
    assert scu(offered).accepted == {STUDY_ROOT: answered}


def test_negotiation_is_per_sop_class(scu: OpenSCU) -> None:
    one = scu(COMBINED, PATIENT_ROOT)
    assert one.accepted == {PATIENT_ROOT: COMBINED}
    assert scu(None).accepted == {}


def test_malformed_range_fails_with_a900_naming_the_key(scu: OpenSCU) -> None:
    matches, final = scu(COMBINED).find(StudyDate="20060101-20060102", StudyTime="12-25")
    assert (matches, final.Status) == ([], 0xA900)
    assert "StudyTime" in final.ErrorComment


# -- person names -------------------------------------------------------------------------


def test_findscu_names_match_regardless_of_case(studies: Archive, tmp_path: Path) -> None:
    assert find_study_pids(studies, tmp_path / "a", "PatientName=doe*") == ["P1", "P2"]
    assert find_study_pids(studies, tmp_path / "b", "PatientName=r?E^RI*") == ["P3", "P4"]
    assert find_study_pids(studies, tmp_path / "c", "PatientName=roe^richard") == ["P3"]
    assert find_study_pids(studies, tmp_path / "d", "ReferringPhysicianName=welby*") == ["P1"]


def test_names_match_case_sensitively_when_configured(
    start_archive: Callable[..., Archive], tmp_path: Path
) -> None:
    archive = start_archive(case_insensitive_names=False)
    store_studies(archive, tmp_path / "in")
    assert find_study_pids(archive, tmp_path / "a", "PatientName=doe*") == ["P2"]
    assert find_study_pids(archive, tmp_path / "b", "PatientName=DOE*") == ["P1"]
    assert find_study_pids(archive, tmp_path / "c", "PatientName=R?E^RI*") == ["P4"]
    assert find_study_pids(archive, tmp_path / "d", "ReferringPhysicianName=welby*") == []


def test_name_matching_setting_comes_from_the_configuration(tmp_path: Path) -> None:
    with open_store(f"json://{tmp_path}/conf.json") as store:
        store.ensure_own_device()
        defaults, _ = settings_from_config(store)
        store.persist_node(f"{EXT}/CaseInsensitivePersonNameMatching", False)
        configured, _ = settings_from_config(store)
    assert (defaults.case_insensitive_names, configured.case_insensitive_names) == (True, False)
