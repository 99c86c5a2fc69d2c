"""Transitions at write time: ``advance`` refuses what the lifecycle table refuses (5000) before
anything is written, and it builds every lifecycle event the flows send."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from flowkit import CONFIG, Flow, context, error_code, lifecycle, only_reply, vehicle

from streams.shell import dead_letter_code
from vprov.core.codes import ErrorCode
from vprov.core.commands import CommandError
from vprov.core.ids import derive_id
from vprov.flows import handover, operator_commands, provision, query, rehome
from vprov.flows import lifecycle as lifecycle_module
from vprov.flows.lifecycle import JOINED, State, TransitionRefused, advance
from vprov.ops.audit import compare, fold
from vprov.sim import fleet

VIN = "1VTESTA0000000001"


def global_vehicle(state: str = "REGISTERED", sequence: int = 0) -> Any:
    return {"vin": VIN, "system_id": "sys-1", "state": state, "sequence": sequence}


def regional_vehicle(device_state: str = "REGIONAL", sequence: int = 1) -> Any:
    device = {"ecu_type": "TCU", "primary": True, "certificate_fingerprint": "a" * 40,
              "state": device_state}
    return {"vin": VIN, "system_id": "sys-1", "region": "NA", "sequence": sequence,
            "devices": {"d-1": device}}


# --- the vehicle and its devices ---------------------------------------------------------------


def test_advance_moves_the_vehicle_and_builds_its_event() -> None:
    before = global_vehicle("QRY_FAIL", sequence=3)
    given = copy.deepcopy(before)
    after, out = advance(context(), before, State.REGIONAL, "q-2")
    assert before == given  # the entry given is left as it is
    assert (after["state"], after["sequence"]) == ("REGIONAL", 4)
    assert (out.topic, out.key, out.record) == (CONFIG.topics.lifecycle, VIN, "LifecycleEvent")
    assert out.value == {
        "event_id": derive_id("lifecycle", VIN, "", "REGIONAL", "q-2"),
        "vin": VIN, "system_id": "sys-1", "device_id": None, "partition": "global",
        "state": "REGIONAL", "previous_state": "QRY_FAIL", "error_code": None,
        "cause_message_id": "q-2", "sequence": 4, "occurred_at": context().now_ms,
    }


def test_advance_moves_a_device_in_its_region() -> None:
    before = regional_vehicle()
    after, out = advance(context(), before, State.PROV_FAIL, "p-1", device_id="d-1",
                         error_code=5000)
    assert before["devices"]["d-1"]["state"] == "REGIONAL"
    assert (after["devices"]["d-1"]["state"], after["sequence"]) == ("PROV_FAIL", 2)
    assert (out.value["device_id"], out.value["partition"], out.value["previous_state"],
            out.value["error_code"]) == ("d-1", "NA", "REGIONAL", 5000)


def test_a_joining_device_has_no_previous_state() -> None:
    record = {"ecu_type": "IVI", "primary": False, "certificate_fingerprint": "b" * 40,
              "state": JOINED.value}
    after, out = advance(context(), regional_vehicle(), JOINED, "join-1", device_id="d-2",
                         joining=record)
    assert after["devices"]["d-2"] == record
    assert (out.value["state"], out.value["previous_state"]) == ("REGIONAL", None)


@pytest.mark.parametrize(("current", "target"), [
    pytest.param("REGIONAL", State.QRY_FAIL, id="a rehomed vehicle cannot fail its query"),
    pytest.param("REGIONAL", State.REGIONAL, id="rehomed twice"),
    pytest.param("REGISTERED", State.PROVISIONED, id="a vehicle is not provisioned"),
])
def test_a_refused_vehicle_transition_is_5000_and_writes_nothing(current: str,
                                                                 target: State) -> None:
    before = global_vehicle(current)
    given = copy.deepcopy(before)
    with pytest.raises(TransitionRefused) as refused:
        advance(context(), before, target, "cause")
    assert refused.value.code == ErrorCode.INVALID_TRANSITION == 5000
    assert before == given


@pytest.mark.parametrize(("device_state", "target", "device_id", "joining"), [
    pytest.param("PROVISIONED", State.PROV_FAIL, "d-1", None, id="failing after success"),
    pytest.param("ACTIVE", State.PROVISIONED, "d-1", None, id="ACTIVE is final"),
    pytest.param("REGIONAL", State.PROVISIONED, "d-9", None, id="a device not in the vehicle"),
    pytest.param("REGIONAL", State.PROVISIONED, "d-2", {"state": "REGIONAL"},
                 id="joining straight into PROVISIONED"),
])
def test_a_refused_device_transition_is_5000_and_writes_nothing(
        device_state: str, target: State, device_id: str, joining: Any) -> None:
    before = regional_vehicle(device_state)
    given = copy.deepcopy(before)
    with pytest.raises(TransitionRefused) as refused:
        advance(context(), before, target, "cause", device_id=device_id, joining=joining)
    assert refused.value.code == 5000
    assert before == given


def test_a_provisioning_the_table_refuses_is_answered_5000_and_changes_nothing() -> None:
    # a configuration that bypasses the loader's check: TCU would provision into REGISTERED
    config = dataclasses.replace(CONFIG, ecu_states={**CONFIG.ecu_states, "TCU": "REGISTERED"})
    flow, sim = Flow(config), vehicle()
    flow.homed(sim)
    before = copy.deepcopy(flow.regional["NA"][sim.vin])
    raw = fleet.device_provision(sim, sim.primary, "p-1", flow.now_s)
    out = flow.provision(raw, "NA", authenticated=sim.primary.device_id)
    assert error_code(only_reply(out)) == 5000
    assert lifecycle(out) == []
    assert flow.regional["NA"][sim.vin] == before


def test_the_worker_dead_letters_a_refused_transition_as_5000_and_a_bad_command_as_9000(
) -> None:
    assert dead_letter_code(TransitionRefused("REGIONAL", "QRY_FAIL")) == 5000
    assert dead_letter_code(CommandError("unknown vehicle command kind='x'")) == 9000
    assert dead_letter_code(KeyError("vin")) == ErrorCode.INTERNAL_ERROR


# --- every event through advance ---------------------------------------------------------------


def journey(flow: Flow) -> fleet.SimVehicle:
    """Every kind of transition: QRY_FAIL, REGIONAL, PROV_FAIL, PROVISIONED, ACTIVE, a late
    join, a device that leaves for another system; and after the first boot a move (MOVING),
    a decommissioning and a reinstatement."""
    sim = vehicle(ecu_types=("TCU", "IVI", "REFRIGERATOR", "ADAS"))
    flow.register(sim, devices=[0, 1, 2])
    flow.query(fleet.query(sim, "q-1", flow.now_s, region="ZZ"))  # QRY_FAIL
    flow.query(fleet.query(sim, "q-2", flow.now_s))  # REGIONAL

    def send(k: int, message_id: str) -> None:
        raw = fleet.device_provision(sim, sim.devices[k], message_id, flow.now_s)
        flow.provision(raw, "NA", authenticated=sim.devices[k].device_id)

    send(1, "p-ivi")  # held for the primary
    send(2, "p-fridge")  # past the bound of one held request: PROV_FAIL
    send(0, "p-tcu")  # PROVISIONED, then the held IVI
    send(2, "p-fridge-2")  # ACTIVE
    flow.register(sim, devices=[3])  # joins the rehomed vehicle
    other = vehicle(2)
    flow.homed(other)
    moved = dataclasses.replace(other, devices=(*other.devices,
                                                dataclasses.replace(sim.devices[1],
                                                                    primary=False)))
    flow.register(moved, devices=[len(moved.devices) - 1])  # IVI leaves: REMOVED
    flow.admin(sim.vin, "MOVE", "c-move", target_region="EU", move_policy="RESET")  # MOVING
    flow.admin(other.vin, "DECOMMISSION", "c-decommission")  # DECOMMISSIONED
    flow.admin(other.vin, "REINSTATE", "c-reinstate")  # REGISTERED
    return sim


def test_every_lifecycle_event_the_flows_send_is_built_by_advance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict[str, Any]] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        entry, out = lifecycle_module.advance(*args, **kwargs)
        built.append(out.value)
        return entry, out

    for module in (query, rehome, provision, operator_commands, handover):
        monkeypatch.setattr(module, "advance", recording)
    flow = Flow(dataclasses.replace(CONFIG, max_held_requests=1))
    journey(flow)
    sent = lifecycle(flow.sent)
    assert {e["state"] for e in sent} == {s.value for s in State}
    assert sorted(e["event_id"] for e in sent) == sorted(e["event_id"] for e in built)


def test_the_audit_folds_the_journey_without_a_problem() -> None:
    flow = Flow(dataclasses.replace(CONFIG, max_held_requests=1))
    sim = journey(flow)
    events = [e for e in lifecycle(flow.sent) if e["vin"] == sim.vin]
    folded = fold(sim.vin, sorted(events, key=lambda e: e["sequence"]))
    assert folded.problems == []
    assert folded.vehicle_state == "REGIONAL"
    # moved to EU with the RESET policy: every device that stayed provisions again
    assert folded.devices == {
        sim.devices[0].device_id: "REGIONAL",
        sim.devices[1].device_id: "REMOVED",
        sim.devices[2].device_id: "REGIONAL",
        sim.devices[3].device_id: "REGIONAL",
    }
    assert sim.vin not in flow.regional["NA"]
    regional = flow.regional["EU"][sim.vin]
    assert compare(folded, flow.vehicles[sim.vin], regional, "EU") == []
