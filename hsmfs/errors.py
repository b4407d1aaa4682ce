"""The hsmfs exception hierarchy: every error an operator can see, with its exit code."""

from __future__ import annotations


class HsmfsError(Exception):
    """Base of every hsmfs error; the message is one line that says what to do."""

    exit_code = 1


class UsageError(HsmfsError):
    """The command line or configuration is wrong (exit 2)."""

    exit_code = 2


class StateLocked(HsmfsError):
    """The state directory is in use by another hsmfs process (exit 3)."""

    exit_code = 3


class MountError(HsmfsError):
    """The file system could not be mounted or unmounted (exit 4)."""

    exit_code = 4


class CatalogError(HsmfsError):
    """The catalog is missing, of another format version, or damaged (exit 5)."""

    exit_code = 5


class NotMounted(HsmfsError):
    """The path is not a live hsmfs mount (exit 6)."""

    exit_code = 6
