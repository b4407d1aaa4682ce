"""Errors of archived's DICOM service; each names the AE, file or object involved."""

from __future__ import annotations


class DicomServiceError(Exception):
    """Base of the DICOM service's errors."""

    exit_code = 70


class ListenError(DicomServiceError):
    """The archive AE cannot listen on its port."""

    exit_code = 69


class NoStorageError(DicomServiceError):
    """No writable ONLINE_STORAGE file system with room for an instance."""

    exit_code = 73


class MalformedDatasetError(DicomServiceError):
    """A received dataset is truncated or not valid DICOM encoding."""

    exit_code = 65
