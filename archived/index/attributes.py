"""Extract the indexed attributes of an instance from a pydicom Dataset."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from archived.index.model import InstanceAttributes

# InstanceAttributes field -> DICOM keyword, for the optional (string) attributes.
FIELD_KEYWORDS: dict[str, str] = {
    "pat_id": "PatientID",
    "pat_id_issuer": "IssuerOfPatientID",
    "pat_name": "PatientName",
    "pat_birthdate": "PatientBirthDate",
    "pat_sex": "PatientSex",
    "study_id": "StudyID",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "accession_no": "AccessionNumber",
    "ref_physician": "ReferringPhysicianName",
    "study_desc": "StudyDescription",
    "series_no": "SeriesNumber",
    "modality": "Modality",
    "series_desc": "SeriesDescription",
    "body_part": "BodyPartExamined",
    "series_date": "SeriesDate",
    "series_time": "SeriesTime",
    "institution": "InstitutionName",
    "station_name": "StationName",
    "inst_no": "InstanceNumber",
    "content_date": "ContentDate",
    "content_time": "ContentTime",
}

REQUIRED_KEYWORDS = ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID")


class MissingAttributeError(ValueError):
    """The dataset lacks an attribute the index needs (a UID of some level)."""


def text_of(ds: Dataset, keyword: str) -> str:
    """The element's value as one string (multiple values joined by backslash)."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def attributes_of(ds: Dataset) -> InstanceAttributes:
    """Read the index's attributes from ``ds`` (decoded with its Specific Character Set)."""
    uids = {}
    for keyword in REQUIRED_KEYWORDS:
        value = text_of(ds, keyword)
        if not value:
            raise MissingAttributeError(f"dataset has no {keyword}")
        uids[keyword] = value
    attrs = InstanceAttributes(
        sop_iuid=uids["SOPInstanceUID"],
        sop_cuid=uids["SOPClassUID"],
        series_iuid=uids["SeriesInstanceUID"],
        study_iuid=uids["StudyInstanceUID"],
    )
    for field, keyword in FIELD_KEYWORDS.items():
        setattr(attrs, field, text_of(ds, keyword))
    return attrs
