"""Retrieves to destinations that do not accept the stored transfer syntax: the archive
decompresses, with real peers (DCMTK storescu, movescu, getscu and storescp; pynetdicom
where DCMTK's tools cannot propose a syntax or report a status)."""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
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
from archived.dicom.transcode import AcceptedSyntaxes, sendable
from tests.dicom.conftest import MODALITY, VIEWER, Archive
from tests.dicom.data import bundled, ct_study, dataset_bytes, sop_instance_uid
from tests.dicom.peers import StoreSCP, dcmtk
from tests.dicom.test_store import PROPOSE, storescu

# Bundled files in compressed transfer syntaxes, and what each one covers.
COMPRESSED = (
    "JPEG2000.dcm",  # JPEG 2000 (lossy syntax), 16 bit
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "SC_rgb_rle.dcm",  # RLE lossless, RGB
    "JPGExtended.dcm",  # JPEG extended, 12 bit: archived/dicom/jpeg12.py
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL: becomes RGB
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1, RGB
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
)
STORESCU_PROPOSE = {**PROPOSE, JPEGLosslessSV1: "-xs", JPEG2000Lossless: "-xv",
                    ExplicitVRBigEndian: "-xb"}  # fmt: skip
# DCMTK's own decoders: an independent reference for the lossless syntaxes, and for 12-bit
# JPEG extended, which the archive's own GDCM plugin decodes (GDCM and DCMTK both build on
# IJG's 12-bit libjpeg and agree to the bit).
DCMTK_DECODER = {RLELossless: "dcmdrle", JPEGLossless: "dcmdjpeg", JPEGLosslessSV1: "dcmdjpeg",
                 JPEGLSLossless: "dcmdjpls", JPEGExtended12Bit: "dcmdjpeg"}  # fmt: skip


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


def htj2k_lossless(target: Path) -> Path:
    """An instance in HTJ2K Lossless: a JPEG 2000 Part 1 codestream, which HTJ2K decoders
    read too. No HTJ2K encoder installs as a wheel here, so this checks that pydicom finds
    pylibjpeg-openjpeg for the HTJ2K syntaxes; its HT block decoder is its authors' to test."""
    ds = pydicom.dcmread(fresh_copy(bundled("MR_small_jp2klossless.dcm"), target))
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture
def compressed(archive: Archive, tmp_path: Path) -> list[Path]:
    """Instances in every compressed syntax with a decoder, stored in the archive: the
    bundled files, one in HTJ2K Lossless, and 16-bit CT slices JPEG lossless encoded by
    DCMTK's dcmcjpeg."""
    directory = tmp_path / "compressed"
    directory.mkdir()
    paths = [fresh_copy(bundled(name), directory / name) for name in COMPRESSED]
    paths.append(htj2k_lossless(directory / "htj2k.dcm"))
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
    # storescp +xa accepts every compressed syntax here but JPEG lossless process 14 and
    # HTJ2K (DCMTK 3.6.7 predates it).
    taken = [p for p in compressed if stored_syntax(p) not in (JPEGLossless, HTJ2KLossless)]
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


def test_12_bit_jpeg_extended_decodes_through_gdcm_like_dcmtk_and_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # pydicom's GDCM plugin refuses 12-bit JPEG extended; archived/dicom/jpeg12.py decodes
    # it, also when another plugin that could is installed.
    (slice_,) = ct_study(tmp_path / "ct", 1)
    ds = pydicom.dcmread(slice_)
    frames = np.stack([ds.pixel_array, ds.pixel_array[::-1], 4095 - ds.pixel_array])
    ds.NumberOfFrames = len(frames)
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "frames.dcm", enforce_file_format=True)
    dcmtk("dcmcjpeg", "+ee", tmp_path / "frames.dcm", tmp_path / "ext12.dcm")  # process 4
    dcmtk("dcmdjpeg", tmp_path / "ext12.dcm", tmp_path / "reference.dcm")
    stored = pydicom.dcmread(tmp_path / "ext12.dcm")
    assert stored.file_meta.TransferSyntaxUID == JPEGExtended12Bit
    context = SimpleNamespace(as_scu=True, abstract_syntax=stored.SOPClassUID,
                              transfer_syntax=[ExplicitVRLittleEndian])  # fmt: skip
    peer = AcceptedSyntaxes("PLAIN", [context])  # type: ignore[list-item]
    capfd.readouterr()

    with caplog.at_level(logging.DEBUG):
        sent, transcoded = sendable(stored, peer)

    assert transcoded and sent.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert sent.SOPInstanceUID == stored.SOPInstanceUID
    reference = pydicom.dcmread(tmp_path / "reference.dcm").pixel_array
    assert np.array_equal(sent.pixel_array, reference)
    # Nothing said about a decode that went well: no pydicom error per frame for a plugin
    # that refused before jpeg12 ran, and nothing from GDCM on stderr (it prints when it
    # tries its 16-bit codec first).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr() == ("", "")


# The pixel decoders the archive requires at run time (pyproject.toml).
DECODERS = ("numpy", "python-gdcm", "pylibjpeg", "pylibjpeg-openjpeg")


def test_pixel_decoders_and_their_requirements_are_permissively_licensed() -> None:
    # The archive is Apache-2.0 and ships to hospitals: no GPL, LGPL or AGPL decoder. The
    # one pydicom plugin for 12-bit JPEG extended, pylibjpeg-libjpeg, is GPLv3.
    def name(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.split(r"[ ;<>=!~\[(]", requirement)[0]).lower()

    required = {name(r) for r in importlib.metadata.requires("hsmfs-archived") or ()
                if "extra ==" not in r}  # fmt: skip
    assert set(DECODERS) <= required
    assert "pylibjpeg-libjpeg" not in required
    licenses: dict[str, list[str]] = {}
    todo = list(DECODERS)
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        meta = dist.metadata
        licenses[name(meta["Name"])] = [
            meta.get("License-Expression") or "",
            (meta.get("License") or "").partition("\n")[0],
            *(c for c in meta.get_all("Classifier") or () if c.startswith("License ::")),
        ]
        todo += [name(r) for r in dist.requires or () if "extra ==" not in r
                 and name(r) not in licenses]  # fmt: skip
    assert set(licenses) >= set(DECODERS)
    for package, texts in licenses.items():
        assert any(texts), f"{package} declares no license"
        assert not any("GPL" in text.upper() for text in texts), (package, texts)
