"""The stager's part-file operations run in worker threads: the order readers rely on.

In process, on the resident-data layer (no FUSE mount): the rename of a finished part
file and the removal of a failed one are held in their worker thread, and a reader that
comes meanwhile must wait for the stage's end instead of failing, and a new stage must
not create its part file before the failed one's is gone.
"""

from __future__ import annotations

import os
import random
import stat
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from hsmfs import stager as stager_module
from hsmfs.backends import TemporaryFailure
from hsmfs.backends.local import LocalStore
from hsmfs.cache import CacheDir
from hsmfs.catalog import ROOT_INO, Catalog, HsmState
from hsmfs.checksums import BLOCK_SIZE, file_checksums
from hsmfs.config import HsmSettings
from hsmfs.resident import ResidentData

BOUND = 60.0  # seconds; every wait below is for a condition, this only ends a broken test
DATA = random.Random(11).randbytes(2 * BLOCK_SIZE + 17)


@dataclass
class Released:
    """A catalog with one released file ("f", ``DATA``) and its object in a local store."""

    catalog: Catalog
    cache: CacheDir
    store: LocalStore
    ino: int


@pytest.fixture
def released(tmp_path: Path) -> Released:
    source = tmp_path / "source"
    source.write_bytes(DATA)
    crcs, md5 = file_checksums(source)
    store = LocalStore(tmp_path / "objects")
    (tmp_path / "objects").mkdir()
    store.upload("f", source, md5=md5)
    catalog = Catalog(tmp_path / "catalog")
    with catalog.write() as txn:
        node = txn.new_inode(stat.S_IFREG | 0o644, os.getuid(), os.getgid())
        node.size = len(DATA)
        node.hsm_state = HsmState.RELEASED
        txn.put_inode(node)
        txn.add_entry(ROOT_INO, b"f", node.ino)
        txn.set_hsm_record(node.ino, {"key": "f", "md5": md5, "size": len(DATA), "crcs": crcs})
    return Released(catalog, CacheDir(tmp_path / "cache"), store, node.ino)


def run_resident(released: Released, body: Callable[[ResidentData], Awaitable[None]]) -> None:
    """Run ``body`` against the resident data of the catalog, as the mount wires it."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            resident = ResidentData(
                released.catalog, released.cache, released.store, HsmSettings,
                io_limiter=trio.CapacityLimiter(4), backend_limiter=trio.CapacityLimiter(2),
                nursery=nursery,
            )  # fmt: skip
            with trio.fail_after(BOUND):
                await body(resident)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        released.catalog.close()


async def read_whole_file(resident: ResidentData, ino: int, into: dict[str, Any]) -> None:
    data = await resident.open(ino, create=False)
    into["data"] = bytes(await data.read(0, len(DATA)))
    await resident.close(data)


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await trio.sleep(0.01)


def held(
    let_go: threading.Event, real: Callable[..., None], *, after: bool
) -> tuple[Callable[..., None], threading.Event]:
    """``real`` as its worker thread runs it, but held until ``let_go`` is set: after
    ``real`` ran (after=True) or before. The event returned is set once it is held."""
    holding = threading.Event()

    def wrapper(*args: Any) -> None:
        if after:
            real(*args)
        holding.set()
        assert let_go.wait(BOUND), f"{real.__name__} was held for {BOUND:.0f} s"
        if not after:
            real(*args)

    return wrapper, holding


def assert_resident(released: Released, resident: ResidentData) -> None:
    with released.catalog.read() as txn:
        inode = txn.get_inode(released.ino)
        assert inode is not None and inode.hsm_state == HsmState.ARCHIVED
        assert txn.members(b"staging") == []
    assert released.cache.path(released.ino).read_bytes() == DATA
    assert not released.cache.path(released.ino).with_suffix(".part").exists()
    assert released.ino not in resident.stager.stages


def test_a_reader_that_finds_the_part_file_renamed_waits_for_the_stage_to_end(
    released: Released, monkeypatch: pytest.MonkeyPatch
) -> None:
    let_go = threading.Event()
    install, renamed = held(let_go, stager_module.install_part, after=True)
    monkeypatch.setattr(stager_module, "install_part", install)
    result: dict[str, Any] = {}

    async def body(resident: ResidentData) -> None:
        stage = resident.stager.start(released.ino)  # as hsmctl stage does: no reader yet
        try:
            assert await trio.to_thread.run_sync(renamed.wait, BOUND)
            # Renamed in its thread; the stage has not ended and the catalog still says
            # released, so a reader joins this stage and finds no part file.
            assert not stage.part.exists() and not stage.done
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_whole_file, resident, released.ino, result)
                await until(lambda: stage.ended.statistics().tasks_waiting == 1)
                assert result == {}  # waiting, not failed
                let_go.set()
        finally:
            let_go.set()
        assert result["data"] == DATA
        assert_resident(released, resident)

    run_resident(released, body)


def test_a_new_stage_waits_until_the_failed_ones_part_file_is_gone(
    released: Released, monkeypatch: pytest.MonkeyPatch
) -> None:
    let_go = threading.Event()
    discard, discarding = held(let_go, stager_module.discard_part, after=False)
    monkeypatch.setattr(stager_module, "discard_part", discard)
    downloads = []
    real_download = released.store.download

    def first_download_fails(*args: Any, **kwargs: Any) -> Any:
        downloads.append(args[0])
        if len(downloads) == 1:
            raise TemporaryFailure("the endpoint is down (test)")
        return real_download(*args, **kwargs)

    monkeypatch.setattr(released.store, "download", first_download_fails)
    result: dict[str, Any] = {}

    async def body(resident: ResidentData) -> None:
        failed = resident.stager.start(released.ino)
        try:
            assert await trio.to_thread.run_sync(discarding.wait, BOUND)
            assert failed.error is not None and failed.part.exists()
            async with trio.open_nursery() as nursery:
                # A reader starts the next stage; the same part path is still the failed
                # stage's, so the new one waits for that to end before it makes its own.
                nursery.start_soon(read_whole_file, resident, released.ino, result)
                await until(lambda: resident.stager.stages.get(released.ino) is not failed)
                second = resident.stager.stages.get(released.ino)
                assert second is not None, "the new stage ended before the failed one"
                await until(lambda: failed.ended.statistics().tasks_waiting == 1)
                assert not second.part_ready.is_set() and result == {}
                let_go.set()
        finally:
            let_go.set()
        assert result["data"] == DATA
        assert downloads == ["f", "f"]
        assert_resident(released, resident)

    run_resident(released, body)
