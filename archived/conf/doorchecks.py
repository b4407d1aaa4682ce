"""Checks at the door of `archivectl fs add` and `archivectl ae add`: a wrong path, AE
title, host or port is refused when it is typed, not found later by a failing C-STORE.

- A file system path must be an absolute directory this user can write; ``create`` makes
  a missing one. A ``tar:`` path must be on a live hsmfs mount (its root answers the
  ``user.hsm.daemon`` attribute; archived.services.mountcheck), never the empty directory
  under a mount point.
- An AE title has 1-16 characters, none of them a backslash or a control character; a
  host is an IP address or a DNS name; a port is 1-65535.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
from pathlib import Path

from archived.conf.errors import ConfigError
from archived.services.errors import NotMountedError
from archived.services.mountcheck import check_live_mount

MAX_AE_TITLE = 16
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class RefusedInputError(ConfigError):
    """{detail}"""

    exit_code = 65


def check_file_system_path(path: str, create: bool = False) -> None:
    """Raise RefusedInputError unless ``path`` (maybe 'tar:'-prefixed) can hold files now."""
    directory = Path(path.removeprefix("tar:"))
    if not directory.is_absolute():
        raise RefusedInputError(f"{path}: not an absolute path; write it from the root, /...")
    if path.startswith("tar:"):
        _check_on_hsmfs(path, directory, create)
    elif not directory.exists():
        if not create:
            raise RefusedInputError(
                f"{path}: no such directory; create it (mkdir -p {directory}) or pass --create"
            )
        _create(path, directory)
    if not directory.is_dir():
        raise RefusedInputError(f"{path}: not a directory; give the directory to store into")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RefusedInputError(
            f"{path}: not writable by {getpass.getuser()}; fix its owner or mode, or its "
            "mount if it is read-only (archived must write there)"
        )


def _create(path: str, directory: Path) -> None:
    try:
        directory.mkdir(parents=True)
    except OSError as exc:
        raise RefusedInputError(f"{path}: cannot create it: {exc.strerror}") from None


def _check_on_hsmfs(path: str, directory: Path, create: bool) -> None:
    """A 'tar:' file system: a directory on a live hsmfs mount (created there if asked)."""
    existing = directory
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
    except OSError:  # ENOTCONN below a dead mount: check_live_mount says so
        existing = directory
    try:
        check_live_mount(existing)
    except NotMountedError as exc:
        raise RefusedInputError(f"{path}: {exc}") from None
    if existing != directory:
        if not create:
            raise RefusedInputError(
                f"{path}: no such directory on the hsmfs mount; create it (mkdir -p "
                f"{directory}) or pass --create"
            )
        _create(path, directory)


def check_ae(ae_title: str, host: str, port: int) -> None:
    """Raise RefusedInputError naming the first thing wrong with a remote AE."""
    check_ae_title(ae_title)
    check_host(host)
    if not 1 <= port <= 65535:
        raise RefusedInputError(f"port {port} of AE {ae_title!r}: use 1-65535 (DICOM: 104, 11112)")


def check_ae_title(ae_title: str) -> None:
    if not ae_title.strip():
        raise RefusedInputError("empty AE title; give 1-16 characters, e.g. MODALITY1")
    if len(ae_title) > MAX_AE_TITLE:
        raise RefusedInputError(
            f"AE title {ae_title!r} has {len(ae_title)} characters; DICOM allows at most "
            f"{MAX_AE_TITLE}, e.g. {ae_title[:MAX_AE_TITLE]!r}"
        )
    bad = [c for c in ae_title if c == "\\" or not c.isprintable()]
    if bad:
        raise RefusedInputError(
            f"AE title {ae_title!r} contains {bad[0]!r}; backslashes and control characters "
            "are not allowed"
        )


def check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    name = host.removesuffix(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise RefusedInputError(
            f"host {host!r} is neither an IP address nor a DNS name (letters, digits, '-' "
            "and dots); e.g. 10.0.0.8 or ct1.hospital.example"
        )
