"""Upgrade scripts used by test_upgrade.py (importable classes with a version)."""

from __future__ import annotations

from typing import ClassVar

from archived.conf import FileSystem, FileSystemGroup
from archived.conf.upgrade import UpgradeContext

CALLS: list[tuple[str, str | None]] = []


class AddNearlineGroup:
    version: ClassVar[str] = "1.0"

    def upgrade(self, context: UpgradeContext) -> None:
        CALLS.append(("AddNearlineGroup", context.last_run_version))
        device = context.store.ensure_own_device()
        device = context.store.find_device(device.name)
        device.archive.file_system_groups.append(  # type: ignore[union-attr]
            FileSystemGroup(
                group_id="NEARLINE_STORAGE",
                file_systems=[FileSystem(path=context.properties["nearline"])],
            )
        )
        context.store.merge_device(device)


class DescribeDevice:
    version: ClassVar[str] = "1.0"

    def upgrade(self, context: UpgradeContext) -> None:
        CALLS.append(("DescribeDevice", context.last_run_version))
        device = context.store.find_device("archived")
        device.description = f"upgraded from {context.from_version} to {context.to_version}"
        context.store.merge_device(device)


class Broken:
    version: ClassVar[str] = "1.0"

    def upgrade(self, context: UpgradeContext) -> None:
        raise RuntimeError("cannot convert the old layout")
