"""The lifecycle state machine (docs/spec.md section 2.3): one table of allowed transitions.

The vehicle moves REGISTERED -> REGIONAL on the global side; each of its devices then moves
REGIONAL -> PROVISIONED or ACTIVE in its region. QRY_FAIL and PROV_FAIL are the failure states;
a vehicle or device in one of them may try again. A device registered after its vehicle was
rehomed joins it in REGIONAL (its first event has no previous state); a device moved to another
system, or replaced in a workshop, leaves it: REMOVED, from any device state, and it may join
again later. Everything else is refused with error 5000.

After the first boot (docs/after-first-boot.md): a REGIONAL vehicle is MOVING while it moves to
another region and REGIONAL again when the move ends (done or undone); a move with the ``reset``
policy takes each of its devices back to REGIONAL, to provision again in the new region. A
factory-reset device that provisions again (policy ``reprovision``) stays in its state, with an
event. A vehicle is DECOMMISSIONED from any vehicle state but MOVING (its devices REMOVED), and
only an explicit command makes it REGISTERED again.

The flows move a vehicle or a device only through ``advance``, which checks the table at write
time and builds the lifecycle event; the audit (``vprov/ops/audit.py``, ``vprov replay --verify``)
folds the events back through ``transition``. Both use the one table below.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import TYPE_CHECKING, Any, overload

from vprov.core.codes import ErrorCode
from vprov.core.ids import derive_id
from vprov.core.outputs import Output, event
from vprov.flows.context import Context

if TYPE_CHECKING:
    from tables.models import GlobalVehicle, RegionalDevice, RegionalVehicle


class State(StrEnum):
    REGISTERED = "REGISTERED"
    REGIONAL = "REGIONAL"
    PROVISIONED = "PROVISIONED"
    ACTIVE = "ACTIVE"
    QRY_FAIL = "QRY_FAIL"
    PROV_FAIL = "PROV_FAIL"
    REMOVED = "REMOVED"  # a device that left its vehicle (another system, replaced, scrapped)
    MOVING = "MOVING"  # a vehicle on its way to another region
    DECOMMISSIONED = "DECOMMISSIONED"  # a vehicle taken out of service (scrapped, stolen, ...)


# Answer state that the query response reports while the device still has to provision.
PROVISION_PENDING_REGIONAL = "PROVISION_PENDING_REGIONAL"

# The vehicle's moves (global side; its events have no device_id) and a device's (regional side).
VEHICLE_MOVES: dict[State, frozenset[State]] = {
    State.REGISTERED: frozenset({State.REGIONAL, State.QRY_FAIL, State.DECOMMISSIONED}),
    State.QRY_FAIL: frozenset({State.REGIONAL, State.QRY_FAIL, State.DECOMMISSIONED}),
    State.REGIONAL: frozenset({State.MOVING, State.DECOMMISSIONED}),
    State.MOVING: frozenset({State.REGIONAL}),  # moved, or the move undone
    State.DECOMMISSIONED: frozenset({State.REGISTERED}),  # only by an explicit command
}
DEVICE_MOVES: dict[State, frozenset[State]] = {
    # a device starts REGIONAL when its vehicle is rehomed
    State.REGIONAL: frozenset({State.PROVISIONED, State.ACTIVE, State.PROV_FAIL, State.REMOVED}),
    # back to REGIONAL: reset by a move; to itself: provisioned again after a factory reset
    State.PROV_FAIL: frozenset({State.PROVISIONED, State.ACTIVE, State.REMOVED,
                                State.REGIONAL}),
    State.PROVISIONED: frozenset({State.REMOVED, State.REGIONAL, State.PROVISIONED}),
    State.ACTIVE: frozenset({State.REMOVED, State.REGIONAL, State.ACTIVE}),
    State.REMOVED: frozenset({State.REGIONAL}),  # joins again
}

# The state a device joins a rehomed vehicle in (its join event has no previous state).
JOINED = State.REGIONAL

PROVISIONED_STATES = frozenset({State.PROVISIONED, State.ACTIVE})


class TransitionRefused(ValueError):
    code = ErrorCode.INVALID_TRANSITION

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"lifecycle transition {current} -> {target} is not allowed")
        self.current = current
        self.target = target


def can_transition(current: str, target: str, *, device: bool) -> bool:
    moves = DEVICE_MOVES if device else VEHICLE_MOVES
    try:
        return State(target) in moves.get(State(current), frozenset())
    except ValueError:
        return False


def transition(current: str, target: str, *, device: bool) -> State:
    """The new state of a device (``device``) or a vehicle, or ``TransitionRefused`` (error
    5000) when its table does not allow the move."""
    if not can_transition(current, target, device=device):
        raise TransitionRefused(current, target)
    return State(target)


# The partition a vehicle's own (global) lifecycle events name; a device's name its region.
GLOBAL_PARTITION = "global"


@overload
def advance(ctx: Context, entity: GlobalVehicle, target: State, cause: str, *,
            error_code: int | None = None) -> tuple[GlobalVehicle, Output]: ...


@overload
def advance(ctx: Context, entity: RegionalVehicle, target: State, cause: str, *,
            device_id: str, joining: RegionalDevice | None = None,
            error_code: int | None = None) -> tuple[RegionalVehicle, Output]: ...


def advance(ctx: Context, entity: Any, target: State, cause: str, *,
            device_id: str | None = None, joining: Any = None,
            error_code: int | None = None) -> tuple[Any, Output]:
    """Move a vehicle (global entry) or, with ``device_id``, one of its devices (regional entry)
    to ``target``: the new entry (the one given is left as it is) and its lifecycle event, or
    ``TransitionRefused`` (5000) when the table does not allow the move.

    With ``joining`` (the device's record) the device joins the vehicle, replacing any record
    of it the entry holds (a device registered again): only into ``JOINED``, and its event has
    no previous state. Each event takes the vehicle's next
    ``sequence``; its id names the transition and its cause, so a re-sent event is recognisable
    as the same one.
    """
    updated = copy.copy(entity)
    if device_id is None:
        previous: str | None = entity["state"]
        partition = GLOBAL_PARTITION
        checked = transition(entity["state"], target, device=False)
        updated["state"] = checked.value
    else:
        partition = entity["region"]
        current = entity["devices"].get(device_id)
        updated["devices"] = dict(entity["devices"])
        if joining is not None:
            if target != JOINED:
                raise TransitionRefused("(joining)", target)
            previous, checked, device = None, JOINED, dict(joining)
        elif current is None:
            raise TransitionRefused("(not part of the vehicle)", target)
        else:
            previous = current["state"]
            checked, device = transition(current["state"], target, device=True), dict(current)
        device["state"] = checked.value
        updated["devices"][device_id] = device
    updated["sequence"] = entity["sequence"] + 1
    value = {
        "event_id": derive_id("lifecycle", entity["vin"], device_id or "", checked, cause),
        "vin": entity["vin"],
        "system_id": entity["system_id"],
        "device_id": device_id,
        "partition": partition,
        "state": checked.value,
        "previous_state": previous,
        "error_code": error_code,
        "cause_message_id": cause,
        "sequence": updated["sequence"],
        "occurred_at": ctx.now_ms,
    }
    return updated, event(ctx.topics.lifecycle, entity["vin"], "LifecycleEvent", value)
