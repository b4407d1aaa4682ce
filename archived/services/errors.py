"""Errors of the lifecycle services; each names the file system, tar or study and what to do.

Exit codes (archivectl run): 64 usage or configuration, 65 the index is missing rows,
69 the nearline mount is not a live hsmfs mount, 74 I/O error writing or reading a tar,
75 another run of the same service holds its lock.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the lifecycle services' errors."""

    exit_code = 70


class NotConfiguredError(ServiceError):
    """The service lacks a setting (destination or monitored file system, ...)."""

    exit_code = 64


class NotMountedError(ServiceError):
    """The nearline file system is not a live hsmfs mount (never write underneath it)."""

    exit_code = 69


class TarWriteError(ServiceError):
    """A tar could not be written (and was removed), or a source file changed."""

    exit_code = 74


class BusyError(ServiceError):
    """Another process runs the same service right now."""

    exit_code = 75
