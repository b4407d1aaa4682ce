"""The control-socket commands behind hsmctl: status, archive, release, stage, recheck.

``archive``, ``stage`` and ``recheck`` send a progress line per file as it is done;
``release`` answers once the released files' cache data is gone, with the files it
refused and why (an archived file whose copy the object store cannot confirm is not
released: it is migrated again).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from .backends import ObjectStore
from .catalog import HsmFlag, HsmState, Inode
from .config import Config
from .control import ControlServer
from .fs import HsmFs
from .migrator import Migrator
from .resident import ReleaseRefused, ResidentData
from .snapshot import Snapshots

POLL = 0.1
LOST = ("it is lost: the object store has no valid copy (see the daemon's log); once the "
        "object is back, `hsmctl recheck` makes it released again")  # fmt: skip


class Actions:
    """What hsmctl asks of a running mount, over its control socket."""

    def __init__(
        self,
        fs: HsmFs,
        migrator: Migrator,
        resident: ResidentData,
        snapshots: Snapshots,
        backend: ObjectStore,
        config: Callable[[], Config],
    ) -> None:
        self.fs = fs
        self.migrator = migrator
        self.resident = resident
        self.snapshots = snapshots
        self.backend = backend
        self.config = config

    def register(self, control: ControlServer) -> None:
        control.command("status", self.status)
        control.command("archive", self.archive)
        control.command("release", self.release)
        control.command("stage", self.stage)
        control.command("recheck", self.recheck)

    def _inode(self, ino: int) -> Inode | None:
        catalog = self.fs.catalog
        inode = catalog.live.get(ino)
        if inode is None:
            with catalog.read() as txn:
                inode = txn.get_inode(ino)
        return inode

    def _state(self, ino: int) -> HsmState | None:
        inode = self._inode(ino)
        return None if inode is None or not inode.is_reg else HsmState(inode.hsm_state)

    def _noarchive(self, ino: int) -> bool:
        inode = self._inode(ino)
        return inode is not None and bool(inode.hsm_flags & HsmFlag.NOARCHIVE)

    async def status(self, request: dict[str, Any]) -> dict[str, Any]:
        reachable, error = True, None
        try:
            with trio.fail_after(self.config().hsm.connect_timeout + 5):
                await trio.to_thread.run_sync(self.backend.ping, abandon_on_cancel=True)
        except Exception as exc:
            reachable, error = False, str(exc) or "no answer"
        return {
            "ok": True,
            "daemon": self.fs.hsm_attributes.daemon_info,
            "backend": {
                "url": self.backend.describe(),
                "reachable": reachable,
                "error": error,
                **self.backend.statistics(),
            },
            "cache": await trio.to_thread.run_sync(self.migrator.watermarks),
            "migration": self.migrator.statistics(),
            "staging": self.resident.statistics(),
            "snapshots": self.snapshots.statistics(),
            "fs": self.fs.statistics(),
        }

    async def archive(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        migrator = self.migrator
        inos = [int(i) for i in request["inos"]]
        for ino in inos:
            if self._state(ino) == HsmState.DIRTY:
                migrator.schedule(ino, delay=0)
        failed = 0
        for ino in inos:
            if self._state(ino) == HsmState.DIRTY and self._noarchive(ino):
                failed += 1  # it would never be migrated: waiting would hang
                yield {"ino": ino, "state": "dirty", "error": "it is marked noarchive; "
                       "clear the flag first (hsmctl set --clear noarchive)"}  # fmt: skip
                continue
            while (state := self._state(ino)) == HsmState.DIRTY and ino not in migrator.failures:
                await trio.sleep(POLL)
            error = None
            if state == HsmState.DIRTY:
                error = migrator.last_error or "not archived"
            elif state == HsmState.LOST:
                error = LOST
            failed += error is not None
            yield {"ino": ino, "state": state.name.lower() if state else "not a file",
                   "error": error}  # fmt: skip
        yield {"ok": failed == 0, "error": f"{failed} file(s) not archived" if failed else None}

    async def release(self, request: dict[str, Any]) -> dict[str, Any]:
        refused = {}
        freed = 0
        inos = [int(i) for i in request["inos"]]
        for ino in inos:
            try:
                freed += await self.migrator.release(ino)
            except ReleaseRefused as exc:
                refused[str(ino)] = str(exc)
        for ino in inos:
            await self.resident.removed(ino)
        return {"ok": not refused, "freed": freed, "refused": refused,
                "error": f"{len(refused)} file(s) not released" if refused else None}  # fmt: skip

    async def stage(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        inos = [int(i) for i in request["inos"]]
        started = [ino for ino in inos if self._state(ino) == HsmState.RELEASED]
        for ino in started:
            self.resident.stage(ino)
        failed = 0
        for ino in inos:
            error = await self.resident.staged(ino) if ino in started else None
            state = self._state(ino)
            if error is None and state == HsmState.LOST:
                error = LOST
            failed += error is not None
            yield {"ino": ino, "state": state.name.lower() if state else "not a file",
                   "error": error}  # fmt: skip
        yield {"ok": failed == 0, "error": f"{failed} file(s) not staged" if failed else None}

    async def recheck(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Check each file's copy again (Migrator.recheck): a lost file whose copy is back
        becomes released, one whose copy is gone becomes lost or migrates anew."""
        failed = 0
        for ino in (int(i) for i in request["inos"]):
            error = await self.migrator.recheck(ino)
            state = self._state(ino)
            failed += error is not None
            yield {"ino": ino, "state": state.name.lower() if state else "not a file",
                   "error": error}  # fmt: skip
        error = f"{failed} file(s) without a valid copy" if failed else None
        yield {"ok": failed == 0, "error": error}


def inode_numbers(paths: list[str], recursive: bool) -> list[tuple[str, int, int]]:
    """(path, inode, size) of the regular files named, walking directories with -r."""
    found = []
    for path in paths:
        st = os.stat(path)
        if os.path.isdir(path) and recursive:
            for dirpath, _dirs, files in os.walk(path):
                for name in sorted(files):
                    full = os.path.join(dirpath, name)
                    fst = os.lstat(full)
                    if os.path.isfile(full) and not os.path.islink(full):
                        found.append((full, fst.st_ino, fst.st_size))
        else:
            found.append((path, st.st_ino, st.st_size))
    return found
