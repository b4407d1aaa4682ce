"""C-MOVE and C-GET SCP: read each instance from its best copy and hand it to pynetdicom.

Copies are tried best first (ONLINE, then NEARLINE through the hsmfs mount as
``<mount>/<tarpath>!<member>``). Datasets are read by a worker thread a few instances
ahead; while it waits on slow storage (hsmfs staging from S3) the handler sends a pending
response every ``pending_interval`` seconds, so the requestor's DIMSE timeout does not
expire. Pending responses sent that way count sub-operations handed to pynetdicom as
completed; failures reported by the destination appear in the final response.

Files are sent as stored: C-MOVE proposes the stored transfer syntax of every SOP class
(plus uncompressed fallbacks), and pynetdicom picks the exact match when accepted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from archived.dicom.connection import CONNECTION_HANDLERS
from archived.dicom.find import query_level
from archived.dicom.peer import describe_peer
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics
from archived.index import FileRecord, Index
from archived.index.query import QueryError, match_pks

LOG = logging.getLogger("archived.dicom.retrieve")

PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_MISMATCH = 0xA900
PREFETCH = 2
MAX_CONTEXTS = 128
# A transfer syntax no peer negotiates: a dataset carrying it cannot be sent, so
# pynetdicom counts a failed sub-operation and lists its SOP Instance UID.
UNSENDABLE_SYNTAX = UID("2.25.284430389943307061175347568422850368754")


@dataclass(frozen=True)
class RetrieveItem:
    instance_pk: int
    sop_iuid: str
    sop_cuid: str
    study_iuid: str
    copies: tuple[FileRecord, ...]


class Retriever:
    """Handlers for evt.EVT_C_MOVE and evt.EVT_C_GET."""

    def __init__(self, settings: DicomSettings, index: Index, stats: ServiceStatistics) -> None:
        self.settings = settings
        self.index = index
        self.stats = stats

    # -- what to send -------------------------------------------------------------------

    def plan(self, identifier: Dataset, level: str) -> list[RetrieveItem]:
        conn = self.index.read()
        pks = match_pks(conn, identifier, level, "IMAGE")
        rows: dict[int, tuple[str, str, str]] = {}
        for start in range(0, len(pks), 500):
            chunk = pks[start : start + 500]
            for pk, sop_iuid, sop_cuid, study_iuid in conn.execute(
                f"""SELECT i.pk, i.sop_iuid, i.sop_cuid, st.study_iuid FROM instance i
                    JOIN series se ON se.pk = i.series_fk JOIN study st ON st.pk = se.study_fk
                    WHERE i.pk IN ({",".join("?" * len(chunk))})""",
                chunk,
            ):
                rows[pk] = (sop_iuid, sop_cuid, study_iuid)
        copies = self.index.best_files(pks)
        return [RetrieveItem(pk, *rows[pk], tuple(copies[pk])) for pk in pks if pk in rows]

    def touch(self, items: Sequence[RetrieveItem]) -> None:
        for study_iuid in dict.fromkeys(item.study_iuid for item in items):
            self.index.touch_study(study_iuid)

    @staticmethod
    def contexts(items: Sequence[RetrieveItem]) -> list[PresentationContext]:
        """Contexts for a move sub-association: stored syntaxes first, then fallbacks."""
        exact: dict[tuple[str, str], None] = {}
        fallback: dict[str, None] = {}
        for item in items:
            if item.copies:
                tsuid = UID(item.copies[0].tsuid)
                exact[(item.sop_cuid, tsuid)] = None
                if not tsuid.is_compressed or tsuid.is_deflated:
                    fallback[item.sop_cuid] = None
            else:
                fallback[item.sop_cuid] = None
        contexts = [build_context(cuid, [ts]) for cuid, ts in exact]
        contexts += [
            build_context(cuid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            for cuid in fallback
        ]
        if len(contexts) > MAX_CONTEXTS:
            LOG.warning("retrieve needs %d presentation contexts; proposing the first %d",
                        len(contexts), MAX_CONTEXTS)  # fmt: skip
        return contexts[:MAX_CONTEXTS]

    def read_best(self, item: RetrieveItem) -> Dataset | None:
        """The instance from its first readable copy; None when no copy can be read."""
        for copy in item.copies:
            path = copy.absolute_path
            try:
                # One sequential read: what a staging hsmfs mount serves best (no seeks).
                ds = dcmread(BytesIO(path.read_bytes()))
                if str(ds.SOPInstanceUID) != item.sop_iuid:
                    raise InvalidDicomError(f"holds {ds.SOPInstanceUID}")
                return ds
            except (OSError, InvalidDicomError, AttributeError, ValueError) as exc:
                LOG.error("copy %s of %s (%s) cannot be read: %s",
                          copy.pk, item.sop_iuid, path, exc)  # fmt: skip
        return None

    # -- handlers -----------------------------------------------------------------------

    def handle_move(self, event: Event) -> Iterator[object]:
        peer = describe_peer(event.assoc)
        destination = str(event.move_destination or "").strip()
        remote = self.settings.remote(destination)
        if remote is None or not remote.host or not remote.port:
            LOG.warning("C-MOVE from %s to %r refused: destination unknown or not listening "
                        "(configure it with `archivectl ae add`)", peer, destination)  # fmt: skip
            self.stats.count("move_failed")
            yield None, None
            return
        try:
            identifier, level = query_level(event)
            items = self.plan(identifier, level)
        except QueryError as exc:
            LOG.warning("C-MOVE from %s refused: %s", peer, exc)
            self.stats.count("move_failed")
            yield remote.host, remote.port
            yield 1
            yield IDENTIFIER_MISMATCH, None
            return
        self.touch(items)
        LOG.info("C-MOVE %s from %s to %s: %d instances", level, peer, destination, len(items))
        yield remote.host, remote.port, {
            "contexts": self.contexts(items), "evt_handlers": CONNECTION_HANDLERS,
            "max_pdu": self.settings.max_pdu,
        }  # fmt: skip
        yield len(items)
        yield from self._send(event, items, C_MOVE, "move")

    def handle_get(self, event: Event) -> Iterator[object]:
        peer = describe_peer(event.assoc)
        try:
            identifier, level = query_level(event)
            items = self.plan(identifier, level)
        except QueryError as exc:
            LOG.warning("C-GET from %s refused: %s", peer, exc)
            self.stats.count("get_failed")
            yield 1
            yield IDENTIFIER_MISMATCH, None
            return
        self.touch(items)
        LOG.info("C-GET %s from %s: %d instances", level, peer, len(items))
        yield len(items)
        yield from self._send(event, items, C_GET, "get")

    def _send(
        self, event: Event, items: Sequence[RetrieveItem], primitive: type, name: str
    ) -> Iterator[tuple[int, Dataset]]:
        unreadable = 0
        handed = 0

        def keepalive() -> None:
            _send_pending(event, primitive, len(items), handed - unreadable, unreadable)

        for item, ds in self._prefetched(items, keepalive):
            if event.is_cancelled:
                LOG.info("C-%s from %s cancelled", name.upper(), describe_peer(event.assoc))
                yield CANCEL, None  # type: ignore[misc]
                return
            if ds is None:
                unreadable += 1
                self.stats.count(f"{name}_unreadable")
                ds = _unsendable(item)
            handed += 1
            yield PENDING, ds
        self.stats.count(f"{name}_instances", handed - unreadable)

    def _prefetched(
        self, items: Sequence[RetrieveItem], keepalive: Callable[[], None]
    ) -> Iterator[tuple[RetrieveItem, Dataset | None]]:
        with ThreadPoolExecutor(1, thread_name_prefix="archived-read") as pool:
            queued: deque[tuple[RetrieveItem, Future[Dataset | None]]] = deque()
            pending = iter(items)
            for item in pending:
                queued.append((item, pool.submit(self.read_best, item)))
                if len(queued) >= PREFETCH:
                    break
            try:
                while queued:
                    item, future = queued.popleft()
                    ds = _wait(future, self.settings.pending_interval, keepalive)
                    following = next(pending, None)
                    if following is not None:
                        queued.append((following, pool.submit(self.read_best, following)))
                    yield item, ds
            finally:
                for _, future in queued:
                    future.cancel()


def _wait(future: Future, interval: float, keepalive: Callable[[], None]) -> Dataset | None:
    while True:
        try:
            return future.result(timeout=interval)
        except FutureTimeout:
            keepalive()


def _unsendable(item: RetrieveItem) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = item.sop_cuid
    ds.SOPInstanceUID = item.sop_iuid
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UNSENDABLE_SYNTAX
    return ds


def _send_pending(
    event: Event, primitive: type, total: int, completed: int, failed: int
) -> None:
    """A pending C-MOVE/C-GET response outside pynetdicom's per-sub-operation ones."""
    rsp = primitive()
    rsp.MessageIDBeingRespondedTo = event.request.MessageID
    rsp.AffectedSOPClassUID = event.request.AffectedSOPClassUID
    rsp.Status = PENDING
    rsp.NumberOfRemainingSuboperations = total - completed - failed
    rsp.NumberOfCompletedSuboperations = completed
    rsp.NumberOfFailedSuboperations = failed
    rsp.NumberOfWarningSuboperations = 0
    LOG.info("retrieve for %s waits on storage; pending response sent",
             describe_peer(event.assoc))  # fmt: skip
    event.assoc.dimse.send_msg(rsp, event.context.context_id)
