"""The integrity check run before every commit: typed validation of changed devices, unique
uuids, unique AE titles, and every uuid reference resolves. A violation names the path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from archived.conf.defaults import normalize_device
from archived.conf.errors import IntegrityError
from archived.conf.model import UUID_KEY, ApplicationEntity, ArchiveDeviceExtension, Device
from archived.conf.nodes import device_path
from archived.conf.schema import shape, walk


@dataclass
class DeviceIndex:
    """What the cross-device checks need from one device, computed once per stored version."""

    uuids: dict[str, str] = field(default_factory=dict)  # uuid -> path
    ae_titles: dict[str, str] = field(default_factory=dict)  # AE title -> path
    refs: list[tuple[str, str]] = field(default_factory=list)  # (path, referenced uuid)


def check_device(name: str, node: Any) -> dict[str, Any]:
    """Validate one device node stored under `name`; its normalized form."""
    path = device_path(name)
    normal = normalize_device(node, path)
    if normal.get("dicomDeviceName") != name:
        raise IntegrityError(
            f"the device is named {normal.get('dicomDeviceName')!r} but stored under {name!r}; "
            "make both the same",
            path=f"{path}/dicomDeviceName",
        )
    return normal


def index_device(name: str, node: dict[str, Any]) -> DeviceIndex:
    """Index a normalized device node; checks that need only this device raise here."""
    path = device_path(name)
    index = DeviceIndex()
    for sub_path, cls, sub in walk(node, Device, path):
        node_uuid = sub.get(UUID_KEY)
        if node_uuid is not None:
            if node_uuid in index.uuids:
                raise IntegrityError(
                    f"uuid {node_uuid} is also used at {index.uuids[node_uuid]}; give one a "
                    "new uuid",
                    path=sub_path,
                )
            index.uuids[node_uuid] = sub_path
        for key, many in shape(cls).refs:
            value = sub.get(key)
            for pos, ref in enumerate(value if many and isinstance(value, list) else [value]):
                if ref is not None:
                    index.refs.append((f"{sub_path}/{key}" + (f"/{pos}" if many else ""), ref))
        title = sub.get("dicomAETitle") if cls is ApplicationEntity else None
        if title is not None:  # a missing title is the model check's to report
            if title in index.ae_titles:
                raise IntegrityError(
                    f"AE title {title!r} is also used at {index.ae_titles[title]}; "
                    "AE titles must be unique",
                    path=f"{sub_path}/dicomAETitle",
                )
            index.ae_titles[title] = f"{sub_path}/dicomAETitle"
        if cls is ArchiveDeviceExtension:
            _check_archive(node, sub, sub_path)
    return index


def _check_archive(device: dict[str, Any], ext: dict[str, Any], path: str) -> None:
    titles = {ae.get("dicomAETitle") for ae in device.get("dicomNetworkAE", [])}
    title = ext.get("AETitle", ArchiveDeviceExtension.model_fields["ae_title"].default)
    if title not in titles:
        raise IntegrityError(
            f"the archive AE title {title!r} is not an AE of this device; add that AE or "
            "change AETitle",
            path=f"{path}/AETitle",
        )
    groups = ext.get("FileSystemGroups", [])
    group_ids: set[str] = set()
    for g_pos, group in enumerate(groups):
        if group.get("GroupID") in group_ids:
            raise IntegrityError(
                f"file system group {group['GroupID']!r} is defined twice; merge the two",
                path=f"{path}/FileSystemGroups/{g_pos}/GroupID",
            )
        group_ids.add(group.get("GroupID"))
    paths: dict[str, str] = {}
    for g_pos, group in enumerate(groups):
        g_path = f"{path}/FileSystemGroups/{g_pos}"
        wanted = group.get("DeletionRules", {}).get(
            "DeleteStudyOnlyIfCopyOnFileSystemOfFileSystemGroup"
        )
        if wanted is not None and wanted not in group_ids:
            raise IntegrityError(
                f"no file system group {wanted!r}; add it or clear the rule",
                path=f"{g_path}/DeletionRules/DeleteStudyOnlyIfCopyOnFileSystemOfFileSystemGroup",
            )
        for f_pos, fs in enumerate(group.get("FileSystems", [])):
            fs_path = f"{g_path}/FileSystems/{f_pos}/DirectoryPath"
            if fs["DirectoryPath"] in paths:
                raise IntegrityError(
                    f"file system {fs['DirectoryPath']!r} is also configured at "
                    f"{paths[fs['DirectoryPath']]}",
                    path=fs_path,
                )
            paths[fs["DirectoryPath"]] = fs_path


def check_all(indexes: Iterable[DeviceIndex]) -> None:
    """Cross-device checks: uuids and AE titles unique everywhere, every reference resolves."""
    uuids: dict[str, str] = {}
    titles: dict[str, str] = {}
    all_indexes = list(indexes)
    for index in all_indexes:
        for node_uuid, path in index.uuids.items():
            if node_uuid in uuids:
                raise IntegrityError(
                    f"uuid {node_uuid} is also used at {uuids[node_uuid]}; give one a new uuid",
                    path=path,
                )
            uuids[node_uuid] = path
        for title, path in index.ae_titles.items():
            if title in titles:
                raise IntegrityError(
                    f"AE title {title!r} is already used at {titles[title]}; "
                    "AE titles must be unique",
                    path=path,
                )
            titles[title] = path
    for index in all_indexes:
        for path, ref in index.refs:
            if ref not in uuids:
                raise IntegrityError(
                    f"reference to uuid {ref} does not resolve; point it at an existing node",
                    path=path,
                )
