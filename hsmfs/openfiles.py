"""Open files of a mount: file handles, and per inode its handles, writers and data.

The kernel's file handles (``fh``) map to ``Handle``s; all handles of one inode share one
``OpenInode`` with the live ``Inode`` (writes update its size and times in memory, see
``Catalog.live``) and its ``ResidentFile`` (resident.py). Tar members have handles of
their own in members.py; they draw their numbers from ``new_fh`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Inode
from .resident import ResidentFile


@dataclass
class OpenInode:
    """The shared state of all open handles of one inode."""

    inode: Inode
    data: ResidentFile
    handles: int = 0
    writers: int = 0


@dataclass
class Handle:
    ino: int
    writable: bool


class OpenFiles:
    def __init__(self) -> None:
        self.inodes: dict[int, OpenInode] = {}
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1

    def new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def add(self, inode: Inode, data: ResidentFile, writable: bool) -> tuple[int, OpenInode]:
        """A new handle of ``inode``; its data is ``data`` (the same for every handle)."""
        opened = self.inodes.get(inode.ino)
        if opened is None:
            opened = self.inodes[inode.ino] = OpenInode(inode, data)
        opened.handles += 1
        opened.writers += writable
        fh = self.new_fh()
        self.handles[fh] = Handle(inode.ino, writable)
        return fh, opened

    def of(self, fh: int) -> OpenInode:
        return self.inodes[self.handles[fh].ino]

    def remove(self, fh: int) -> tuple[Handle, OpenInode]:
        """Forget ``fh``; the inode is forgotten with its last handle."""
        handle = self.handles.pop(fh)
        opened = self.inodes[handle.ino]
        opened.handles -= 1
        opened.writers -= handle.writable
        if opened.handles == 0:
            del self.inodes[handle.ino]
        return handle, opened

    def open_for_writing(self, ino: int) -> bool:
        opened = self.inodes.get(ino)
        return opened is not None and opened.writers > 0

    def statistics(self) -> dict[str, int]:
        return {"open_files": len(self.inodes), "open_handles": len(self.handles)}
