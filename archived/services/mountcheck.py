"""Is a directory on a live hsmfs mount? The one check behind FileCopy (before every tar),
SyncFileStatus, `archivectl fs add tar:...` and `archivectl status`.

A live mount answers the ``user.hsm.daemon`` attribute at its root. Anything else is not
one, and the message says which case it is: no such directory, a mount whose daemon died
(ENOTCONN), a mount of another file system, or a plain directory (the empty mount point
under an unmounted hsmfs).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from archived.services.errors import NotMountedError

DAEMON_XATTR = "user.hsm.daemon"


def mount_root(directory: Path) -> Path:
    """The mount point at or above ``directory`` (``/`` at worst)."""
    path = directory.absolute()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def _remount_hint(root: Path) -> str:
    return f"unmount it (fusermount3 -u {root}) and mount hsmfs again"


def check_live_mount(directory: Path) -> Path:
    """Raise NotMountedError unless ``directory`` exists on a live hsmfs mount; return the root."""
    not_live = f"{directory} is not on a live hsmfs mount"
    try:
        exists = directory.is_dir()
    except OSError as exc:  # ENOTCONN: the mount is still there, its daemon is not
        raise NotMountedError(
            f"{not_live}: {exc.strerror} (its daemon is gone); {_remount_hint(directory)}"
        ) from None
    if not exists:
        raise NotMountedError(
            f"{not_live}: no such directory; mount hsmfs there (or fix the file system path "
            "with `archivectl fs`)"
        )
    root = mount_root(directory)
    try:
        os.getxattr(root, DAEMON_XATTR)
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise NotMountedError(
                f"{not_live}: the mount at {root} does not answer (its daemon is gone); "
                f"{_remount_hint(root)}"
            ) from None
        if root == directory.absolute() and root != Path("/"):
            what = f"{root} is a mount of another file system"
        else:
            what = f"nothing is mounted there, it is a plain directory on {root}"
        raise NotMountedError(
            f"{not_live}: {what}, without user.hsm.* attributes; mount hsmfs on it "
            f"(hsmfs mount {directory} --cache DIR --state DIR)"
        ) from None
    return root


def daemon_info(root: Path) -> dict[str, Any]:
    """What the daemon of a live mount says about itself (pid, mount point, ...)."""
    try:
        info = json.loads(os.getxattr(root, DAEMON_XATTR))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
