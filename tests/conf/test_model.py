"""The typed model: field types, defaults filter and conversion to and from nodes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from archived.conf import (
    ApplicationEntity,
    ArchiveDeviceExtension,
    Device,
    FileStatus,
    FileSystem,
    IntegrityError,
    default_archive_device,
    remote_ae_device,
)
from archived.conf.defaults import normalize_device, to_node
from archived.conf.fields import format_duration, parse_duration, threshold_bytes


@pytest.mark.parametrize(
    ("text", "value"),
    [("90s", timedelta(seconds=90)), ("1h30m", timedelta(minutes=90)), ("14d", timedelta(days=14)),
     ("NEVER", None), ("0", timedelta(0)), ("250ms", timedelta(milliseconds=250))],
)  # fmt: skip
def test_durations_round_trip(text: str, value: timedelta | None) -> None:
    assert parse_duration(text) == value
    assert parse_duration(format_duration(value)) == value


def test_bad_duration_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. '30s'"):
        parse_duration("ten minutes")


def test_archive_extension_uses_dcm4chee_names_and_types() -> None:
    ext = ArchiveDeviceExtension.model_validate({
        "FileSystemGroups": [{"GroupID": "ONLINE_STORAGE", "DeletionRules": {
            "DeleteStudyIfNotAccessedFor": "60d",
            "DeleteStudyOnlyIfCopyArchived": True,
            "MinimumFreeDiskSpace": "5%",
        }}],
        "FileCopy": {"FileStatus": "TO_ARCHIVE", "RetryIntervals": ["1m", "1h"]},
        "SyncFileStatus": {"StatusMapping": {"archived": "ARCHIVED"}, "TaskInterval": "30s"},
    })  # fmt: skip
    rules = ext.file_system_groups[0].deletion_rules
    assert rules.delete_study_if_not_accessed_for == timedelta(days=60)
    assert rules.delete_study_only_if_copy_archived is True
    assert threshold_bytes(rules.minimum_free_disk_space, 1000) == 50
    assert threshold_bytes("50MB", 0) == 50_000_000
    assert ext.file_copy.file_status is FileStatus.TO_ARCHIVE
    assert ext.sync_file_status.status_mapping == {"archived": FileStatus.ARCHIVED}
    node = ext.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert node["FileSystemGroups"][0]["DeletionRules"]["DeleteStudyIfNotAccessedFor"] == "60d"
    assert node["FileCopy"] == {"RetryIntervals": ["1m", "1h"]}  # TO_ARCHIVE is the default
    assert node["SyncFileStatus"]["TaskInterval"] == "30s"


def test_dicom_service_defaults() -> None:
    device = default_archive_device()
    ae, conn = device.archive_ae()
    assert (ae.ae_title, conn.port) == ("ARCHIVED", 11112)
    ext = device.archive
    assert ext is not None
    assert ext.duplicate_sop_policy == "ignore"
    assert (ext.acse_timeout, ext.dimse_timeout, ext.network_timeout) == (30.0, 60.0, 60.0)
    assert ext.max_pdu_size == 16382 and ext.max_associations == 20
    with pytest.raises(ValidationError):
        ext.duplicate_sop_policy = "overwrite"  # type: ignore[assignment]


def test_remote_ae_permissions_and_host_restriction() -> None:
    device = remote_ae_device("CT1", "10.0.0.5", 104)
    ae = device.application_entities[0]
    assert ae.permissions.store and ae.permissions.query and ae.permissions.retrieve
    assert ae.permissions.allows_host("192.0.2.1")
    ae.permissions.allowed_hosts = ["10.0.0.5"]
    assert ae.permissions.allows_host("10.0.0.5") and not ae.permissions.allows_host("10.0.0.6")


def test_file_system_keeps_tar_prefix() -> None:
    fs = FileSystem(path="tar:/mnt/nearline")
    assert fs.tarred and fs.directory == "/mnt/nearline" and fs.path == "tar:/mnt/nearline"
    assert not FileSystem(path="/data").tarred


@pytest.mark.parametrize("title", ["", "A" * 17, "BACK\\SLASH"])
def test_bad_ae_titles_are_refused(title: str) -> None:
    with pytest.raises(ValidationError, match="bad AE title"):
        ApplicationEntity(ae_title=title)


def test_values_are_validated_on_assignment() -> None:
    device = default_archive_device()
    with pytest.raises(ValidationError):
        device.connections[0].port = 70000


def test_to_node_leaves_out_defaults_and_normalize_is_stable() -> None:
    device = Device(name="D", description=None, installed=True)
    node = to_node(device)
    assert node == {"_.uuid": device.uuid, "dicomDeviceName": "D"}
    verbose = {**node, "dicomInstalled": True, "dicomNetworkAE": [], "dicomDescription": None}
    assert normalize_device(verbose, "/x") == node
    assert normalize_device(normalize_device(verbose, "/x"), "/x") == node


def test_normalize_names_the_bad_field() -> None:
    with pytest.raises(IntegrityError) as raised:
        normalize_device({"dicomDeviceName": "D", "dicomNetworkConnection": [{"dicomPort": "x"}]},
                         "/root/D")  # fmt: skip
    assert raised.value.path == "/root/D/dicomNetworkConnection/0/dicomPort"


def test_index_path_and_dicom_settings_default_to_what_archived_used_before() -> None:
    from archived.dicom import DicomSettings

    ext = ArchiveDeviceExtension()
    assert ext.index_path == "/var/lib/archived/index.sqlite"
    assert ext.pending_interval == DicomSettings().pending_interval == 5.0
    assert ext.stgcmt_same_association is DicomSettings().stgcmt_same_association is False
    for name in ("index_path", "pending_interval", "stgcmt_same_association"):
        assert ArchiveDeviceExtension.model_fields[name].description, name
    node = to_node(ArchiveDeviceExtension(index_path="/srv/index.sqlite", pending_interval=2.5,
                                          stgcmt_same_association=True))  # fmt: skip
    assert node == {"IndexPath": "/srv/index.sqlite", "PendingResponseInterval": 2.5,
                    "StgCmtOnSameAssociation": True}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("IndexPath", "state/index.sqlite", "IndexPath 'state/index.sqlite' is relative"),
     ("IndexPath", "", "at least 1 character"),
     ("PendingResponseInterval", 0, "greater than 0"),
     ("StgCmtOnSameAssociation", "sometimes", "valid boolean")],
)  # fmt: skip
def test_bad_index_path_and_dicom_settings_are_refused(field: str, value: object,
                                                       message: str) -> None:  # fmt: skip
    with pytest.raises(ValidationError, match=message):
        ArchiveDeviceExtension.model_validate({field: value})


def test_deletion_waits_for_a_verified_copy_by_default() -> None:
    """Unlike dcm4chee 2.x, a study leaves a group only once its copy is ARCHIVED, unless
    DeleteStudyOnlyIfCopyArchived is switched off."""
    ext = ArchiveDeviceExtension.model_validate(
        {"FileSystemGroups": [{"GroupID": "ONLINE_STORAGE"}]}
    )
    assert ext.file_system_groups[0].deletion_rules.delete_study_only_if_copy_archived is True
    relaxed = ArchiveDeviceExtension.model_validate(
        {
            "FileSystemGroups": [
                {
                    "GroupID": "ONLINE_STORAGE",
                    "DeletionRules": {"DeleteStudyOnlyIfCopyArchived": False},
                }
            ]
        }
    )
    node = relaxed.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert node["FileSystemGroups"][0]["DeletionRules"] == {"DeleteStudyOnlyIfCopyArchived": False}
