"""Presentation contexts the archive accepts: storage, query/retrieve, verification, commitment."""

from __future__ import annotations

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
STORAGE_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, HTJ2KLossless,
    HTJ2KLosslessRPCL, HTJ2K, RLELossless,
]  # fmt: skip
STORAGE_SOP_CLASSES = [
    cx.abstract_syntax for cx in AllStoragePresentationContexts if cx.abstract_syntax is not None
]

FIND = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
MOVE = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
GET = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
STUDY_ROOT = {
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
}


def add_supported_contexts(ae: AE) -> None:
    """Everything the archive serves as an association acceptor."""
    ae.add_supported_context(Verification)
    for sop_class in STORAGE_SOP_CLASSES:
        # scp_role: a C-GET requestor acts as Storage SCP on the same association.
        ae.add_supported_context(sop_class, STORAGE_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    for sop_class in (*FIND, *MOVE, *GET):
        ae.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_supported_context(
        StorageCommitmentPushModel, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    )


def permitted(
    abstract_syntax: str, store: bool, query: bool, retrieve: bool, requestor_scp: bool
) -> bool:
    """Whether an AE with these permissions may use a context of this abstract syntax.

    ``requestor_scp``: the requestor asked for the SCP role for this SOP class (it wants
    to receive C-GET sub-operations on it).
    """
    if abstract_syntax in FIND:
        return query
    if abstract_syntax in (*MOVE, *GET):
        return retrieve
    if abstract_syntax == StorageCommitmentPushModel:
        return store
    if abstract_syntax == Verification:
        return True
    return store or (retrieve and requestor_scp)


def prefer_requestor_order(
    supported: list[PresentationContext], requested: list[PresentationContext]
) -> None:
    """Reorder each supported context's syntaxes to the requestor's preference (in place).

    pynetdicom accepts the first of the acceptor's syntaxes that was proposed; a modality
    lists its preferred (usually the stored, possibly compressed) syntax first, and that
    is the one the archive should keep. Only for this association's deep copy.
    """
    preference: dict[str, list[str]] = {}
    for cx in requested:
        preference.setdefault(str(cx.abstract_syntax), []).extend(
            str(ts) for ts in cx.transfer_syntax
        )
    for cx in supported:
        wanted = preference.get(str(cx.abstract_syntax))
        if not wanted:
            continue
        rank = {ts: n for n, ts in enumerate(dict.fromkeys(wanted))}
        cx.transfer_syntax = sorted(cx.transfer_syntax, key=lambda ts: rank.get(str(ts), len(rank)))
