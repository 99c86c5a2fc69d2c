"""Registered devices on the global side: the registration table and the per-system index."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import Flow, context, registration_of, vehicle

from vprov.core.commands import CommandError, decode_index
from vprov.core.outputs import DELETE, GLOBAL_SCOPE, KEEP, Decision, Effect
from vprov.flows import registration
from vprov.sim import fleet


def index(command: dict[str, Any], entry: Any) -> Decision:
    """The index step on one record of the system-registrations topic, decoded like the
    worker decodes it."""
    return registration.index_system(decode_index(command), entry, context(),
                                     "system-registrations:0:1")


def record(index: int = 0, vehicle_index: int = 1, **changes: Any) -> dict[str, Any]:
    return {**fleet.registrations(vehicle(vehicle_index))[index], "home_region": None,
            "registered_at": 1, **changes}


def test_ingest_creates_the_registration() -> None:
    rec = record(0)
    decision = registration.ingest(rec["device_id"], rec, None, context())
    assert decision.state == registration.to_registration(rec)
    assert "registered_at" not in decision.state


def test_ingest_upserts_into_the_systems_index() -> None:
    rec = record(1)
    ctx = context()
    [upsert] = registration.ingest(rec["device_id"], rec, None, ctx).outputs
    assert (upsert.kind, upsert.topic, upsert.key) == (
        "internal", ctx.topics.system_registrations, rec["system_id"])
    assert upsert.value == {"op": "upsert", "registration": registration.to_registration(rec)}


def test_ingest_of_a_primary_creates_its_global_identity() -> None:
    rec = record(0)
    decision = registration.ingest(rec["device_id"], rec, None, context())
    assert decision.effects == [Effect("create_identity", GLOBAL_SCOPE, rec["device_id"], {
        "system_id": rec["system_id"], "certificate_fingerprint": rec["certificate_fingerprint"],
        "ecu_type": rec["ecu_type"],
    })]


def test_the_same_registration_again_creates_no_identity() -> None:
    # delivered again after a seek back, or published again: provisioning may have deleted the
    # global identity meanwhile, and the global IoT core must keep refusing the device
    rec = record(0)
    first = registration.ingest(rec["device_id"], rec, None, context())
    again = registration.ingest(rec["device_id"], rec, first.state, context())
    assert again.effects == []
    assert again.state == first.state and again.outputs == first.outputs
    changed = {**rec, "certificate_fingerprint": "f" * 40}
    assert [e.op for e in registration.ingest(rec["device_id"], changed, first.state,
                                             context()).effects] == ["create_identity"]


def test_ingest_of_a_secondary_creates_no_identity() -> None:
    rec = record(1)
    assert registration.ingest(rec["device_id"], rec, None, context()).effects == []


def test_primary_becoming_secondary_loses_its_global_identity() -> None:
    rec = record(0)
    previous = registration.to_registration(rec)
    decision = registration.ingest(rec["device_id"], {**rec, "primary": False}, previous,
                                   context())
    assert decision.effects == [Effect("delete_identity", GLOBAL_SCOPE, rec["device_id"])]


def test_device_moved_to_another_system_is_removed_from_the_old_one() -> None:
    rec = record(0)
    previous = registration.to_registration(rec)
    moved = {**rec, "system_id": "sys-new0001"}
    outputs = registration.ingest(rec["device_id"], moved, previous, context()).outputs
    assert [(o.key, o.value["op"]) for o in outputs] == [
        (rec["system_id"], "remove"), ("sys-new0001", "upsert")]
    assert outputs[0].value == {"op": "remove", "device_id": rec["device_id"]}


def test_tombstone_removes_the_registration_and_its_index_entry() -> None:
    rec = record(0)
    previous = registration.to_registration(rec)
    decision = registration.ingest(rec["device_id"], None, previous, context())
    assert decision.state is DELETE
    [remove] = decision.outputs
    assert (remove.key, remove.value) == (
        rec["system_id"], {"op": "remove", "device_id": rec["device_id"]})
    assert decision.effects == [Effect("delete_identity", GLOBAL_SCOPE, rec["device_id"])]


def test_tombstone_of_a_secondary_deletes_no_identity() -> None:
    rec = record(1)
    decision = registration.ingest(rec["device_id"], None, registration.to_registration(rec),
                                   context())
    assert decision.state is DELETE
    assert decision.effects == []


def test_tombstone_for_an_unknown_device_does_nothing() -> None:
    decision = registration.ingest("dunknown", None, None, context())
    assert (decision.state, decision.outputs, decision.effects) == (KEEP, [], [])


# --- the per-system index ----------------------------------------------------------------------


def test_index_upsert_adds_the_device() -> None:
    reg = registration_of(vehicle(), 0)
    decision = index({"op": "upsert", "registration": reg}, None)
    assert decision.state == {"devices": {reg["device_id"]: reg}}


def test_index_upsert_of_the_same_registration_writes_the_same_entry_again() -> None:
    # unchanged, but written again so that a re-delivery after a crash reaches the changelog
    reg = registration_of(vehicle(), 0)
    entry = {"devices": {reg["device_id"]: reg}}
    assert index({"op": "upsert", "registration": dict(reg)},
                                     entry).state == entry


def test_index_upsert_replaces_a_changed_registration() -> None:
    reg = registration_of(vehicle(), 0)
    changed = {**reg, "ecu_type": "IVI"}
    entry = {"devices": {reg["device_id"]: reg}}
    decision = index({"op": "upsert", "registration": changed}, entry)
    assert decision.state == {"devices": {reg["device_id"]: changed}}
    assert entry["devices"][reg["device_id"]] == reg  # the input entry is left alone


def test_index_remove_keeps_the_other_devices() -> None:
    sim = vehicle()
    first, second = registration_of(sim, 0), registration_of(sim, 1)
    entry = {"devices": {first["device_id"]: first, second["device_id"]: second}}
    decision = index({"op": "remove", "device_id": first["device_id"]}, entry)
    assert decision.state == {"devices": {second["device_id"]: second}}


def test_index_remove_of_the_last_device_deletes_the_entry() -> None:
    reg = registration_of(vehicle(), 0)
    decision = index({"op": "remove", "device_id": reg["device_id"]},
                                         {"devices": {reg["device_id"]: reg}})
    assert decision.state is DELETE


def test_index_remove_of_an_unknown_device_changes_nothing() -> None:
    reg = registration_of(vehicle(), 0)
    command = {"op": "remove", "device_id": "dunknown"}
    assert index(command, {"devices": {reg["device_id"]: reg}}).state is KEEP


@pytest.mark.parametrize("command", [
    pytest.param({"op": "rename"}, id="unknown op"),
    pytest.param({}, id="no op"),
    pytest.param({"op": "remove"}, id="remove without a device"),
])
def test_index_commands_that_are_not_commands_are_refused(command: dict[str, Any]) -> None:
    # the worker sends them to the dead-letter topic (9000) instead of dropping them
    with pytest.raises(CommandError):
        decode_index(command)


# --- through the driver ------------------------------------------------------------------------


def test_registering_a_vehicle_fills_both_tables() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim, home_region="EU")
    assert set(flow.registrations) == {d.device_id for d in sim.devices}
    assert set(flow.systems[sim.system_id]["devices"]) == {d.device_id for d in sim.devices}
    assert flow.registrations[sim.primary.device_id]["home_region"] == "EU"
    assert list(flow.identities) == [(GLOBAL_SCOPE, sim.primary.device_id)]


def test_moving_a_device_between_systems_moves_it_in_the_index() -> None:
    flow, sim, other = Flow(), vehicle(1), vehicle(2)
    flow.register(sim)
    flow.register(other)
    moved = {**record(1, 1), "system_id": other.system_id, "sub_system_id": other.sub_system_id}
    flow.ingest(moved["device_id"], moved)
    assert moved["device_id"] not in flow.systems[sim.system_id]["devices"]
    assert moved["device_id"] in flow.systems[other.system_id]["devices"]


def test_tombstones_of_every_device_empty_the_index() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    for device in sim.devices:
        flow.ingest(device.device_id, None)
    assert flow.registrations == {}
    assert flow.systems == {}
    assert flow.identities == {}
