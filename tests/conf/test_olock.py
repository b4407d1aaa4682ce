"""Hash-based optimistic locking, as dcm4chee-conf describes it."""

from __future__ import annotations

import pytest

from archived.conf import (
    ApplicationEntity,
    ConfigStore,
    Connection,
    FileSystem,
    FileSystemGroup,
    OptimisticLockError,
)
from archived.conf.olock import hashes_of, node_hash

DEVICE = "/dicomConfigurationRoot/dicomDevicesRoot/archived"


def test_three_users_scenario(store: ConfigStore) -> None:
    user1 = store.find_device("archived")
    user2 = store.find_device("archived")
    user3 = store.find_device("archived")

    user1.connections[0].port = 11113
    store.merge_device(user1)  # first: succeeds

    user2.connections[0].bind_address = "10.1.1.1"
    with pytest.raises(OptimisticLockError) as raised:
        store.merge_device(user2)  # second: same connection, fails
    assert raised.value.path == f"{DEVICE}/dicomNetworkConnection/0"
    assert "dicomNetworkConnection/0" in str(raised.value)

    user3.archive.file_system_groups.append(
        FileSystemGroup(group_id="ONLINE_STORAGE", file_systems=[FileSystem(path="/data/online")])
    )
    store.merge_device(user3)  # third: device-level change elsewhere, succeeds

    stored = store.find_device("archived")
    assert stored.connections[0].port == 11113  # the first user's change is preserved
    assert stored.connections[0].bind_address is None  # the second user's change never landed
    assert [g.group_id for g in stored.archive.file_system_groups] == ["ONLINE_STORAGE"]


def test_hash_ignores_key_order_and_orders_uuid_lists() -> None:
    a = {"_.uuid": "u", "cn": "x", "dicomHostname": "h", "dicomTLSCipherSuite": ["A", "B"]}
    b = {"dicomTLSCipherSuite": ["A", "B"], "dicomHostname": "h", "cn": "x", "_.uuid": "u"}
    assert node_hash(a, Connection) == node_hash(b, Connection)
    tcs_1 = {"dicomNetworkConnection": [{"_.uuid": "1"}, {"_.uuid": "2"}], "x": 1}
    device_1 = {"_.uuid": "d", "dicomDeviceName": "n", **tcs_1}
    device_2 = {"_.uuid": "d", "dicomDeviceName": "n",
                "dicomNetworkConnection": [{"_.uuid": "2"}, {"_.uuid": "1"}], "x": 1}  # fmt: skip
    assert hashes_of(device_1) == hashes_of(device_2)
    assert node_hash({**a, "cn": "y"}, Connection) != node_hash(a, Connection)


def test_two_writers_changing_different_connections_both_succeed(store: ConfigStore) -> None:
    setup = store.find_device("archived")
    setup.connections.append(Connection(common_name="tls", hostname="0.0.0.0", port=2762))
    store.merge_device(setup)
    first, second = store.find_device("archived"), store.find_device("archived")
    first.connections[0].port = 104
    second.connections[1].port = 2763
    store.merge_device(first)
    store.merge_device(second)
    stored = store.find_device("archived")
    assert [c.port for c in stored.connections] == [104, 2763]


def test_unchanged_device_level_keeps_concurrent_device_level_change(store: ConfigStore) -> None:
    first, second = store.find_device("archived"), store.find_device("archived")
    first.description = "the archive"
    store.merge_device(first)
    second.connections[0].hostname = "127.0.0.1"
    store.merge_device(second)  # second did not touch the device's own fields
    stored = store.find_device("archived")
    assert stored.description == "the archive"
    assert stored.connections[0].hostname == "127.0.0.1"


def test_device_level_conflict_names_the_device(store: ConfigStore) -> None:
    first, second = store.find_device("archived"), store.find_device("archived")
    first.description = "one"
    second.description = "two"
    store.merge_device(first)
    with pytest.raises(OptimisticLockError) as raised:
        store.merge_device(second)
    assert raised.value.path == "/dicomConfigurationRoot/dicomDevicesRoot/archived"


def test_concurrent_additions_of_aes_are_both_kept(store: ConfigStore) -> None:
    first, second = store.find_device("archived"), store.find_device("archived")
    conn = first.connections[0].uuid
    first.application_entities.append(ApplicationEntity(ae_title="ONE", connection_refs=[conn]))
    second.application_entities.append(ApplicationEntity(ae_title="TWO", connection_refs=[conn]))
    store.merge_device(first)
    store.merge_device(second)  # second never saw ONE: it must not remove it
    titles = [ae.ae_title for ae in store.find_device("archived").application_entities]
    assert sorted(titles) == ["ARCHIVED", "ONE", "TWO"]


def test_removing_a_node_someone_else_changed_fails(store: ConfigStore) -> None:
    setup = store.find_device("archived")
    setup.connections.append(Connection(common_name="extra", port=4242))
    store.merge_device(setup)
    first, second = store.find_device("archived"), store.find_device("archived")
    first.connections[1].port = 4243
    store.merge_device(first)
    del second.connections[1]
    with pytest.raises(OptimisticLockError, match="removed a node that was changed"):
        store.merge_device(second)
    third = store.find_device("archived")
    del third.connections[1]
    store.merge_device(third)  # unchanged since loaded: removal succeeds
    assert len(store.find_device("archived").connections) == 1


def test_device_built_from_scratch_overwrites(store: ConfigStore) -> None:
    from archived.conf import default_archive_device

    changed = store.find_device("archived")
    changed.description = "will be replaced"
    store.merge_device(changed)
    store.merge_device(default_archive_device("archived"))
    assert store.find_device("archived").description is None


def test_merge_after_device_removed_fails(store: ConfigStore) -> None:
    from archived.conf import remote_ae_device

    store.merge_device(remote_ae_device("PEER", "10.0.0.9", 104))
    loaded = store.find_device("PEER")
    store.remove_device("PEER")
    loaded.description = "late"
    with pytest.raises(OptimisticLockError, match="removed or replaced"):
        store.merge_device(loaded)
