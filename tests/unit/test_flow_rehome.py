"""Registering a rehomed vehicle in its region, and undoing it (docs/spec.md 2.1 steps 5-6)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flowkit import CONFIG, SERDE, T0_MS, context, json_copy, rehome_request, vehicle

from vprov.core.outputs import DELETE, KEEP, Decision, Effect
from vprov.flows import rehome
from vprov.sim.fleet import SimVehicle


def registered(sim: SimVehicle, region: str = "NA", request_id: str = "req-1"
               ) -> dict[str, Any]:
    """The region's entry after it handled a REGISTER, as the table hands it back."""
    request = rehome_request(sim, region=region, request_id=request_id)
    return json_copy(rehome.handle(request, None, region, context()).state)


def provisioned(sim: SimVehicle, index: int = 0) -> dict[str, Any]:
    entry = registered(sim)
    entry["devices"][sim.devices[index].device_id]["state"] = "PROVISIONED"
    return entry


def cancel(sim: SimVehicle, request_id: str = "req-1") -> dict[str, Any]:
    return rehome_request(sim, action="CANCEL", request_id=request_id)


# --- REGISTER ----------------------------------------------------------------------------------


def test_register_stores_the_vehicle_with_every_device_regional() -> None:
    sim = vehicle(ecu_types=("TCU", "IVI", "REFRIGERATOR"))
    decision = rehome.handle(rehome_request(sim, sequence=3), None, "NA", context())
    entry = decision.state
    assert (entry["vin"], entry["system_id"], entry["region"]) == (sim.vin, sim.system_id, "NA")
    assert entry["request_id"] == "req-1"
    assert entry["primary_device_id"] == sim.primary.device_id
    assert entry["sequence"] == 3
    assert entry["held"] == []
    assert entry["global_identity_deleted"] is False
    assert {k: v["state"] for k, v in entry["devices"].items()} == {
        d.device_id: "REGIONAL" for d in sim.devices}
    assert {k: v["primary"] for k, v in entry["devices"].items()} == {
        d.device_id: d.primary for d in sim.devices}


@pytest.mark.parametrize("region", sorted(CONFIG.regions))
def test_register_creates_the_primarys_identity_in_the_regions_scope(region: str) -> None:
    sim = vehicle()
    decision = rehome.handle(rehome_request(sim, region=region), None, region, context())
    assert decision.effects == [Effect("create_identity", region, sim.primary.device_id, {
        "system_id": sim.system_id, "vin": sim.vin,
        "certificate_fingerprint": sim.primary.fingerprint, "ecu_type": sim.primary.ecu_type,
    })]


@pytest.mark.parametrize("region", sorted(CONFIG.regions))
def test_register_confirms_with_the_regions_endpoint(region: str) -> None:
    sim = vehicle()
    ctx = context()
    decision = rehome.handle(rehome_request(sim, region=region), None, region, ctx)
    [result] = decision.outputs
    assert (result.kind, result.record, result.topic, result.key) == (
        "event", "RehomeResult", ctx.topics.rehome_result, sim.vin)
    assert result.value["outcome"] == "REGISTERED"
    assert result.value["request_id"] == "req-1"
    assert result.value["region"] == region
    assert result.value["gateway_endpoint"] == CONFIG.regions[region].gateway_endpoint
    assert result.value["error_code"] is None
    SERDE.encode("RehomeResult", result.value)


def test_register_redelivered_gives_the_same_result_and_effect() -> None:
    sim = vehicle()
    request = rehome_request(sim)
    first = rehome.handle(request, None, "NA", context())
    again = rehome.handle(request, json_copy(first.state), "NA", context(now_ms=T0_MS + 60_000))
    assert again.outputs == first.outputs
    assert again.effects == first.effects
    # the entry is written again, unchanged, so the changelog surely holds it
    assert again.state == first.state


def test_register_for_a_vehicle_with_a_provisioned_device_keeps_that_device() -> None:
    sim = vehicle()
    decision = rehome.handle(rehome_request(sim, request_id="req-2"), provisioned(sim), "NA",
                             context())
    assert decision.outputs[0].value["outcome"] == "REGISTERED"
    assert decision.state["devices"][sim.primary.device_id]["state"] == "PROVISIONED"
    assert decision.state["request_id"] == "req-2"


def test_register_over_a_provisioned_vehicle_leaves_the_given_entry_untouched() -> None:
    sim = vehicle()
    entry = provisioned(sim)
    untouched = copy.deepcopy(entry)
    rehome.handle(rehome_request(sim, request_id="req-2"), entry, "NA", context())
    assert entry == untouched  # decisions are pure: the shell writes the returned state


# --- CANCEL ------------------------------------------------------------------------------------


def test_cancel_with_the_matching_request_deletes_and_removes_the_identity() -> None:
    sim = vehicle()
    decision = rehome.handle(cancel(sim), registered(sim), "NA", context())
    assert decision.state is DELETE
    assert decision.effects == [Effect("delete_identity", "NA", sim.primary.device_id)]
    [result] = decision.outputs
    assert (result.value["outcome"], result.value["request_id"]) == ("CANCELLED", "req-1")
    SERDE.encode("RehomeResult", result.value)


def test_cancel_for_another_request_changes_nothing() -> None:
    sim = vehicle()
    decision = rehome.handle(cancel(sim, "req-other"), registered(sim), "NA", context())
    assert (decision.state, decision.outputs, decision.effects) == (KEEP, [], [])


def test_cancel_after_a_device_was_provisioned_changes_nothing() -> None:
    sim = vehicle()
    for index in range(len(sim.devices)):
        decision = rehome.handle(cancel(sim), provisioned(sim, index), "NA", context())
        assert (decision.state, decision.outputs, decision.effects) == (KEEP, [], [])


def test_cancel_with_nothing_stored_still_deletes_the_identity() -> None:
    sim = vehicle()
    decision = rehome.handle(cancel(sim), None, "NA", context())
    assert decision.state is KEEP
    assert decision.outputs == []
    assert decision.effects == [Effect("delete_identity", "NA", sim.primary.device_id)]


def test_cancel_redelivered_after_the_delete_is_the_same_undo() -> None:
    sim = vehicle()
    first = rehome.handle(cancel(sim), registered(sim), "NA", context())
    again = rehome.handle(cancel(sim), None, "NA", context())
    assert again.effects == first.effects


def test_register_then_cancel_then_register_again_stores_the_new_request() -> None:
    sim = vehicle()
    entry: dict[str, Any] | None = registered(sim, request_id="req-1")
    undone: Decision = rehome.handle(cancel(sim, "req-1"), entry, "NA", context())
    assert undone.state is DELETE
    again = rehome.handle(rehome_request(sim, request_id="req-2"), None, "NA", context())
    assert again.state["request_id"] == "req-2"
    assert again.effects[0].op == "create_identity"
