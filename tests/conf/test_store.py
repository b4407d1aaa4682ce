"""The typed and node API of ConfigStore, on both backends: defaults, extensions, secrets,
integrity, transactions, the shared read-only device and local notifications."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from archived.conf import (
    ApplicationEntity,
    ChangeEvent,
    ConfigStore,
    Connection,
    FileSystem,
    FileSystemGroup,
    IntegrityError,
    NotFoundError,
    ReadOnlyConfigError,
    open_store,
    remote_ae_device,
)

DEVICES = "/dicomConfigurationRoot/dicomDevicesRoot"
ARCHIVED = f"{DEVICES}/archived"


def test_typed_lookups(store: ConfigStore) -> None:
    store.merge_device(remote_ae_device("CT1", "10.0.0.5", 104))
    assert store.list_device_names() == ["CT1", "archived"]
    ae = store.find_ae("CT1")
    assert ae.ae_title == "CT1"
    device = store.find_device_by_ae("CT1")
    assert device.name == "CT1"
    assert [(c.hostname, c.port) for c in device.connections_of(ae)] == [("10.0.0.5", 104)]
    own_ae, own_conn = store.find_device("archived").archive_ae()
    assert (own_ae.ae_title, own_conn.port) == ("ARCHIVED", 11112)
    store.remove_device("CT1")
    with pytest.raises(NotFoundError, match="archivectl ae add CT1 HOST PORT"):
        store.find_ae("CT1")
    with pytest.raises(NotFoundError, match="no device 'CT1'"):
        store.find_device("CT1")


def test_defaults_are_not_stored_and_come_back_on_load(store: ConfigStore) -> None:
    node = store.get_node(f"{ARCHIVED}/dicomNetworkConnection/0")
    assert node.keys() == {"_.uuid", "cn", "dicomHostname", "dicomPort"}  # no nulls, no []
    assert "dicomInstalled" not in store.get_node(ARCHIVED)  # True is the default
    assert store.get_node(f"{ARCHIVED}/deviceExtensions/ArchiveDeviceExtension") == {}
    device = store.find_device("archived")
    assert device.installed is True
    assert device.archive.max_pdu_size == 16382
    assert device.archive.duplicate_sop_policy == "ignore"
    assert device.connections[0].tls_cipher_suites == []


def test_nodes_without_uuid_get_one_and_keep_it(store: ConfigStore) -> None:
    store.persist_node(f"{DEVICES}/PEER", {
        "dicomDeviceName": "PEER",
        "dicomNetworkConnection": [{"dicomHostname": "10.0.0.7", "dicomPort": 104}],
    })  # fmt: skip
    first = store.get_node(f"{DEVICES}/PEER")
    assert first["_.uuid"] and first["dicomNetworkConnection"][0]["_.uuid"]
    store.persist_node(f"{DEVICES}/PEER/dicomDescription", "peer")
    assert store.get_node(f"{DEVICES}/PEER")["_.uuid"] == first["_.uuid"]


def test_hand_written_json_without_uuids_loads_with_stable_uuids(tmp_path: Path) -> None:
    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"dicomConfigurationRoot": {"dicomDevicesRoot": {"PEER": {
        "dicomDeviceName": "PEER", "dicomInstalled": True,
        "dicomNetworkConnection": [{"dicomHostname": "h", "dicomPort": 104}],
    }}}}))  # fmt: skip
    uuids = []
    for _ in range(2):
        with open_store(f"json://{path}") as store:
            device = store.find_device("PEER")
            uuids.append((device.uuid, device.connections[0].uuid))
            assert store.get_node(f"{DEVICES}/PEER").get("dicomInstalled") is None  # default
    assert uuids[0] == uuids[1]


def test_unknown_extension_is_kept_and_known_one_can_be_removed(store: ConfigStore) -> None:
    store.persist_node(f"{ARCHIVED}/deviceExtensions/HL7DeviceExtension", {"port": 2575})
    device = store.find_device("archived")  # this code does not know HL7DeviceExtension
    device.description = "changed by a writer that knows no HL7"
    store.merge_device(device)
    extensions = store.get_node(f"{ARCHIVED}/deviceExtensions")
    assert extensions["HL7DeviceExtension"] == {"port": 2575}
    device = store.find_device("archived")
    device.extensions.archive = None
    device.application_entities[0].ae_title = "ARCHIVED"
    store.merge_device(device)
    assert store.get_node(f"{ARCHIVED}/deviceExtensions") == {"HL7DeviceExtension": {"port": 2575}}


def test_secrets_are_write_only(store: ConfigStore, store_uri: str) -> None:
    device = store.find_device("archived")
    device.connections[0].tls_key_password = "s3cr3t"
    store.merge_device(device)
    assert "s3cr3t" not in json.dumps(store.get_node("/"))
    assert store.find_device("archived").connections[0].tls_key_password is None
    assert store.own_device().connections[0].tls_key_password is None
    # A writer that never saw the secret keeps it: change the connection, merge, still stored.
    device = store.find_device("archived")
    device.connections[0].port = 11113
    store.merge_device(device)
    store.persist_node(f"{ARCHIVED}/dicomNetworkConnection/0/cn", "renamed")
    raw = store._state.devices["archived"].node  # the stored form, inspected by the test only
    assert raw["dicomNetworkConnection"][0]["dcmTLSKeyPassword"] == "s3cr3t"
    device = store.find_device("archived")
    device.connections[0].tls_key_password = ""  # clears it
    store.merge_device(device)
    assert "dcmTLSKeyPassword" not in store._state.devices["archived"].node[
        "dicomNetworkConnection"][0]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "path_suffix", "message"),
    [
        (lambda d: d.application_entities[0].connection_refs.append("no-such-uuid"),
         "/dicomNetworkAE/0/dicomNetworkConnectionReference/1", "does not resolve"),
        (lambda d: d.connections.append(Connection(uuid=d.connections[0].uuid)),
         "/dicomNetworkConnection/1", "also used"),
        (lambda d: setattr(d.archive, "ae_title", "NOPE"),
         "/deviceExtensions/ArchiveDeviceExtension/AETitle", "not an AE of this device"),
        (lambda d: d.application_entities.append(ApplicationEntity(ae_title="ARCHIVED")),
         "/dicomNetworkAE/1/dicomAETitle", "also used"),
    ],
)  # fmt: skip
def test_integrity_violations_name_the_path(
    store: ConfigStore, change: object, path_suffix: str, message: str
) -> None:
    device = store.find_device("archived")
    change(device)  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=message) as raised:
        store.merge_device(device)
    assert raised.value.path == ARCHIVED + path_suffix
    assert store.find_device("archived").archive.ae_title == "ARCHIVED"  # nothing stored


def test_integrity_across_devices(store: ConfigStore) -> None:
    peer = remote_ae_device("ARCHIVED", "10.0.0.1", 104)  # the archive's own title
    peer.name = "IMPOSTOR"
    with pytest.raises(IntegrityError, match="already used") as raised:
        store.merge_device(peer)
    assert raised.value.path.endswith("/dicomAETitle")
    own_uuid = store.find_device("archived").uuid
    twin = remote_ae_device("TWIN", "10.0.0.2", 104)
    twin.uuid = own_uuid
    with pytest.raises(IntegrityError, match=f"uuid {own_uuid} is also used"):
        store.merge_device(twin)
    # Removing the target of a reference from another device is refused too.
    store.merge_device(remote_ae_device("PEER", "10.0.0.3", 104))
    conn_uuid = store.find_device("PEER").connections[0].uuid
    archive = store.find_device("archived")
    archive.archive.file_copy.destination_file_system = conn_uuid  # any node resolves by uuid
    store.merge_device(archive)
    with pytest.raises(IntegrityError, match=f"uuid {conn_uuid} does not resolve"):
        store.remove_device("PEER")
    assert "PEER" in store.list_device_names()


def test_typed_validation_names_the_field(store: ConfigStore) -> None:
    with pytest.raises(IntegrityError) as raised:
        store.persist_node(f"{ARCHIVED}/deviceExtensions/ArchiveDeviceExtension/ACSETimeout", -1)
    assert raised.value.path == f"{ARCHIVED}/deviceExtensions/ArchiveDeviceExtension/ACSETimeout"
    with pytest.raises(IntegrityError, match="bad duration"):
        store.persist_node(
            f"{ARCHIVED}/deviceExtensions/ArchiveDeviceExtension/SyncFileStatus/TaskInterval",
            "soon",
        )


def test_batch_is_all_or_nothing(store: ConfigStore) -> None:
    events: list[ChangeEvent] = []
    store.subscribe(events.append)

    def failing() -> None:
        store.merge_device(remote_ae_device("A1", "10.0.0.1", 104))
        store.merge_device(remote_ae_device("A2", "10.0.0.2", 104))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.batch(failing)
    assert store.list_device_names() == ["archived"]

    def invalid_at_commit() -> None:
        store.merge_device(remote_ae_device("A1", "10.0.0.1", 104))
        device = store.find_device("archived")
        device.application_entities[0].connection_refs = ["dangling"]
        store.merge_device(device)

    with pytest.raises(IntegrityError):
        store.batch(invalid_at_commit)
    assert store.list_device_names() == ["archived"]
    assert events == []  # nothing committed, nobody told


def test_batch_nests_sees_its_own_writes_and_notifies_once(store: ConfigStore) -> None:
    events: list[ChangeEvent] = []
    store.subscribe(events.append)
    seen_by_other_thread: list[list[str]] = []

    def inner() -> None:
        store.merge_device(remote_ae_device("B2", "10.0.0.2", 104))

    def outer() -> int:
        store.merge_device(remote_ae_device("B1", "10.0.0.1", 104))
        store.batch(inner)  # joins
        assert store.find_ae("B1").ae_title == "B1"  # reads see the batch's own writes
        device = store.find_device("B1")
        device.description = "changed twice in one batch"
        store.merge_device(device)
        reader = threading.Thread(
            target=lambda: seen_by_other_thread.append(store.list_device_names())
        )
        reader.start()
        reader.join()
        return 42

    assert store.batch(outer) == 42
    assert seen_by_other_thread == [["archived"]]  # others only ever see committed states
    assert store.list_device_names() == ["B1", "B2", "archived"]
    assert len(events) == 1 and events[0].origin == "local"
    assert events[0].touches(f"{DEVICES}/B1") and events[0].touches(f"{DEVICES}/B2")
    assert not events[0].touches(ARCHIVED)


def test_notification_paths_are_precise_and_come_after_commit(store: ConfigStore) -> None:
    events: list[ChangeEvent] = []
    ports_seen_by_subscriber: list[int | None] = []

    def on_change(event: ChangeEvent) -> None:
        events.append(event)
        ports_seen_by_subscriber.append(store.own_device().connections[0].port)

    sub = store.subscribe(on_change)
    commits_before = store.statistics()["commits"]
    device = store.find_device("archived")
    device.connections[0].port = 4242
    store.merge_device(device)
    assert events[-1].paths == (f"{ARCHIVED}/dicomNetworkConnection/0/dicomPort",)
    assert ports_seen_by_subscriber == [4242]  # told after the commit was visible
    assert store.statistics()["commits"] == commits_before + 1
    store.merge_device(store.find_device("archived"))  # no change: no commit, no event
    assert len(events) == 1
    sub.cancel()
    store.persist_node(f"{ARCHIVED}/dicomDescription", "x")
    assert len(events) == 1


def test_own_device_is_shared_read_only_and_current(store: ConfigStore) -> None:
    own = store.own_device()
    assert own is store.own_device()  # one shared object, no copy per call
    for attempt in (
        lambda: setattr(own, "description", "x"),
        lambda: setattr(own.connections[0], "port", 1),
        lambda: own.application_entities.append(ApplicationEntity(ae_title="X")),
        lambda: setattr(own.archive.file_copy, "enabled", True),
        lambda: own.archive.sync_file_status.status_mapping.update({}),
        lambda: store.merge_device(own),
    ):
        with pytest.raises(ReadOnlyConfigError, match="load a fresh copy"):
            attempt()
    fresh = store.find_device("archived")
    fresh.archive.file_system_groups.append(
        FileSystemGroup(group_id="ONLINE_STORAGE", file_systems=[FileSystem(path="/data")])
    )
    store.merge_device(fresh)
    assert store.own_device() is not own
    assert [fs.path for _, fs in store.own_device().archive.iter_file_systems()] == ["/data"]
    assert own.archive.file_system_groups == []  # the old snapshot stays as it was


def test_node_api_and_queries(store: ConfigStore) -> None:
    store.persist_node(f"{DEVICES}/PEER", remote_ae_device("PEER", "h", 104).model_dump(
        mode="json", by_alias=True))  # fmt: skip
    assert store.get_node(f"{DEVICES}/PEER/dicomNetworkConnection/0/dicomPort") == 104
    assert store.find_ae_path("PEER") == f"{DEVICES}/PEER/dicomNetworkAE/0"
    conn_uuid = store.find_device("PEER").connections[0].uuid
    assert store.find_uuid_path(conn_uuid) == f"{DEVICES}/PEER/dicomNetworkConnection/0"
    store.remove_node(f"{DEVICES}/PEER/dicomNetworkAE/0/dicomNetworkConnectionReference")
    assert store.find_ae("PEER").connection_refs == []
    store.remove_node(f"{DEVICES}/PEER")
    assert store.list_device_names() == ["archived"]
    with pytest.raises(NotFoundError, match="no node at"):
        store.get_node(f"{ARCHIVED}/nothing")
    with pytest.raises(NotFoundError, match="no node with uuid"):
        store.find_uuid_path(conn_uuid)
    store.persist_node("/dicomConfigurationRoot/metadataRoot/note", {"k": "v"})
    assert store.get_node("/dicomConfigurationRoot/metadataRoot") == {"note": {"k": "v"}}


def test_device_stored_under_another_name_is_refused(store: ConfigStore) -> None:
    node = remote_ae_device("PEER", "h", 104).model_dump(mode="json", by_alias=True)
    with pytest.raises(IntegrityError, match="stored under 'OTHER'"):
        store.persist_node(f"{DEVICES}/OTHER", node)


def test_view_follows_hand_edits_of_the_json_file(tmp_path: Path) -> None:
    path = tmp_path / "conf.json"
    with open_store(f"json://{path}", poll_interval=0.02) as store:
        store.ensure_own_device()
        changed = threading.Event()
        store.subscribe(lambda event: changed.set() if event.origin == "remote" else None)
        tree = json.loads(path.read_text())
        tree["dicomConfigurationRoot"]["dicomDevicesRoot"]["archived"]["dicomDescription"] = "ed"
        path.write_text(json.dumps(tree, indent=2))
        assert changed.wait(10)
        assert store.own_device().description == "ed"
