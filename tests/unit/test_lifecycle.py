"""The lifecycle state machine (SPEC 2.3): allowed transitions, refusals (5000), audit trail."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from flowkit import Flow, lifecycle, vehicle

from vprov.core.codes import ErrorCode
from vprov.flows.lifecycle import (
    PROVISIONED_STATES,
    State,
    TransitionRefused,
    can_transition,
    transition,
)
from vprov.sim import fleet

# SPEC 2.3: REGISTERED -> REGIONAL (global) -> PROVISIONED / ACTIVE (regional); a failure state
# may try again. After the first boot (docs/after-first-boot.md): moves, resets, decommissioning.
VEHICLE_ALLOWED = [
    ("REGISTERED", "REGIONAL", "query succeeds"),
    ("REGISTERED", "QRY_FAIL", "query fails"),
    ("QRY_FAIL", "REGIONAL", "retried query succeeds"),
    ("QRY_FAIL", "QRY_FAIL", "retried query fails again"),
    ("REGIONAL", "MOVING", "a move to another region starts"),
    ("MOVING", "REGIONAL", "the move is done, or undone"),
    ("REGISTERED", "DECOMMISSIONED", "decommissioned before its first query"),
    ("QRY_FAIL", "DECOMMISSIONED", "decommissioned after failed queries"),
    ("REGIONAL", "DECOMMISSIONED", "decommissioned after its first boot"),
    ("DECOMMISSIONED", "REGISTERED", "reinstated by an explicit command"),
]
DEVICE_ALLOWED = [
    ("REGIONAL", "PROVISIONED", "device provisioned"),
    ("REGIONAL", "ACTIVE", "device provisioned into ACTIVE (e.g. REFRIGERATOR)"),
    ("REGIONAL", "PROV_FAIL", "device provisioning fails"),
    ("PROV_FAIL", "PROVISIONED", "retried provisioning succeeds"),
    ("PROV_FAIL", "ACTIVE", "retried provisioning succeeds into ACTIVE"),
    ("REGIONAL", "REMOVED", "a device moved to another system before provisioning"),
    ("PROV_FAIL", "REMOVED", "a failed device moved to another system"),
    ("PROVISIONED", "REMOVED", "a provisioned device moved to another system or replaced"),
    ("ACTIVE", "REMOVED", "an active device moved to another system or replaced"),
    ("REMOVED", "REGIONAL", "a device that left joins (again) a rehomed vehicle"),
    ("PROVISIONED", "REGIONAL", "reset by a move with the RESET policy"),
    ("ACTIVE", "REGIONAL", "reset by a move with the RESET policy"),
    ("PROV_FAIL", "REGIONAL", "reset by a move with the RESET policy"),
    ("PROVISIONED", "PROVISIONED", "provisioned again after a factory reset (reprovision)"),
    ("ACTIVE", "ACTIVE", "provisioned again after a factory reset (reprovision)"),
]

VEHICLE_REFUSED = [
    ("REGISTERED", "PROVISIONED", "a vehicle is never PROVISIONED, its devices are"),
    ("REGISTERED", "REGISTERED", "a no-op is not a transition"),
    ("REGIONAL", "REGISTERED", "back to the global registration"),
    ("REGIONAL", "REGIONAL", "rehomed twice"),
    ("REGIONAL", "QRY_FAIL", "query failure after the vehicle was rehomed"),
    ("QRY_FAIL", "REGISTERED", "failure back to registered"),
    ("QRY_FAIL", "MOVING", "only a REGIONAL vehicle moves"),
    ("MOVING", "DECOMMISSIONED", "decommissioned halfway through a move"),
    ("MOVING", "MOVING", "moving twice at once"),
    ("DECOMMISSIONED", "REGIONAL", "a decommissioned vehicle is reinstated before a query"),
    ("DECOMMISSIONED", "DECOMMISSIONED", "decommissioned twice"),
    ("REGISTERED", "UNKNOWN", "an unknown target"),
    ("UNKNOWN", "REGIONAL", "an unknown current state"),
    ("registered", "REGIONAL", "states are case-sensitive"),
    ("", "REGIONAL", "an empty state"),
]
DEVICE_REFUSED = [
    ("REGIONAL", "REGIONAL", "joined twice"),
    ("PROVISIONED", "ACTIVE", "PROVISIONED does not become ACTIVE"),
    ("PROVISIONED", "PROV_FAIL", "failing after success"),
    ("ACTIVE", "PROVISIONED", "ACTIVE does not become PROVISIONED"),
    ("ACTIVE", "PROV_FAIL", "failing after ACTIVE"),
    ("PROV_FAIL", "QRY_FAIL", "regional failure to a global one"),
    ("REGIONAL", "MOVING", "a device does not move, its vehicle does"),
    ("PROVISIONED", "DECOMMISSIONED", "a decommissioned vehicle's devices are REMOVED"),
    ("REMOVED", "PROVISIONED", "a removed device joins again first"),
    ("REGISTERED", "REGIONAL", "a device has no REGISTERED state"),
]


def both(vehicle: list[tuple[str, str, str]], device: list[tuple[str, str, str]]) -> list[Any]:
    return [pytest.param(a, b, is_device, id=f"{who} {a or '∅'} → {b}: {why}")
            for who, is_device, table in (("vehicle", False, vehicle), ("device", True, device))
            for a, b, why in table]


@pytest.mark.parametrize(("current", "target", "device"), both(VEHICLE_ALLOWED, DEVICE_ALLOWED))
def test_allowed_transition(current: str, target: str, device: bool) -> None:
    assert can_transition(current, target, device=device)
    assert transition(current, target, device=device) == State(target)
    assert isinstance(transition(current, target, device=device), State)


@pytest.mark.parametrize(("current", "target", "device"), both(VEHICLE_REFUSED, DEVICE_REFUSED))
def test_refused_transition_is_5000(current: str, target: str, device: bool) -> None:
    assert not can_transition(current, target, device=device)
    with pytest.raises(TransitionRefused) as refused:
        transition(current, target, device=device)
    assert refused.value.code == ErrorCode.INVALID_TRANSITION == 5000
    assert (refused.value.current, refused.value.target) == (current, target)
    assert current in str(refused.value) and target in str(refused.value)


@pytest.mark.parametrize(("table", "device"), [(VEHICLE_ALLOWED, False), (DEVICE_ALLOWED, True)],
                         ids=["vehicle", "device"])
def test_every_pair_outside_the_allowed_table_is_refused(table: list[tuple[str, str, str]],
                                                         device: bool) -> None:
    allowed = {(a, b) for a, b, _ in table}
    for current, target in itertools.product([s.value for s in State], repeat=2):
        assert can_transition(current, target, device=device) == ((current, target) in allowed), \
            (current, target)


@pytest.mark.reprovisioning
def test_provisioned_states_are_left_only_by_removal_reset_or_reprovisioning() -> None:
    assert frozenset({State.PROVISIONED, State.ACTIVE}) == PROVISIONED_STATES
    for final in PROVISIONED_STATES:
        assert {s for s in State if can_transition(final, s, device=True)} == \
            {State.REMOVED, State.REGIONAL, final}


def test_refusal_is_a_value_error() -> None:
    assert issubclass(TransitionRefused, ValueError)


# --- the audit trail of a whole journey --------------------------------------------------------


def test_lifecycle_topic_of_a_journey_folds_through_the_state_machine() -> None:
    """Every transition appears once (by event id), in sequence order per vehicle, and each one
    is allowed from the state before it, even with re-deliveries on the way."""
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "REFRIGERATOR"))
    flow.register(sim)
    flow.query(fleet.query(sim, "q-1", flow.now_s, region="ZZ"))  # QRY_FAIL
    flow.query(fleet.query(sim, "q-2", flow.now_s))  # REGIONAL
    flow.query(fleet.query(sim, "q-2", flow.now_s))  # duplicate
    for k in (2, 1, 0):  # secondaries first: held until the primary
        raw = fleet.device_provision(sim, sim.devices[k], f"p-{k}", flow.now_s)
        flow.provision(raw, "NA")
        flow.provision(raw, "NA")  # re-delivered

    seen: dict[str, dict[str, Any]] = {}
    for event in lifecycle(flow.sent):
        assert seen.setdefault(event["event_id"], event) == event
    trail = sorted(seen.values(), key=lambda e: e["sequence"])
    assert [e["sequence"] for e in trail] == list(range(1, len(trail) + 1))

    states: dict[str, str] = {"vehicle": "REGISTERED"}
    for event in trail:
        who = event["device_id"] or "vehicle"
        current = states.get(who, states["vehicle"])  # a device starts as its vehicle is
        assert event["previous_state"] == current
        states[who] = transition(current, event["state"], device=who != "vehicle")
    assert states == {
        "vehicle": "REGIONAL",
        sim.devices[0].device_id: "PROVISIONED",
        sim.devices[1].device_id: "PROVISIONED",
        sim.devices[2].device_id: "ACTIVE",
    }
