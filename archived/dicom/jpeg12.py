"""A pydicom pixel data decoder plugin for 12-bit JPEG Extended (process 4), through GDCM.

pydicom's own GDCM plugin refuses 12-bit precision, and the only plugin it ships that
accepts it (pylibjpeg-libjpeg) is GPLv3. GDCM's bundled 12-bit IJG decoder handles it:
transcode.py registers this module as plugin PLUGIN and names it when it decompresses a
12-bit JPEG Extended instance. The tests compare its output with DCMTK's dcmdjpeg.

pydicom calls ``is_available`` and reads ``DECODER_DEPENDENCIES`` when the plugin is
added, then ``decode_frame`` per frame (see pydicom's decoder plugin guide).
"""

from __future__ import annotations

from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import JPEGExtended12Bit

try:
    import gdcm
except ImportError:  # is_available() says so; pydicom then names the missing package
    gdcm = None

PLUGIN = "gdcm_12bit"  # the label pydicom knows it by
DECODER_DEPENDENCIES = {JPEGExtended12Bit: ("python-gdcm>=3.2.6",)}


def is_available(uid: str) -> bool:
    return gdcm is not None and uid == JPEGExtended12Bit


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """One JPEG Extended codestream with a precision of 9 to 12 bits, decoded to 16-bit
    little-endian samples (pydicom's GDCM plugin decodes 8-bit ones)."""
    if not 8 < runner.bits_stored <= 12:
        raise ValueError(
            f"12-bit JPEG Extended decoder: Bits Stored is {runner.bits_stored}, not 9-12"
        )
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    pixel_data = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    pixel_data.SetValue(fragments.__ref__())

    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(pixel_data)
    pi_type = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi_type))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    # Bits Allocated 12 selects GDCM's 12-bit IJG codec at once (16 would first try the
    # 16-bit one, which fails on the 12-bit frame and prints to stderr); the decoded
    # samples are 16 bits each all the same.
    image.SetPixelFormat(
        gdcm.PixelFormat(
            runner.samples_per_pixel, 12, runner.bits_stored, runner.bits_stored - 1,
            runner.pixel_representation,
        )
    )  # fmt: skip
    frame = image.GetBuffer()
    if frame is None:
        raise ValueError("GDCM could not decode the 12-bit JPEG Extended frame")
    # GDCM's Python binding returns the char buffer as str.
    decoded = frame.encode("utf-8", "surrogateescape")
    expected = runner.rows * runner.columns * runner.samples_per_pixel * 2
    if len(decoded) != expected:
        raise ValueError(
            f"GDCM decoded {len(decoded)} bytes of 12-bit JPEG Extended, not {expected}"
        )
    return decoded
