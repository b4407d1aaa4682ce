"""DicomSettings and file systems from the configuration store (archived.conf)."""

from __future__ import annotations

from archived.conf import ArchiveDeviceExtension, ConfigStore
from archived.dicom.settings import DicomSettings, RemoteAE
from archived.index import FileSystemSpec

ALL_INTERFACES = {"", "0.0.0.0", "::"}


def remote_aes(store: ConfigStore) -> tuple[RemoteAE, ...]:
    """Every AE of every other device: where it listens, what it may do, from where."""
    own = store.device_name
    result = []
    for name in store.list_device_names():
        if name == own:
            continue
        device = store.find_device(name)
        for ae in device.application_entities:
            listening = [c for c in device.connections_of(ae) if c.port]
            host, port = (listening[0].hostname, listening[0].port) if listening else ("", None)
            p = ae.permissions
            result.append(
                RemoteAE(
                    ae.ae_title, host, port, p.store, p.query, p.retrieve, tuple(p.allowed_hosts)
                )
            )
    return tuple(result)


def settings_from_config(store: ConfigStore) -> tuple[DicomSettings, list[FileSystemSpec]]:
    """The archive AE's settings and the file systems the index mirrors."""
    device = store.ensure_own_device()
    ae, conn = device.archive_ae()
    ext = device.archive or ArchiveDeviceExtension()
    bind = conn.bind_address or ("" if conn.hostname in ALL_INTERFACES else conn.hostname)
    settings = DicomSettings(
        ae_title=ae.ae_title,
        bind_address=bind,
        port=int(conn.port or 0),
        max_pdu=ext.max_pdu_size,
        max_associations=ext.max_associations,
        acse_timeout=ext.acse_timeout,
        dimse_timeout=ext.dimse_timeout,
        network_timeout=ext.network_timeout,
        duplicate_policy=ext.duplicate_sop_policy,
        accept_unknown_calling_aets=ext.accept_unknown_calling_aets,
        pending_interval=ext.pending_interval,
        stgcmt_same_association=ext.stgcmt_same_association,
        case_insensitive_names=ext.case_insensitive_person_name_matching,
        request_timeout=ext.association_request_timeout,
        max_inflated_size=ext.max_inflated_size,
        early_success=ext.store_early_success,
        store_queue_size=ext.store_queue_size,
        remote_aes=remote_aes(store),
    )
    file_systems = [
        FileSystemSpec(fs.uuid, group.group_id, fs.path, str(fs.status.value))
        for group, fs in ext.iter_file_systems()
    ]
    return settings, file_systems
