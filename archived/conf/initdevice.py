"""The archive's own device as a set-up creates it: `archivectl config init`, the quick
start and systemd/install.sh record where the index is, so archived and archivectl agree
on it without an --index option."""

from __future__ import annotations

from typing import Any

from archived.conf.model import ArchiveDeviceExtension
from archived.conf.store import ConfigStore


def init_archive_device(store: ConfigStore, index_path: str | None) -> dict[str, Any]:
    """The archive's own device, created if missing; IndexPath recorded if it is unset."""
    store.ensure_own_device()

    def record() -> str:
        device = store.find_device(store.device_name)
        ext = device.archive
        if ext is None:  # a device imported without the archive's extension
            ext = device.extensions.archive = ArchiveDeviceExtension()
        if index_path and "index_path" not in ext.model_fields_set:
            ext.index_path = index_path
            store.merge_device(device)
        return ext.index_path

    recorded = store.batch(record)
    result: dict[str, Any] = {"device": store.device_name, "IndexPath": recorded}
    if index_path and recorded != index_path:
        result["kept"] = f"IndexPath was set before; kept {recorded}, not {index_path}"
    return result
