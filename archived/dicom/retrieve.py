"""C-MOVE and C-GET SCP: read each instance from its best copy and hand it to pynetdicom.

Copies are tried best first (ONLINE, then NEARLINE through the hsmfs mount as
``<mount>/<tarpath>!<member>``). Datasets are read by a worker thread a few instances
ahead; while it waits on slow storage (hsmfs staging from S3) the handler sends a pending
response every ``pending_interval`` seconds, so the requestor's DIMSE timeout does not
expire. Pending responses sent that way count sub-operations handed to pynetdicom as
completed; failures reported by the destination appear in the final response.

Files are sent as stored when the destination accepts the stored transfer syntax: C-MOVE
proposes the stored syntaxes of every SOP class plus uncompressed fallbacks, and
pynetdicom picks the exact match when accepted. Otherwise the same worker thread
decompresses the instance (transcode.py) to a syntax the destination accepted; an
instance that cannot be converted fails its own sub-operation, logged with what to do.
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
from pynetdicom import build_context, evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from archived.dicom.connection import CONNECTION_HANDLERS
from archived.dicom.find import query_level
from archived.dicom.peer import describe_peer
from archived.dicom.settings import DicomSettings
from archived.dicom.stats import ServiceStatistics
from archived.dicom.transcode import AcceptedSyntaxes, CannotSend, SubAssociation, sendable
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
class Prepared:
    """An instance ready to hand to pynetdicom, or None when it cannot be sent."""

    dataset: Dataset | None
    counter: str | None = None  # what happened, when worth counting: "unreadable", ...


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
        """Contexts for a move sub-association: stored syntaxes first, then uncompressed
        fallbacks for every SOP class (sent as is, or decompressed into)."""
        exact: dict[tuple[str, str], None] = {}
        fallback: dict[str, None] = {}
        for item in items:
            if item.copies:
                exact[(item.sop_cuid, UID(item.copies[0].tsuid))] = None
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

    def prepare(self, item: RetrieveItem, peer: AcceptedSyntaxes) -> Prepared:
        """Read the instance and make it sendable to ``peer`` (worker thread)."""
        ds = self.read_best(item)
        if ds is None:
            return Prepared(None, "unreadable")
        try:
            ds, transcoded = sendable(ds, peer)
        except CannotSend as exc:
            LOG.error("%s", exc)
            return Prepared(None, "untranscodable")
        return Prepared(ds, "transcoded" if transcoded else None)

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
        sub = SubAssociation(destination)
        yield remote.host, remote.port, {
            "contexts": self.contexts(items), "max_pdu": self.settings.max_pdu,
            "evt_handlers": [*CONNECTION_HANDLERS, (evt.EVT_ESTABLISHED, sub.handle_established),
                             (evt.EVT_DIMSE_RECV, sub.handle_response)],
        }  # fmt: skip
        yield len(items)
        # pynetdicom resumes the handler only once the sub-association is established.
        if sub.accepted is None:
            raise RuntimeError(f"C-MOVE to {destination}: no established sub-association")
        yield from self._send(event, items, C_MOVE, "move", sub.accepted)
        if sub.refused:
            self.stats.count("move_refused_by_destination", len(sub.refused))
            LOG.warning("C-MOVE from %s to %s: %d of %d instances refused by %s (named "
                        "above); the C-MOVE response lists them as failed", peer,
                        destination, len(sub.refused), len(items), destination)  # fmt: skip

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
        yield from self._send(event, items, C_GET, "get", AcceptedSyntaxes.of(event.assoc))

    def _send(
        self, event: Event, items: Sequence[RetrieveItem], primitive: type, name: str,
        peer: AcceptedSyntaxes,
    ) -> Iterator[tuple[int, Dataset]]:  # fmt: skip
        unsent = 0
        handed = 0

        def keepalive() -> None:
            _send_pending(event, primitive, len(items), handed - unsent, unsent)

        for item, prepared in self._prefetched(items, peer, keepalive):
            if event.is_cancelled:
                LOG.info("C-%s from %s cancelled", name.upper(), describe_peer(event.assoc))
                yield CANCEL, None  # type: ignore[misc]
                return
            if prepared.counter is not None:
                self.stats.count(f"{name}_{prepared.counter}")
            ds = prepared.dataset
            if ds is None:
                unsent += 1
                ds = _unsendable(item)
            handed += 1
            yield PENDING, ds
        self.stats.count(f"{name}_instances", handed - unsent)

    def _prefetched(
        self, items: Sequence[RetrieveItem], peer: AcceptedSyntaxes,
        keepalive: Callable[[], None],
    ) -> Iterator[tuple[RetrieveItem, Prepared]]:  # fmt: skip
        with ThreadPoolExecutor(1, thread_name_prefix="archived-read") as pool:
            queued: deque[tuple[RetrieveItem, Future[Prepared]]] = deque()
            pending = iter(items)
            for item in pending:
                queued.append((item, pool.submit(self.prepare, item, peer)))
                if len(queued) >= PREFETCH:
                    break
            try:
                while queued:
                    item, future = queued.popleft()
                    prepared = _wait(future, self.settings.pending_interval, keepalive)
                    following = next(pending, None)
                    if following is not None:
                        queued.append((following, pool.submit(self.prepare, following, peer)))
                    yield item, prepared
            finally:
                for _, future in queued:
                    future.cancel()


def _wait(future: Future, interval: float, keepalive: Callable[[], None]) -> Prepared:
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


def _send_pending(event: Event, primitive: type, total: int, completed: int, failed: int) -> None:
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
