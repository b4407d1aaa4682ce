"""C-FIND SCP, Patient Root and Study Root, on the index."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from archived.dicom.contexts import STUDY_ROOT
from archived.dicom.find_negotiation import combined_datetime
from archived.dicom.peer import describe_peer
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics
from archived.index import Index
from archived.index.query import MatchOptions, QueryError, find

LOG = logging.getLogger("archived.dicom.find")

PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_MISMATCH = 0xA900
OUT_OF_RESOURCES = 0xA700
UNABLE_TO_PROCESS = 0xC000


def query_level(event: Event) -> tuple[Dataset, str]:
    """The request's identifier and level; QueryError if unusable for its information model."""
    try:
        identifier = event.identifier
        level = str(identifier.QueryRetrieveLevel).strip().upper()
    except Exception as exc:
        raise QueryError(f"identifier without a usable QueryRetrieveLevel: {exc}") from exc
    if level == "PATIENT" and event.request.AffectedSOPClassUID in STUDY_ROOT:
        raise QueryError("Study Root has no PATIENT level")
    return identifier, level


def failure(status: int, comment: str) -> Dataset:
    """A failure status whose Error Comment tells the requestor what was wrong."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment.replace("\\", "/")[:64]  # LO: 64 characters, no backslash
    return ds


class FindSCP:
    def __init__(self, settings: DicomSettings, index: Index, stats: ServiceStatistics) -> None:
        self.settings = settings
        self.index = index
        self.stats = stats

    def match_options(self, event: Event) -> MatchOptions:
        """This request's matching: the configured name matching, the negotiated date-time."""
        return MatchOptions(
            case_insensitive_names=self.settings.case_insensitive_names,
            combined_datetime=combined_datetime(
                event.assoc, str(event.request.AffectedSOPClassUID or "")
            ),
        )

    def handle(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        peer = describe_peer(event.assoc)
        try:
            identifier, level = query_level(event)
            matches = find(self.index.read(), identifier, level, self.settings.ae_title,
                           self.match_options(event))  # fmt: skip
            count = 0
            for response in matches:
                if event.is_cancelled:
                    LOG.info("C-FIND from %s cancelled after %d matches", peer, count)
                    yield CANCEL, None
                    return
                count += 1
                yield PENDING, response
        except QueryError as exc:
            LOG.warning("C-FIND from %s refused: %s", peer, exc)
            self.stats.count("find_failed")
            yield failure(IDENTIFIER_MISMATCH, str(exc)), None
            return
        except sqlite3.Error as exc:
            LOG.error("C-FIND from %s failed: index error: %s", peer, exc)
            self.stats.count("find_failed")
            yield OUT_OF_RESOURCES, None
            return
        self.stats.count("find")
        LOG.info("C-FIND %s from %s: %d matches", level, peer, count)
        yield 0x0000, None
