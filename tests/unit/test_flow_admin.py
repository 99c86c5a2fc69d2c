"""Operators' commands after the first boot (docs/after-first-boot.md), in memory: a move to
another region with either policy, its undo by a failure or the deadline, a replaced device, a
decommissioning and a reinstatement, the refusals, and the factory-reset policies."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flowkit import (
    CONFIG,
    Flow,
    as_device,
    error_code,
    events,
    lifecycle,
    only_reply,
    rehome_requests,
    replies,
    reply_texts,
    vehicle,
)

from vprov.core.commands import RehomeDeadline
from vprov.core.ids import derive_id
from vprov.core.outputs import GLOBAL_SCOPE, Output
from vprov.ops.audit import compare, fold
from vprov.sim import fleet
from vprov.sim.fleet import SimVehicle

pytestmark = pytest.mark.reprovisioning

# --- helpers -------------------------------------------------------------------------------------


def outcomes(outputs: list[Output]) -> list[dict[str, Any]]:
    return events(outputs, "AdminOutcome")


def summary(outputs: list[Output]) -> list[tuple[str, int | None]]:
    return [(o["outcome"], o["error_code"]) for o in outcomes(outputs)]


def move_id(sim: SimVehicle, command_id: str = "c-move") -> str:
    return derive_id("move", sim.vin, command_id)


def provision(flow: Flow, sim: SimVehicle, index: int, message_id: str,
              region: str = "NA") -> list[Output]:
    device = sim.devices[index]
    raw = fleet.device_provision(dataclasses.replace(sim, region=region), device, message_id,
                                 flow.now_s)
    return flow.provision(raw, region, authenticated=device.device_id)


def query(flow: Flow, sim: SimVehicle, message_id: str) -> list[Output]:
    return flow.query(fleet.query(sim, message_id, flow.now_s),
                      authenticated=sim.primary.device_id)


def provisioned(flow: Flow, sim: SimVehicle) -> None:
    """``sim`` homed in NA with every device provisioned."""
    flow.homed(sim)
    for index in range(len(sim.devices)):
        provision(flow, sim, index, f"p-{index}")
    assert {d["state"] for d in flow.regional["NA"][sim.vin]["devices"].values()} <= {
        "PROVISIONED", "ACTIVE"}


def move(flow: Flow, sim: SimVehicle, policy: str = "MIGRATE", target: str = "EU",
         command_id: str = "c-move", **fields: Any) -> list[Output]:
    return flow.admin(sim.vin, "MOVE", command_id, target_region=target, move_policy=policy,
                      **fields)


def history(flow: Flow, vin: str) -> list[dict[str, Any]]:
    """The vehicle's lifecycle events, de-duplicated by id (re-sends repeat ids), in order."""
    unique = {e["event_id"]: e for e in lifecycle(flow.sent) if e["vin"] == vin}
    return sorted(unique.values(), key=lambda e: e["sequence"])


def audit(flow: Flow, vin: str) -> None:
    """The fold of the vehicle's history has no problem and agrees with the tables."""
    folded = fold(vin, history(flow, vin))
    assert folded.problems == []
    region = flow.vehicles[vin]["region"]
    regional = flow.regional[region].get(vin) if region else None
    assert compare(folded, flow.vehicles[vin], regional, region) == []


def copy_of(flow: Flow) -> dict[str, Any]:
    """What the deployment *is*, without any answer memo (global or regional)."""
    snap = flow.domain_snapshot()
    for table in snap["regional"].values():
        for entry in table.values():
            entry.pop("memo", None)
    return snap


def identities(flow: Flow, scope: str) -> set[str]:
    return {device for (where, device) in flow.identities if where == scope}


def deadline(flow: Flow, sim: SimVehicle, request_id: str) -> list[Output]:
    return flow.command(sim.vin, RehomeDeadline(request_id).to_json())


def failed_result(flow: Flow, sim: SimVehicle, request_id: str, region: str) -> dict[str, Any]:
    return {"request_id": request_id, "vin": sim.vin, "system_id": sim.system_id,
            "region": region, "outcome": "FAILED", "gateway_endpoint": "",
            "error_code": 9000, "error_message": "disk full", "completed_at": flow.now_ms,
            "sequence": None, "snapshot": None}


def refused(flow: Flow, vin: str, operation: str, code: int, command_id: str = "c-refused",
            **fields: Any) -> dict[str, Any]:
    """Send a command that must be refused with ``code``: nothing but the outcome is sent, and
    nothing but the answer memo changes. Returns the outcome."""
    before = copy_of(flow)
    out = flow.admin(vin, operation, command_id, **fields)
    [outcome] = outcomes(out)
    assert (outcome["outcome"], outcome["error_code"]) == ("REFUSED", code)
    assert outcome["error_message"]
    assert len(out) == 1
    assert copy_of(flow) == before
    return outcome


# --- move: MIGRATE and RESET ---------------------------------------------------------------------


def test_a_migrate_move_hands_the_vehicle_over_with_its_devices_as_they_were() -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    na_devices = flow.regional["NA"][sim.vin]["devices"]
    events_before = len(history(flow, sim.vin))
    out = move(flow, sim)
    assert [(o["outcome"], o["region"], o["error_code"]) for o in outcomes(out)] == [
        ("ACCEPTED", "NA", None), ("DONE", "EU", None)]
    assert [r["action"] for r in rehome_requests(out)] == ["EXPORT", "REGISTER", "COMMIT",
                                                          "RELEASE"]
    assert {r["request_id"] for r in rehome_requests(out)} == {move_id(sim)}
    # the vehicle itself: MOVING while both regions are frozen, then REGIONAL in EU
    assert [(e["previous_state"], e["state"], e["device_id"]) for e in lifecycle(out)] == [
        ("REGIONAL", "MOVING", None), ("MOVING", "REGIONAL", None)]
    assert len(history(flow, sim.vin)) == events_before + 2
    entry = flow.vehicles[sim.vin]
    assert (entry["state"], entry["region"], entry["admin"]) == ("REGIONAL", "EU", None)
    assert entry["gateway_endpoint"] == CONFIG.regions["EU"].gateway_endpoint
    # the source let go; the target has the devices as they were, details too, unfrozen
    assert sim.vin not in flow.regional["NA"]
    target = flow.regional["EU"][sim.vin]
    assert not target.get("frozen")
    assert target["devices"] == na_devices
    assert target["vehicle_info"]
    assert target["sequence"] == entry["sequence"]
    # identities: none left in NA, the primary's in EU (the global one went at provisioning)
    assert identities(flow, "NA") == set()
    assert identities(flow, "EU") == {sim.primary.device_id}
    assert identities(flow, GLOBAL_SCOPE) == set()
    audit(flow, sim.vin)
    # a device provisioned before is provisioned still: 13124 under the default policy
    assert error_code(only_reply(provision(flow, sim, 1, "p-eu-1", "EU"))) == 13124


def test_a_reset_move_takes_every_device_back_to_regional_in_the_target() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "REFRIGERATOR"))
    provisioned(flow, sim)
    out = move(flow, sim, "RESET")
    assert summary(out) == [("ACCEPTED", None), ("DONE", None)]
    target = flow.regional["EU"][sim.vin]
    assert not target.get("frozen")
    assert target["vehicle_info"] == {}
    assert {d: v["state"] for d, v in target["devices"].items()} == {
        d.device_id: "REGIONAL" for d in sim.devices}
    assert all("details" not in v for v in target["devices"].values())
    # one reset event per device, in the target, after the vehicle's REGIONAL
    device_events = [(e["partition"], e["previous_state"], e["state"])
                     for e in lifecycle(out) if e["device_id"]]
    assert device_events == [("EU", "PROVISIONED", "REGIONAL"), ("EU", "PROVISIONED", "REGIONAL"),
                             ("EU", "ACTIVE", "REGIONAL")]
    assert sim.vin not in flow.regional["NA"]
    assert identities(flow, "NA") == set()
    assert identities(flow, "EU") == {sim.primary.device_id}
    audit(flow, sim.vin)
    # every device provisions again, in EU
    for index in range(len(sim.devices)):
        answer = only_reply(provision(flow, sim, index, f"p-eu-{index}", "EU"))
        assert answer["status"] == "SUCCESS", answer
    audit(flow, sim.vin)


def test_a_moved_vehicles_query_is_answered_with_the_new_regions_endpoint() -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    move(flow, sim)
    answer = only_reply(query(flow, sim, "q-after"))
    assert answer["status"] == "SUCCESS"
    assert answer["body"]["iot_gateway_endpoint"] == CONFIG.regions["EU"].gateway_endpoint


def moving_with_the_target_silent() -> tuple[Flow, SimVehicle, str, list[Output]]:
    """A provisioned vehicle moving NA -> EU whose REGISTER waits, parked, on EU's rehome topic:
    the flow, the vehicle, that topic, and what the command produced."""
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    eu = flow.topics.rehome("EU")
    flow.paused.add(eu)
    sent = move(flow, sim)
    assert flow.vehicles[sim.vin]["state"] == "MOVING"
    return flow, sim, eu, sent


# --- the same command again ----------------------------------------------------------------------


def test_a_move_sent_again_while_under_way_and_after_has_one_effect() -> None:
    flow, sim, eu, first = moving_with_the_target_silent()
    sent = {(r["action"], r["request_id"]) for r in rehome_requests(flow.sent)}
    event_ids = {e["event_id"] for e in lifecycle(flow.sent)}
    flow.advance(5)
    again = move(flow, sim)
    # the same ACCEPTED, byte for byte (decided when it was first sent), no new work
    assert outcomes(again) == outcomes(first)[:1]
    assert {(r["action"], r["request_id"]) for r in rehome_requests(flow.sent)} == sent
    assert {e["event_id"] for e in lifecycle(flow.sent)} == event_ids
    done = flow.release(eu)
    assert [o["outcome"] for o in outcomes(done)] == ["DONE", "DONE"]  # one per REGISTER
    assert outcomes(done)[0] == outcomes(done)[1]
    final = copy_of(flow)
    event_ids = {e["event_id"] for e in lifecycle(flow.sent)}
    flow.advance(5)
    after = move(flow, sim)
    assert outcomes(after) == outcomes(done)[:1]  # the final outcome, not ACCEPTED
    assert rehome_requests(after) == [] and lifecycle(after) == []
    assert {e["event_id"] for e in lifecycle(flow.sent)} == event_ids
    assert copy_of(flow) == final
    audit(flow, sim.vin)
    # and the end is the end of a single move
    single = Flow()
    provisioned(single, sim)
    move(single, sim)
    assert copy_of(single) == final


@pytest.mark.parametrize("operation", ["REPLACE_DEVICE", "DECOMMISSION"])
def test_a_regional_command_sent_again_gets_its_outcome_without_a_second_effect(
        operation: str) -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    provisioned(flow, sim)
    fields = ({"old_device_id": sim.devices[1].device_id,
               "new_device_id": sim.devices[2].device_id}
              if operation == "REPLACE_DEVICE" else {})
    first = flow.admin(sim.vin, operation, "c-1", **fields)
    assert summary(first) == [("ACCEPTED", None), ("DONE", None)]
    state, count = copy_of(flow), len(flow.sent)
    event_ids = {e["event_id"] for e in lifecycle(flow.sent)}
    effects = len(flow.effects)
    flow.advance(5)
    again = flow.admin(sim.vin, operation, "c-1", **fields)
    assert again == [o for o in first if o.record == "AdminOutcome"][-1:]
    assert len(flow.sent) == count + 1
    assert {e["event_id"] for e in lifecycle(flow.sent)} == event_ids
    assert copy_of(flow) == state
    assert len(flow.effects) == effects


# --- refusals: a code, and nothing changed -------------------------------------------------------


def test_a_command_for_an_unknown_vin_is_refused_13135() -> None:
    flow = Flow()
    outcome = refused(flow, "1VTESTA0000000009", "MOVE", 13135, target_region="EU",
                      move_policy="MIGRATE")
    assert outcome["region"] is None
    assert flow.vehicles == {}


@pytest.mark.parametrize(("fields", "code"), [
    pytest.param({"target_region": "ZZ", "move_policy": "MIGRATE"}, 6100, id="unknown region"),
    pytest.param({"target_region": "NA", "move_policy": "MIGRATE"}, 5000, id="same region"),
    pytest.param({"target_region": "EU"}, 13122, id="no policy"),
])
def test_a_move_the_vehicle_cannot_make_is_refused(fields: dict[str, Any], code: int) -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    refused(flow, sim.vin, "MOVE", code, **fields)


def test_a_vehicle_that_is_not_regional_does_not_move_5000() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.query(fleet.query(sim, "q-1", flow.now_s, region="ZZ"),
               authenticated=sim.primary.device_id)
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"
    refused(flow, sim.vin, "MOVE", 5000, target_region="EU", move_policy="MIGRATE")


def test_a_second_command_while_a_move_is_in_flight_is_refused_13131() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    provisioned(flow, sim)
    flow.paused.add(flow.topics.rehome("NA"))
    move(flow, sim)
    refused(flow, sim.vin, "MOVE", 13131, "c-2", target_region="AP", move_policy="RESET")
    refused(flow, sim.vin, "DECOMMISSION", 13131, "c-3")
    refused(flow, sim.vin, "REPLACE_DEVICE", 13131, "c-4", old_device_id=sim.devices[1].device_id,
            new_device_id=sim.devices[2].device_id)
    flow.release()
    assert flow.vehicles[sim.vin]["region"] == "EU"  # the first one went through


def test_a_command_while_the_first_boot_rehome_is_pending_is_refused_13131() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome("NA"))
    query(flow, sim, "q-1")
    assert flow.vehicles[sim.vin]["pending"] is not None
    refused(flow, sim.vin, "DECOMMISSION", 13131)
    flow.release()
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"


def test_a_move_out_of_the_countrys_region_is_refused_13134_unless_forced() -> None:
    config = dataclasses.replace(CONFIG, homing_by_country=True)
    flow, sim = Flow(config), vehicle()  # US: homed in NA by country
    provisioned(flow, sim)
    outcome = refused(flow, sim.vin, "MOVE", 13134, target_region="EU", move_policy="MIGRATE")
    assert "force" in outcome["error_message"]
    out = move(flow, sim, command_id="c-forced", force=True)
    assert summary(out) == [("ACCEPTED", None), ("DONE", None)]
    assert flow.vehicles[sim.vin]["region"] == "EU"


@pytest.mark.parametrize(("old", "new", "code"), [
    pytest.param(1, 1, 13122, id="the same device"),
    pytest.param(1, None, 13122, id="no new device"),
    pytest.param(None, 1, 13122, id="no old device"),
    pytest.param("stranger", 1, 13111, id="old not part of the vehicle"),
    pytest.param(1, "stranger", 13111, id="new not joined"),
])
def test_a_replacement_with_bad_devices_is_refused(old: Any, new: Any, code: int) -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)

    def device_id(which: Any) -> str | None:
        if which is None:
            return None
        return "dstranger0001" if which == "stranger" else sim.devices[which].device_id

    refused(flow, sim.vin, "REPLACE_DEVICE", code, old_device_id=device_id(old),
            new_device_id=device_id(new))


def test_a_replaced_device_cannot_replace_another_13132() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    provisioned(flow, sim)
    tcu, ivi, adas = (d.device_id for d in sim.devices)
    flow.admin(sim.vin, "REPLACE_DEVICE", "c-1", old_device_id=ivi, new_device_id=adas)
    refused(flow, sim.vin, "REPLACE_DEVICE", 13132, old_device_id=tcu, new_device_id=ivi)


# --- undo: a failure, the deadline, late answers -------------------------------------------------


def test_a_failure_in_the_target_undoes_the_move() -> None:
    flow, sim, eu, _ = moving_with_the_target_silent()
    out = flow.result(failed_result(flow, sim, move_id(sim), "EU"))
    assert [(e["previous_state"], e["state"]) for e in lifecycle(out)] == [("MOVING", "REGIONAL")]
    assert [(r["action"], r["region"]) for r in rehome_requests(out)] == [("RESUME", "NA"),
                                                                          ("CANCEL", "EU")]
    [outcome] = outcomes(out)
    assert (outcome["outcome"], outcome["error_code"], outcome["region"]) == (
        "FAILED", 13105, "NA")
    assert "disk full" in outcome["error_message"]
    entry = flow.vehicles[sim.vin]
    assert (entry["state"], entry["region"], entry["admin"]) == ("REGIONAL", "NA", None)
    assert not flow.regional["NA"][sim.vin].get("frozen")
    # the source answers again, as before
    assert error_code(only_reply(provision(flow, sim, 1, "p-again"))) == 13124
    assert only_reply(query(flow, sim, "q-again"))["status"] == "SUCCESS"
    # the parked REGISTER reaches the target late: its copy does not stay
    flow.release(eu)
    assert sim.vin not in flow.regional["EU"]
    assert identities(flow, "EU") == set()
    audit(flow, sim.vin)
    # and the command sent again gets FAILED, not ACCEPTED
    assert outcomes(move(flow, sim)) == [outcome]


def test_the_deadline_undoes_a_move_and_a_late_registered_gets_a_cancel() -> None:
    flow, sim, eu, _ = moving_with_the_target_silent()
    assert deadline(flow, sim, move_id(sim)) == []  # not yet: nothing happens
    assert flow.vehicles[sim.vin]["state"] == "MOVING"
    flow.advance(CONFIG.move_timeout_seconds)
    out = deadline(flow, sim, move_id(sim))
    assert [(e["previous_state"], e["state"]) for e in lifecycle(out)] == [("MOVING", "REGIONAL")]
    assert [(r["action"], r["region"]) for r in rehome_requests(out)] == [("RESUME", "NA"),
                                                                          ("CANCEL", "EU")]
    assert summary(out) == [("FAILED", 13105)]
    assert "EU did not answer" in outcomes(out)[0]["error_message"]
    assert (flow.vehicles[sim.vin]["state"], flow.vehicles[sim.vin]["region"]) == (
        "REGIONAL", "NA")
    assert not flow.regional["NA"][sim.vin].get("frozen")
    state = copy_of(flow)
    assert deadline(flow, sim, move_id(sim)) == []  # the timer again: no second undo
    assert copy_of(flow) == state
    # the REGISTER comes through after the undo: the target confirms, and is told to let go
    late = flow.release(eu)
    assert [r["outcome"] for r in events(late, "RehomeResult")][:1] == ["REGISTERED"]
    assert [(r["action"], r["region"], r["request_id"]) for r in rehome_requests(late)] == [
        ("CANCEL", "EU", move_id(sim))]
    assert sim.vin not in flow.regional["EU"]
    assert identities(flow, "EU") == set()
    assert identities(flow, "NA") == {sim.primary.device_id}
    assert flow.vehicles[sim.vin]["region"] == "NA"
    audit(flow, sim.vin)


def test_a_deadline_after_the_move_is_done_changes_nothing() -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    move(flow, sim)
    state = copy_of(flow)
    flow.advance(CONFIG.move_timeout_seconds * 2)
    assert deadline(flow, sim, move_id(sim)) == []
    assert copy_of(flow) == state


@pytest.mark.parametrize("late", ["export", "exported"])
def test_a_late_export_after_the_undo_leaves_the_source_unfrozen(late: str) -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    # the source never got the EXPORT in time, or its EXPORTED is late
    paused = flow.topics.rehome("NA") if late == "export" else flow.topics.rehome_result
    flow.paused.add(paused)
    move(flow, sim)
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"  # not MOVING before the export
    flow.advance(CONFIG.move_timeout_seconds)
    out = deadline(flow, sim, move_id(sim))
    assert lifecycle(out) == []
    assert [r["action"] for r in rehome_requests(out)] == ["RESUME"]  # no target asked yet
    assert summary(out) == [("FAILED", 13105)]
    flow.release()
    assert not flow.regional["NA"][sim.vin].get("frozen")
    entry = flow.vehicles[sim.vin]
    assert (entry["state"], entry["region"], entry["admin"]) == ("REGIONAL", "NA", None)
    assert rehome_requests(flow.sent, "REGISTER")[-1]["region"] == "NA"  # none to EU
    assert sim.vin not in flow.regional["EU"]
    assert error_code(only_reply(provision(flow, sim, 1, "p-again"))) == 13124
    audit(flow, sim.vin)


# --- the vehicle's devices while it moves -------------------------------------------------------


def test_requests_while_the_vehicle_is_frozen_are_answered_13131() -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    results = flow.topics.rehome_result
    flow.paused.add(results)
    move(flow, sim)
    [exported] = flow.parked
    flow.parked.clear()
    flow.deliver(exported)  # the target takes the record up; its confirmation waits
    assert flow.vehicles[sim.vin]["state"] == "MOVING"
    assert flow.regional["NA"][sim.vin]["frozen"]["direction"] == "out"
    assert flow.regional["EU"][sim.vin]["frozen"]["direction"] == "in"
    answer = only_reply(query(flow, sim, "q-frozen"))
    assert error_code(answer) == 13131
    assert flow.vehicles[sim.vin]["pending"] is None  # answered, not waiting
    for region in ("NA", "EU"):
        held = [entry["held"] for entry in (flow.regional[region][sim.vin],)]
        out = provision(flow, sim, 0, f"p-frozen-{region}", region)
        assert error_code(only_reply(out)) == 13131
        assert lifecycle(out) == []
        assert [flow.regional[region][sim.vin]["held"]] == held  # not held
    # the same request again: the same answer
    again = provision(flow, sim, 0, "p-frozen-NA", "NA")
    assert error_code(only_reply(again)) == 13131
    flow.release()
    assert flow.vehicles[sim.vin]["region"] == "EU"
    assert only_reply(query(flow, sim, "q-after"))["status"] == "SUCCESS"


def test_requests_held_in_the_source_at_the_export_are_answered_13131() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    other = dataclasses.replace(sim.devices[1], device_id="dlate000000001",
                                fingerprint="e" * 40)
    late = dataclasses.replace(sim, devices=(*sim.devices, other))
    provision(flow, sim, 1, "p-secondary")  # waits for the primary
    provision(flow, late, 2, "p-unknown")  # waits for its registration to join
    assert {h["message_id"] for h in flow.regional["NA"][sim.vin]["held"]} == {
        "p-secondary", "p-unknown"}
    out = move(flow, sim)
    answers = {a["message_id"]: error_code(a) for a in replies(out)}
    assert len(answers) == 2 and set(answers.values()) == {13131}
    target = flow.regional["EU"][sim.vin]
    assert target["held"] == []
    # the secondary, sent again to its new region, waits for the primary there
    assert provision(flow, sim, 1, "p-secondary-eu", "EU") == []
    assert [h["message_id"] for h in flow.regional["EU"][sim.vin]["held"]] == ["p-secondary-eu"]


def _race_join(flow: Flow, sim: SimVehicle, results_first: bool) -> SimVehicle:
    """A device registered while the vehicle is MOVING, the target's confirmation reaching the
    global side before (``results_first``) or after the JOIN reaches the target."""
    extra = dataclasses.replace(sim.devices[1], device_id="dlate000000001", fingerprint="e" * 40,
                                ecu_type="ADAS")
    late = dataclasses.replace(sim, devices=(*sim.devices, extra))
    eu, results = flow.topics.rehome("EU"), flow.topics.rehome_result
    flow.paused.update({eu, results})
    move(flow, sim)
    flow.release(results)  # EXPORTED: MOVING, REGISTER parked for EU
    flow.paused.add(results)
    assert flow.vehicles[sim.vin]["state"] == "MOVING"
    out = flow.register(late, devices=[2])
    [join] = rehome_requests(out, "JOIN")
    assert join["region"] == "EU"  # not the source, which lets the vehicle go
    assert extra.device_id in {d["device_id"] for d in flow.vehicles[sim.vin]["devices"]}
    if not results_first:
        flow.release(eu)
        flow.release(results)
    else:
        eu_parked = [o for o in flow.parked if o.topic == eu]
        flow.parked = [o for o in flow.parked if o.topic != eu]
        flow.paused.discard(eu)
        register, *rest = eu_parked
        flow.deliver(register)
        flow.release(results)
        for output in rest:
            flow.deliver(output)
    flow.release()
    return late


@pytest.mark.parametrize("results_first", [True, False], ids=["switch first", "join first"])
def test_a_device_that_joins_during_a_move_reaches_the_target(results_first: bool) -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    late = _race_join(flow, sim, results_first)
    extra = late.devices[2]
    assert flow.vehicles[sim.vin]["region"] == "EU"
    target = flow.regional["EU"][sim.vin]
    assert target["devices"][extra.device_id]["state"] == "REGIONAL"
    assert not target.get("frozen")
    audit(flow, sim.vin)
    answer = only_reply(provision(flow, late, 2, "p-late", "EU"))
    assert answer["status"] == "SUCCESS", answer
    audit(flow, sim.vin)


# --- replace a device ----------------------------------------------------------------------------


@pytest.mark.parametrize("old_index", [0, 1], ids=["primary", "secondary"])
def test_a_replaced_device_hands_its_place_to_the_new_one(old_index: int) -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    flow.homed(sim)
    provision(flow, sim, 0, "p-0")
    provision(flow, sim, 1, "p-1")
    old, new = sim.devices[old_index], sim.devices[2]
    out = flow.admin(sim.vin, "REPLACE_DEVICE", "c-replace", old_device_id=old.device_id,
                     new_device_id=new.device_id)
    assert summary(out) == [("ACCEPTED", None), ("DONE", None)]
    assert [(r["action"], r["region"]) for r in rehome_requests(out)] == [("REPLACE", "NA")]
    assert [(e["device_id"], e["previous_state"], e["state"]) for e in lifecycle(out)] == [
        (old.device_id, "PROVISIONED", "REMOVED")]
    entry = flow.vehicles[sim.vin]
    assert entry["admin"] is None
    assert entry["revoked"] == [old.device_id]
    assert old.device_id not in {d["device_id"] for d in entry["devices"]}
    regional = flow.regional["NA"][sim.vin]
    assert old.device_id not in regional["devices"]
    assert regional["revoked"] == [old.device_id]
    primary = new.device_id if old_index == 0 else sim.devices[0].device_id
    assert entry["primary_device_id"] == regional["primary_device_id"] == primary
    assert regional["devices"][new.device_id]["primary"] is (old_index == 0)
    assert {d["device_id"]: d["primary"] for d in entry["devices"]}[new.device_id] is (
        old_index == 0)
    assert (GLOBAL_SCOPE, old.device_id) not in flow.identities
    assert ("NA", old.device_id) not in flow.identities
    assert (("NA", new.device_id) in flow.identities) is (old_index == 0)
    audit(flow, sim.vin)
    # the old device is refused from now on; the new one provisions
    replaced = as_device(sim, old_index)
    assert error_code(only_reply(query(flow, replaced, "q-old"))) == 13132
    assert error_code(only_reply(provision(flow, sim, old_index, "p-old"))) == 13132
    assert only_reply(provision(flow, sim, 2, "p-new"))["status"] == "SUCCESS"
    audit(flow, sim.vin)
    if old_index == 0:  # the new primary queries in its place
        assert only_reply(query(flow, as_device(sim, 2), "q-new"))["status"] == "SUCCESS"


def test_a_replacement_before_the_first_boot_is_done_in_the_global_store_alone() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    flow.register(sim)
    flow.query(fleet.query(sim, "q-1", flow.now_s, region="ZZ"),
               authenticated=sim.primary.device_id)
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"
    old, new = sim.devices[1], sim.devices[2]
    out = flow.admin(sim.vin, "REPLACE_DEVICE", "c-replace", old_device_id=old.device_id,
                     new_device_id=new.device_id)
    assert [(o["outcome"], o["region"]) for o in outcomes(out)] == [("DONE", None)]
    assert rehome_requests(out) == [] and lifecycle(out) == []
    entry = flow.vehicles[sim.vin]
    assert entry["revoked"] == [old.device_id] and entry.get("admin") is None
    assert old.device_id not in {d["device_id"] for d in entry["devices"]}
    # homed later: the region never hears of the old device
    query(flow, sim, "q-2")
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"
    assert set(flow.regional["NA"][sim.vin]["devices"]) == {sim.devices[0].device_id,
                                                            new.device_id}


def test_a_join_of_a_replaced_device_is_ignored() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    provisioned(flow, sim)
    old = sim.devices[1]
    flow.admin(sim.vin, "REPLACE_DEVICE", "c-replace", old_device_id=old.device_id,
               new_device_id=sim.devices[2].device_id)
    state = copy_of(flow)["vehicles"][sim.vin]
    # registered again (say, re-imported): it does not come back
    again = dataclasses.replace(old, fingerprint="9" * 40)
    out = flow.register(dataclasses.replace(sim, devices=(sim.devices[0], again)), devices=[1])
    assert rehome_requests(out) == [] and lifecycle(out) == []
    assert copy_of(flow)["vehicles"][sim.vin] == state
    assert old.device_id not in flow.regional["NA"][sim.vin]["devices"]


# --- decommission and reinstate ------------------------------------------------------------------


def test_a_decommissioned_vehicle_leaves_a_marker_and_refuses_its_devices_13133() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    flow.homed(sim)
    provision(flow, sim, 1, "p-held")  # waits for the primary
    out = flow.admin(sim.vin, "DECOMMISSION", "c-decommission")
    assert summary(out) == [("ACCEPTED", None), ("DONE", None)]
    assert [(r["action"], r["region"]) for r in rehome_requests(out)] == [
        ("DECOMMISSION", "NA")]
    assert sorted((e["device_id"] or "", e["state"]) for e in lifecycle(out)) == [
        ("", "DECOMMISSIONED"), *sorted((d.device_id, "REMOVED") for d in sim.devices)]
    [held_answer] = replies(out)
    assert (held_answer["message_id"], error_code(held_answer)) == (
        derive_id("response", "p-held"), 13133)
    marker = flow.regional["NA"][sim.vin]
    assert marker["decommissioned"] is True
    assert (marker["devices"], marker["held"], marker["vehicle_info"]) == ({}, [], {})
    request_id = rehome_requests(out)[0]["request_id"]
    assert list(marker["memo"]) == ["p-held", f"decommission:{request_id}"]
    entry = flow.vehicles[sim.vin]
    assert entry["state"] == "DECOMMISSIONED"
    assert (entry["devices"], entry["primary_device_id"], entry["country_code"],
            entry["admin"]) == ([], None, None, None)
    assert (entry["system_id"], entry["region"]) == (sim.system_id, "NA")
    assert flow.identities == {}
    audit(flow, sim.vin)
    # the held request sent again: its same answer; anything else: 13133
    assert reply_texts(provision(flow, sim, 1, "p-held")) == reply_texts(out)
    assert error_code(only_reply(provision(flow, sim, 0, "p-new"))) == 13133
    assert error_code(only_reply(query(flow, sim, "q-new"))) == 13133
    refused(flow, sim.vin, "MOVE", 13133, target_region="EU", move_policy="MIGRATE")


def test_only_a_decommissioned_vehicle_is_reinstated_5000() -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    refused(flow, sim.vin, "REINSTATE", 5000)


def test_a_reinstated_vin_binds_again_on_its_next_query() -> None:
    flow, sim = Flow(), vehicle()
    provisioned(flow, sim)
    flow.admin(sim.vin, "DECOMMISSION", "c-decommission")
    out = flow.admin(sim.vin, "REINSTATE", "c-reinstate")
    assert [(o["outcome"], o["region"]) for o in outcomes(out)] == [("DONE", None)]
    assert [(e["previous_state"], e["state"]) for e in lifecycle(out)] == [
        ("DECOMMISSIONED", "REGISTERED")]
    entry = flow.vehicles[sim.vin]
    assert (entry["state"], entry["system_id"], entry["region"]) == ("REGISTERED", None, None)
    audit(flow, sim.vin)
    assert only_reply(query(flow, sim, "q-again"))["status"] == "SUCCESS"
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"
    assert flow.regional["NA"][sim.vin]["devices"][sim.primary.device_id]["state"] == "REGIONAL"
    assert only_reply(provision(flow, sim, 0, "p-again"))["status"] == "SUCCESS"
    audit(flow, sim.vin)


# --- a factory-reset device provisions again -----------------------------------------------------


def _reset_flow(policy: str) -> tuple[Flow, SimVehicle]:
    flow, sim = Flow(dataclasses.replace(CONFIG, factory_reset=policy)), vehicle()
    provisioned(flow, sim)
    return flow, sim


def test_policy_refuse_answers_a_provisioned_device_13124() -> None:
    flow, sim = _reset_flow("refuse")
    state = copy_of(flow)
    out = provision(flow, sim, 1, "p-reset")
    assert error_code(only_reply(out)) == 13124
    assert lifecycle(out) == []
    assert copy_of(flow) == state


def test_policy_answer_tells_the_current_state_and_changes_nothing() -> None:
    flow, sim = _reset_flow("answer")
    state, effects = copy_of(flow), len(flow.effects)
    out = provision(flow, sim, 1, "p-reset")
    answer = only_reply(out)
    assert answer["status"] == "SUCCESS"
    assert answer["body"]["lifecycyclestate"] == "PROVISIONED"
    assert lifecycle(out) == [] and events(out, "ChipsetOnboardingRequest") == []
    assert len(flow.effects) == effects
    assert copy_of(flow) == state


def test_policy_reprovision_provisions_the_device_again_with_an_event() -> None:
    flow, sim = _reset_flow("reprovision")
    device = sim.devices[1]
    flow.identities.pop(("NA", device.device_id), None)
    before = history(flow, sim.vin)
    out = provision(flow, sim, 1, "p-reset")
    assert only_reply(out)["status"] == "SUCCESS"
    [event] = lifecycle(out)
    assert (event["device_id"], event["previous_state"], event["state"]) == (
        device.device_id, "PROVISIONED", "PROVISIONED")
    assert event["event_id"] not in {e["event_id"] for e in before}
    assert event["sequence"] == before[-1]["sequence"] + 1
    assert [e.op for e in flow.effects[-1:]] == ["create_identity"]
    assert ("NA", device.device_id) in flow.identities
    [onboarding] = events(out, "ChipsetOnboardingRequest")
    assert (onboarding["device_id"], onboarding["cause_message_id"]) == (device.device_id,
                                                                        "p-reset")
    details = flow.regional["NA"][sim.vin]["devices"][device.device_id]["details"]
    assert details["provisioned_by"] == "p-reset"
    audit(flow, sim.vin)


@pytest.mark.parametrize("policy", ["refuse", "answer", "reprovision"])
def test_a_duplicate_factory_reset_request_gets_the_same_answer(policy: str) -> None:
    flow, sim = _reset_flow(policy)
    first = provision(flow, sim, 1, "p-reset")
    state, event_ids = copy_of(flow), {e["event_id"] for e in lifecycle(flow.sent)}
    flow.advance(5)
    again = provision(flow, sim, 1, "p-reset")
    assert len(reply_texts(again)) == 1
    assert reply_texts(again) == reply_texts(first)  # byte for byte, its time too
    assert {e["event_id"] for e in lifecycle(flow.sent)} == event_ids
    assert copy_of(flow) == state
