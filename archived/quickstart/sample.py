"""A sample study for the quick start, and the check that a retrieved copy is the same.

The sample is five CT images made from pydicom's bundled CT_small.dcm, with UIDs of their
own (generated once, kept in the directory). ``compare`` matches files by SOP Instance
UID and compares their data sets byte for byte: the File Meta group is left out, since
each receiver writes its own (implementation UID and name).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SAMPLE_SLICES = 5
PATIENT_ID = "QS0001"
PATIENT_NAME = "QUICKSTART^SAMPLE"


def sample_study(directory: Path) -> tuple[str, list[Path]]:
    """The sample's Study Instance UID and files, written on the first call."""
    files = sorted(directory.glob("*.dcm"))
    if len(files) < SAMPLE_SLICES:
        files = _write(directory)
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    return str(study), files


def _write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    source = get_testdata_file("CT_small.dcm")
    assert source is not None, "pydicom's test file CT_small.dcm is missing"
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for number in range(1, SAMPLE_SLICES + 1):
        ds = pydicom.dcmread(source)
        ds.PatientID, ds.PatientName = PATIENT_ID, PATIENT_NAME
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyDescription = "hsmfs + archived quick start sample"
        ds.SeriesDescription = f"{SAMPLE_SLICES} CT slices"
        ds.InstanceNumber = number
        # DCMTK's storescu drops trailing padding when it sends: without it, the file
        # and what the archive receives are the same data set.
        if 0xFFFCFFFC in ds:
            del ds[0xFFFCFFFC]
        path = directory / f"CT{number:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def data_set_bytes(path: Path) -> bytes:
    """A Part 10 file without its preamble and File Meta group."""
    data = path.read_bytes()
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise ValueError(f"{path}: not a DICOM Part 10 file with a File Meta group length")
    meta_length = int.from_bytes(data[140:144], "little")
    return data[144 + meta_length :]


def sop_instances(directory: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        except (pydicom.errors.InvalidDicomError, AttributeError, OSError):
            continue
        found[str(uid)] = path
    return found


def compare(sent: Path, received: Path) -> tuple[bool, list[str]]:
    """(every sent instance came back identical, one line per instance)."""
    theirs = sop_instances(received)
    lines, same = [], True
    for uid, path in sop_instances(sent).items():
        copy = theirs.get(uid)
        if copy is None:
            same = False
            lines.append(f"{path.name}: MISSING from {received}")
        elif data_set_bytes(copy) == data_set_bytes(path):
            lines.append(f"{path.name}: identical to {copy.name} (data set byte for byte)")
        else:
            same = False
            lines.append(f"{path.name}: DIFFERENT from {copy.name}")
    if not lines:
        return False, [f"{sent}: no DICOM files"]
    return same, lines
