"""The lifecycle state machine (SPEC.md section 2.3): one table of allowed transitions.

The vehicle moves REGISTERED -> REGIONAL on the global side; each of its devices then moves
REGIONAL -> PROVISIONED or ACTIVE in its region. QRY_FAIL and PROV_FAIL are the failure states;
a vehicle or device in one of them may try again. A device registered after its vehicle was
rehomed joins it in REGIONAL (its first event has no previous state); a device moved to another
system leaves it: REMOVED, from any device state, and it may join again later. Everything else
is refused with error 5000.
The workers and the audit (``vprov/audit.py``) both fold events through ``transition``.
"""

from __future__ import annotations

from enum import StrEnum

from vprov.codes import ErrorCode


class State(StrEnum):
    REGISTERED = "REGISTERED"
    REGIONAL = "REGIONAL"
    PROVISIONED = "PROVISIONED"
    ACTIVE = "ACTIVE"
    QRY_FAIL = "QRY_FAIL"
    PROV_FAIL = "PROV_FAIL"
    REMOVED = "REMOVED"  # a device that left its vehicle (moved to another system)


# Answer state that the query response reports while the device still has to provision.
PROVISION_PENDING_REGIONAL = "PROVISION_PENDING_REGIONAL"

ALLOWED: dict[State, frozenset[State]] = {
    # vehicle, global side
    State.REGISTERED: frozenset({State.REGIONAL, State.QRY_FAIL}),
    State.QRY_FAIL: frozenset({State.REGIONAL, State.QRY_FAIL}),
    # device, regional side (a device starts REGIONAL when its vehicle is rehomed)
    State.REGIONAL: frozenset({State.PROVISIONED, State.ACTIVE, State.PROV_FAIL, State.REMOVED}),
    State.PROV_FAIL: frozenset({State.PROVISIONED, State.ACTIVE, State.REMOVED}),
    State.PROVISIONED: frozenset({State.REMOVED}),
    State.ACTIVE: frozenset({State.REMOVED}),
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


def can_transition(current: str, target: str) -> bool:
    try:
        return State(target) in ALLOWED[State(current)]
    except ValueError:
        return False


def transition(current: str, target: str) -> State:
    """The new state, or ``TransitionRefused`` (error 5000) when the table does not allow it."""
    if not can_transition(current, target):
        raise TransitionRefused(current, target)
    return State(target)
