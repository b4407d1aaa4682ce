"""Is a directory on a live hsmfs mount? Checked before every tar FileCopy writes."""

from __future__ import annotations

import os
from pathlib import Path

from archived.services.errors import NotMountedError

DAEMON_XATTR = "user.hsm.daemon"


def mount_root(directory: Path) -> Path:
    """The mount point at or above ``directory`` (``/`` at worst)."""
    path = directory.absolute()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def check_live_mount(directory: Path) -> Path:
    """Raise NotMountedError unless ``directory`` exists on a live hsmfs mount; return the root.

    The empty directory under an unmounted mount point is not a live mount: it is not a
    mount point (or belongs to another file system) and has no ``user.hsm.daemon``.
    """
    if not directory.is_dir():
        raise NotMountedError(
            f"{directory}: no such directory; mount hsmfs there (or fix the file system path "
            "with `archivectl fs`)"
        )
    root = mount_root(directory)
    try:
        os.getxattr(root, DAEMON_XATTR)
    except OSError as exc:
        raise NotMountedError(
            f"{directory} is not on a live hsmfs mount ({root}: {exc.strerror or exc}); "
            "mount hsmfs on it before copying, nothing was written"
        ) from None
    return root
