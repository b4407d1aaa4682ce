"""Errors of the DICOM index; each names the database or object and what to do."""

from __future__ import annotations


class ArchiveIndexError(Exception):
    """Base of the index's errors."""

    exit_code = 70


class SchemaVersionError(ArchiveIndexError):
    """The database was written by a newer archived (schema version too high)."""

    exit_code = 78


class UnknownFileSystemError(ArchiveIndexError):
    """A file system uuid that the index does not mirror from the configuration."""

    exit_code = 65


class UnknownObjectError(ArchiveIndexError):
    """A study, series or instance UID, or a file pk, that the index does not hold."""

    exit_code = 65
