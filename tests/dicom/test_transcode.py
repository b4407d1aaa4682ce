"""Retrieves to destinations that do not accept the stored transfer syntax: the archive
decompresses, with real peers (DCMTK storescu, movescu, getscu and storescp; pynetdicom
where DCMTK's tools cannot propose a syntax or report a status)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from archived.dicom import RemoteAE
from archived.dicom.connection import CONNECTION_HANDLERS
from tests.dicom.conftest import MODALITY, VIEWER, Archive
from tests.dicom.data import bundled, ct_study, dataset_bytes, sop_instance_uid
from tests.dicom.peers import StoreSCP, dcmtk
from tests.dicom.test_store import PROPOSE, storescu

# Bundled files in compressed transfer syntaxes, and what each one covers.
COMPRESSED = (
    "JPEG2000.dcm",  # JPEG 2000 (lossy syntax), 16 bit
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "SC_rgb_rle.dcm",  # RLE lossless, RGB
    "JPGExtended.dcm",  # JPEG extended, 12 bit
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL: becomes RGB
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1, RGB
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
)
STORESCU_PROPOSE = {**PROPOSE, JPEGLosslessSV1: "-xs", JPEG2000Lossless: "-xv",
                    ExplicitVRBigEndian: "-xb"}  # fmt: skip
# DCMTK's own decoders: an independent reference for the lossless syntaxes.
DCMTK_DECODER = {RLELossless: "dcmdrle", JPEGLossless: "dcmdjpeg", JPEGLosslessSV1: "dcmdjpeg",
                 JPEGLSLossless: "dcmdjpls"}  # fmt: skip


def uncompressed_only(directory: Path, ae_title: str, *extra: str) -> Iterator[StoreSCP]:
    scp = StoreSCP(directory, ae_title, extra=extra)
    yield scp
    scp.stop()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[StoreSCP]:
    """storescp as it comes: it accepts the uncompressed transfer syntaxes only."""
    yield from uncompressed_only(tmp_path / "plain", "PLAIN")


@pytest.fixture
def implicit(tmp_path: Path) -> Iterator[StoreSCP]:
    """storescp accepting Implicit VR Little Endian only."""
    yield from uncompressed_only(tmp_path / "implicit", "IMPLICIT", "+xi")


@pytest.fixture
def destinations(dest: StoreSCP, plain: StoreSCP, implicit: StoreSCP) -> dict[str, StoreSCP]:
    return {scp.ae_title: scp for scp in (dest, plain, implicit)}


@pytest.fixture
def archive(start_archive, destinations: dict[str, StoreSCP]) -> Archive:
    """The archive, knowing every storescp above as a move destination."""
    remotes = [RemoteAE(name, "127.0.0.1", scp.port) for name, scp in destinations.items()]
    return start_archive(remote_aes=(MODALITY, VIEWER, *remotes))


def store(archive: Archive, *paths: Path) -> None:
    """storescu where it can propose the file's syntax, a pynetdicom SCU where not."""
    for path in paths:
        tsuid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if tsuid in STORESCU_PROPOSE:
            storescu(archive, path, propose=STORESCU_PROPOSE[tsuid])
            continue
        ds = pydicom.dcmread(path)
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(ds.SOPClassUID, [tsuid])
        assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title)
        assert assoc.is_established
        try:
            assert assoc.send_c_store(path).Status == 0x0000
        finally:
            assoc.release()


def fresh_copy(source: Path, target: Path) -> Path:
    """``source`` with a SOP Instance UID of its own (bundled files share some)."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture
def compressed(archive: Archive, tmp_path: Path) -> list[Path]:
    """Instances in every compressed syntax with a decoder, stored in the archive: the
    bundled files, and 16-bit CT slices JPEG lossless encoded by DCMTK's dcmcjpeg."""
    directory = tmp_path / "compressed"
    directory.mkdir()
    paths = [fresh_copy(bundled(name), directory / name) for name in COMPRESSED]
    ct = ct_study(tmp_path / "ct", 2)
    for source, option, name in zip(ct, ("+el", "+e1"), ("ct_p14.dcm", "ct_sv1.dcm"),
                                    strict=True):  # fmt: skip
        dcmtk("dcmcjpeg", option, source, directory / name)  # process 14; SV1
        paths.append(directory / name)
    store(archive, *paths)
    return paths


def stored_syntax(path: Path) -> UID:
    return UID(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def movescu(archive: Archive, destination: str, paths: list[Path]) -> None:
    uids = "\\".join(sop_instance_uid(p) for p in paths)
    dcmtk("movescu", "-S", "-aem", destination, "-k", "QueryRetrieveLevel=IMAGE",
          "-k", f"SOPInstanceUID={uids}", "-aet", "MODALITY", "-aec", archive.ae_title,
          "127.0.0.1", str(archive.port))  # fmt: skip


def by_instance(paths: list[Path]) -> dict[str, Path]:
    return {sop_instance_uid(p): p for p in paths}


def attributes_without_pixels(ds: Dataset) -> bytes:
    """The non-pixel attributes, encoded implicit VR: equal whatever VR the syntax kept."""
    ds = copy.deepcopy(ds)
    for keyword in ("PixelData", "PhotometricInterpretation", "PlanarConfiguration"):
        if keyword in ds:
            delattr(ds, keyword)
    encoded = encode(ds, True, True)
    assert encoded is not None
    return encoded


def stored_copy(archive: Archive, path: Path) -> Path:
    (record,) = archive.index.files_of_instance(sop_instance_uid(path))
    return archive.online / record.filepath


def assert_decompressed(
    archive: Archive, received: Path, original: Path, syntax: UID, tmp_path: Path
) -> None:
    """``received`` is the archive's copy of ``original`` in ``syntax``: the same attributes,
    the pixels pydicom decodes from that copy (and DCMTK too, for lossless syntaxes)."""
    stored = stored_copy(archive, original)
    got = pydicom.dcmread(received)
    sent = pydicom.dcmread(stored)
    name = original.name
    assert got.file_meta.TransferSyntaxUID == syntax, name
    assert got.SOPInstanceUID == sent.SOPInstanceUID, name
    assert np.array_equal(got.pixel_array, sent.pixel_array), name
    ybr = str(sent.PhotometricInterpretation).startswith("YBR")
    assert got.PhotometricInterpretation == ("RGB" if ybr else sent.PhotometricInterpretation)
    assert attributes_without_pixels(got) == attributes_without_pixels(sent), name
    decoder = DCMTK_DECODER.get(stored_syntax(stored))
    if decoder is not None:
        reference = tmp_path / f"dcmtk-{name}"
        dcmtk(decoder, stored, reference)
        assert np.array_equal(got.pixel_array, pydicom.dcmread(reference).pixel_array), name


@pytest.mark.parametrize(
    ("destination", "syntax"),
    [("PLAIN", ExplicitVRLittleEndian), ("IMPLICIT", ImplicitVRLittleEndian)],
)
def test_movescu_to_uncompressed_only_destination_gets_decompressed_instances(
    archive: Archive, destinations: dict[str, StoreSCP], compressed: list[Path],
    destination: str, syntax: UID, tmp_path: Path,
) -> None:  # fmt: skip
    movescu(archive, destination, compressed)
    received = by_instance(destinations[destination].files())
    assert set(received) == set(by_instance(compressed))
    for path in compressed:
        assert_decompressed(archive, received[sop_instance_uid(path)], path, syntax, tmp_path)
    counters = archive.server.statistics()["counters"]
    assert counters["move_transcoded"] == counters["move_instances"] == len(compressed)


def test_getscu_accepting_only_uncompressed_gets_decompressed_instances(
    archive: Archive, compressed: list[Path], tmp_path: Path
) -> None:
    # getscu offers the storage SCP role with the uncompressed syntaxes only, whatever -x
    # option it is given; the archive sends Explicit VR Little Endian, getscu's first.
    out = tmp_path / "got"
    out.mkdir()
    uids = "\\".join(sop_instance_uid(p) for p in compressed)
    dcmtk("getscu", "-S", "--bit-preserving", "-od", out,
          "-k", "QueryRetrieveLevel=IMAGE", "-k", f"SOPInstanceUID={uids}",
          "-aet", "VIEWER", "-aec", archive.ae_title, "127.0.0.1", str(archive.port))  # fmt: skip
    received = by_instance(sorted(out.iterdir()))
    assert set(received) == set(by_instance(compressed))
    for path in compressed:
        got = received[sop_instance_uid(path)]
        assert_decompressed(archive, got, path, ExplicitVRLittleEndian, tmp_path)
    assert archive.server.statistics()["counters"]["get_transcoded"] == len(compressed)


def test_destination_accepting_the_stored_syntax_gets_bytes_as_stored_without_decoding(
    archive: Archive, compressed: list[Path]
) -> None:
    # storescp +xa accepts every compressed syntax here but JPEG lossless process 14.
    taken = [p for p in compressed if stored_syntax(p) != JPEGLossless]
    movescu(archive, "DEST", taken)
    received = by_instance(archive.dest.files())
    assert set(received) == set(by_instance(taken))
    for path in taken:
        got, stored = received[sop_instance_uid(path)], stored_copy(archive, path)
        assert stored_syntax(got) == stored_syntax(stored) == stored_syntax(path), path.name
        assert dataset_bytes(got) == dataset_bytes(stored), path.name
    counters = archive.server.statistics()["counters"]
    assert counters["move_instances"] == len(taken)
    assert "move_transcoded" not in counters


def damaged_jpeg2000(target: Path) -> Path:
    """A JPEG 2000 instance whose pixel data is no codestream: no decoder reads it."""
    ds = pydicom.dcmread(fresh_copy(bundled("JPEG2000.dcm"), target))
    ds.PixelData = encapsulate([b"this is not a JPEG 2000 codestream"])
    ds.save_as(target, enforce_file_format=True)
    return target


def test_instances_that_cannot_be_converted_fail_alone_and_the_log_says_why(
    archive: Archive, implicit: StoreSCP, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "in"
    directory.mkdir()
    damaged = damaged_jpeg2000(directory / "damaged.dcm")
    # Big endian: no decoding involved, yet pynetdicom cannot turn it into little endian.
    big_endian = fresh_copy(bundled("MR_small_bigendian.dcm"), directory / "big.dcm")
    fine = [fresh_copy(bundled(name), directory / name)
            for name in ("SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm")]  # fmt: skip
    paths = [damaged, *fine, big_endian]
    store(archive, *paths)

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", archive.port, ae_title=archive.ae_title,
                         evt_handlers=CONNECTION_HANDLERS)  # fmt: skip
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.SOPInstanceUID = [sop_instance_uid(p) for p in paths]
    with caplog.at_level(logging.ERROR, logger="archived.dicom.retrieve"):
        try:
            responses = list(assoc.send_c_move(
                query, "IMPLICIT", StudyRootQueryRetrieveInformationModelMove))  # fmt: skip
        finally:
            assoc.release()
    final, failed = responses[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 2)
    assert set(failed.FailedSOPInstanceUIDList) == {sop_instance_uid(damaged),
                                                    sop_instance_uid(big_endian)}  # fmt: skip
    assert set(by_instance(implicit.files())) == set(by_instance(fine))
    for path in fine:
        got = by_instance(implicit.files())[sop_instance_uid(path)]
        assert_decompressed(archive, got, path, ImplicitVRLittleEndian, tmp_path)

    lines = [r.getMessage() for r in caplog.records if r.name == "archived.dicom.retrieve"]
    for path, syntax, why in (
        (damaged, "JPEG 2000 Image Compression", "decompressing it failed"),
        (big_endian, "Explicit VR Big Endian", "cannot convert"),
    ):
        (line,) = [m for m in lines if sop_instance_uid(path) in m]
        assert syntax in line and why in line and "IMPLICIT" in line, line
        assert f"configure IMPLICIT to accept {syntax}" in line, line
    assert archive.server.statistics()["counters"]["move_untranscodable"] == 2
