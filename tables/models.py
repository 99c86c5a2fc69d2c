"""Shapes of the table entries, and the memo that makes re-processing repeat, not redo.

Entries are plain dicts (JSON in RocksDB and in the changelog). Each vehicle entry keeps a small
memo: for the last few causes it processed (a request's message_id, a rehome request id, a
deadline) the records and effects it produced. When Kafka delivers a cause again, after a crash
or a duplicate send, the worker sends the remembered records again instead of deciding anew.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from vprov.outputs import Decision, Effect, Output

MEMO_LIMIT = 16


class Registration(TypedDict):
    """Table ``registrations`` (global, key device_id) and the devices of ``systems``."""

    system_id: str
    sub_system_id: str
    device_id: str
    ecu_type: str
    primary: bool
    certificate_fingerprint: str
    home_region: str | None


class SystemEntry(TypedDict):
    """Table ``systems`` (global, key system_id): every registered device of one system, and
    the VIN bound to it once a query has bound one."""

    devices: dict[str, Registration]
    vin: NotRequired[str]


class PendingRehome(TypedDict):
    request_id: str
    region: str
    country_code: str
    deadline_ms: int
    cause_message_id: str
    waiters: list[dict[str, Any]]  # ReplyTo of every query waiting for the outcome


class GlobalVehicle(TypedDict):
    """Table ``vehicles`` (global, key VIN): the global device store's vehicle record."""

    vin: str
    system_id: str
    sub_system_id: str
    primary_device_id: str
    devices: list[Registration]
    state: str  # REGISTERED, REGIONAL, QRY_FAIL
    sequence: int  # last lifecycle sequence emitted for this vehicle
    region: str | None
    country_code: str | None
    gateway_endpoint: str | None
    request_id: str | None  # the rehome request that made the vehicle REGIONAL
    pending: PendingRehome | None
    error_code: int | None
    memo: dict[str, dict[str, Any]]


class RegionalDevice(TypedDict):
    ecu_type: str
    primary: bool
    certificate_fingerprint: str
    state: str  # REGIONAL, PROVISIONED, ACTIVE, PROV_FAIL
    details: NotRequired[dict[str, Any]]


class RegionalVehicle(TypedDict):
    """Table ``regional-vehicles-<REGION>`` (regional, key VIN): the regional device store."""

    vin: str
    system_id: str
    sub_system_id: str
    region: str
    country_code: str
    request_id: str
    primary_device_id: str
    sequence: int
    devices: dict[str, RegionalDevice]
    vehicle_info: dict[str, Any]
    held: list[dict[str, Any]]  # device requests waiting for the primary: {raw, auth, source}
    global_identity_deleted: bool
    memo: dict[str, dict[str, Any]]


def recall(entry: dict[str, Any] | None, cause: str) -> tuple[list[Output], list[Effect]] | None:
    """The records and effects remembered for ``cause``, or None when it is new."""
    if not entry:
        return None
    remembered = entry.get("memo", {}).get(cause)
    if remembered is None:
        return None
    return (
        [Output.from_dict(o) for o in remembered["outputs"]],
        [Effect.from_dict(e) for e in remembered["effects"]],
    )


def remember(
    entry: dict[str, Any], cause: str, outputs: list[Output], effects: list[Effect]
) -> None:
    """Store what ``cause`` produced, dropping the oldest memo past ``MEMO_LIMIT``."""
    memo = entry.setdefault("memo", {})
    memo.pop(cause, None)
    memo[cause] = {
        "outputs": [o.to_dict() for o in outputs],
        "effects": [e.to_dict() for e in effects],
    }
    while len(memo) > MEMO_LIMIT:
        memo.pop(next(iter(memo)))


def replay(entry: dict[str, Any] | None, cause: str) -> Decision | None:
    """The decision for a cause seen before: the remembered records and effects, and the entry
    written again. Writing it again matters after a crash: the entry may have reached the local
    store but not the changelog, and the input's offset is about to be committed on the strength
    of this decision, so the changelog must have the entry too."""
    remembered = recall(entry, cause)
    if remembered is None:
        return None
    outputs, effects = remembered
    return Decision(state=entry, outputs=outputs, effects=effects)
