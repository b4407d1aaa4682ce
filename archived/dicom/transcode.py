"""Transcoding for retrieve: what a peer accepts per SOP class, and decompressing an
instance whose stored transfer syntax the peer does not take.

Decoding uses pydicom's pixel data plugins, all permissively licensed (why each package
is there: pyproject.toml): GDCM for JPEG (baseline, extended, lossless), JPEG-LS and
JPEG 2000, and through jpeg12.py for 12-bit JPEG Extended, which pydicom's GDCM plugin
refuses; pylibjpeg-openjpeg for HTJ2K; pydicom itself for RLE and Deflate. The
decompressed instance keeps its SOP Instance UID and every attribute except the Pixel Data
and, for YCbCr images, the Photometric Interpretation and Planar Configuration (the pixels
become RGB). Lossy Image Compression stays as stored: whoever compressed lossily should
have set it, and decompressing loses nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.pixels.decoders import JPEGExtended12BitDecoder
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGExtended12Bit
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import STATUS_FAILURE, STORAGE_SERVICE_CLASS_STATUS

from archived.dicom import jpeg12

LOG = logging.getLogger("archived.dicom.retrieve")

JPEGExtended12BitDecoder.add_plugin(jpeg12.PLUGIN, (jpeg12.__name__, "decode_frame"))


class CannotSend(Exception):
    """An instance the peer takes neither as stored nor decompressed; the message says
    which instance, why, and what to do."""


class AcceptedSyntaxes:
    """Transfer syntaxes a peer accepted, per SOP class, for the archive's C-STORE requests
    (C-MOVE: the sub-association; C-GET: the requestor's SCP-role contexts)."""

    def __init__(self, ae_title: str, contexts: Iterable[PresentationContext]) -> None:
        self.ae_title = ae_title
        self._by_class: dict[str, list[UID]] = {}
        for cx in contexts:
            if cx.as_scu:  # the contexts pynetdicom's send_c_store() may use
                self._by_class.setdefault(str(cx.abstract_syntax), []).append(
                    UID(cx.transfer_syntax[0])
                )

    @classmethod
    def of(cls, assoc: Association) -> AcceptedSyntaxes:
        peer = assoc.acceptor if assoc.is_requestor else assoc.requestor
        return cls(str(peer.ae_title).strip(), assoc.accepted_contexts)

    def of_class(self, sop_cuid: str) -> list[UID]:
        return self._by_class.get(sop_cuid, [])

    def takes_as_stored(self, sop_cuid: str, tsuid: UID) -> bool:
        """Whether pynetdicom sends the dataset without decoding pixels: the stored syntax
        was accepted, or it is uncompressed and an uncompressed syntax of the same byte
        order was (pynetdicom re-encodes explicit <-> implicit VR and inflates Deflate)."""
        accepted = self.of_class(sop_cuid)
        if tsuid in accepted:
            return True
        return not tsuid.is_compressed and any(
            not ts.is_compressed and ts.is_little_endian == tsuid.is_little_endian
            for ts in accepted
        )

    def takes_uncompressed(self, sop_cuid: str) -> bool:
        return any(not ts.is_compressed and ts.is_little_endian for ts in self.of_class(sop_cuid))


class SubAssociation:
    """What the C-MOVE destination accepted, recorded by an evt.EVT_ESTABLISHED handler
    bound to the move sub-association (pynetdicom establishes it after the handler's
    first two yields and fires the event before its associate() returns), and the
    C-STORE responses it refused with (evt.EVT_DIMSE_RECV): pynetdicom counts such an
    instance as one failed sub-operation and goes on, but logs neither its UID nor the
    peer's reason."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.accepted: AcceptedSyntaxes | None = None
        self.refused: list[str] = []  # SOP Instance UIDs the destination did not store

    def handle_established(self, event: Event) -> None:
        self.accepted = AcceptedSyntaxes.of(event.assoc)

    def handle_response(self, event: Event) -> None:
        command = event.message.command_set  # EVT_DIMSE_RECV: the message
        status = command.get("Status")
        if "AffectedSOPInstanceUID" not in command or status is None:
            return  # not a C-STORE response
        # As pynetdicom counts it: a failure, or a status the Storage Service has not.
        category = STORAGE_SERVICE_CLASS_STATUS.get(int(status), (STATUS_FAILURE, ""))[0]
        if category != STATUS_FAILURE:
            return
        uid = str(command.AffectedSOPInstanceUID)
        self.refused.append(uid)
        comment = str(command.get("ErrorComment", "") or "").strip()
        LOG.warning("C-MOVE to %s: instance %s not stored there: status 0x%04X%s; the "
                    "other instances go on", self.destination, uid, status,
                    f" ({comment})" if comment else "")  # fmt: skip


def sendable(ds: Dataset, peer: AcceptedSyntaxes) -> tuple[Dataset, bool]:
    """``ds`` ready for ``peer`` and whether it was transcoded: as stored when the peer
    takes the stored syntax, else decompressed to Explicit VR Little Endian (pynetdicom
    re-encodes it as Implicit VR when that is all the peer accepted).

    Raises CannotSend when neither is possible.
    """
    sop_cuid = str(ds.SOPClassUID)
    stored = UID(ds.file_meta.TransferSyntaxUID)
    if peer.takes_as_stored(sop_cuid, stored):
        return ds, False
    sop_class = UID(sop_cuid).name  # the UID itself when pydicom does not know it
    what = f"instance {ds.SOPInstanceUID} ({sop_class}, stored as {stored.name})"
    if not peer.of_class(sop_cuid):
        raise CannotSend(
            f"{what} not sent: {peer.ae_title} accepted no presentation context for "
            f"{sop_class}; configure {peer.ae_title} to accept that SOP class"
        )
    advice = f"configure {peer.ae_title} to accept {stored.name} for {sop_class}"
    if not stored.is_compressed or not peer.takes_uncompressed(sop_cuid):
        accepted = ", ".join(ts.name for ts in peer.of_class(sop_cuid))
        raise CannotSend(
            f"{what} not sent: {peer.ae_title} accepts only {accepted} for it and the "
            f"archive cannot convert to those; {advice}"
        )
    try:
        _decompress(ds)
    except Exception as exc:
        # Decoders are third-party C code that fail in many ways; one undecodable
        # instance must fail its own sub-operation, not the whole retrieve.
        reason = " ".join(str(exc).split())
        raise CannotSend(
            f"{what} not sent: {peer.ae_title} does not accept {stored.name} and "
            f"decompressing it failed ({type(exc).__name__}: {reason}); {advice}, or check "
            f"the stored file"
        ) from exc
    return ds, True


def _decompress(ds: Dataset) -> None:
    if "PixelData" not in ds:
        # Encapsulated syntaxes are explicit VR little endian apart from Pixel Data:
        # without pixels the dataset is already valid as Explicit VR Little Endian.
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return
    plugin = ""  # pydicom tries those it has in turn
    if ds.file_meta.TransferSyntaxUID == JPEGExtended12Bit and (ds.get("BitsStored") or 0) > 8:
        # Only jpeg12's: pydicom's GDCM plugin would refuse first, and pydicom logs each
        # refusal as an error with a traceback, for every frame of an instance that then
        # decodes fine.
        plugin = jpeg12.PLUGIN
    # The same instance in another encoding keeps its SOP Instance UID (pydicom would
    # generate a new one by default).
    ds.decompress(generate_instance_uid=False, decoding_plugin=plugin)
