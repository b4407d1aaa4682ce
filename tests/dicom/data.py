"""Test data: generated CT studies (pydicom + numpy) and pydicom's bundled files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Bundled files of varied SOP classes and transfer syntaxes (no download needed).
VARIETY = (
    "CT_small.dcm",  # CT, explicit VR little endian
    "MR_small_implicit.dcm",  # MR, implicit VR little endian
    "MR_small_RLE.dcm",  # RLE lossless
    "JPEG2000.dcm",  # JPEG 2000
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEG-lossy.dcm",  # JPEG extended (12 bit)
    "image_dfl.dcm",  # deflated explicit VR little endian
    "rtplan.dcm",  # RT Plan: nested sequences, no pixels
)


def bundled(name: str) -> Path:
    path = PYDICOM_FILES / name
    assert path.is_file(), f"pydicom no longer ships {name}"
    return path


def ct_study(
    directory: Path, slices: int, rows: int = 64, columns: int = 64, *,
    patient_id: str = "PAT1", patient_name: str = "DOE^JANE", study_uid: str | None = None,
    seed: int = 1,
) -> list[Path]:  # fmt: skip
    """Write a CT series of ``slices`` 16-bit images; return the paths in slice order."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    paths = []
    for n in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.PatientID = patient_id
        ds.PatientName = patient_name
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.StudyDate = "20240102"
        ds.StudyTime = "101500"
        ds.StudyID = "1"
        ds.AccessionNumber = f"ACC-{patient_id}"
        ds.Modality = "CT"
        ds.SeriesNumber = 1
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [0, 0, float(n)]
        ds.SliceThickness = 1.0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = rng.integers(0, 4096, (rows, columns), dtype=np.uint16).tobytes()
        path = directory / f"ct{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part 10 file without preamble and File Meta group."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", f"{path} is not a Part 10 file"
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]


def sop_instance_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def variety(directory: Path) -> list[Path]:
    """Copies of the VARIETY files, each with a fresh SOP Instance UID (some share one)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in VARIETY:
        ds = pydicom.dcmread(bundled(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = directory / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
