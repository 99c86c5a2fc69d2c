"""Shapes of the table entries.

Entries are plain dicts (JSON in RocksDB and in the changelog, readable by any consumer), typed
here for the type checker. Each vehicle entry keeps a memo of what its last causes produced
(``vprov.core.memo``). This module depends on nothing in ``vprov``: the flows import it, not the
other way round.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


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


class Remembered(TypedDict):
    """What one cause produced (``vprov.core.memo``): ``Output.to_dict`` and ``Effect.to_dict``."""

    outputs: list[dict[str, Any]]
    effects: list[dict[str, Any]]


class HeldSource(TypedDict):
    topic: str
    partition: int
    offset: int
    key: None
    authenticated: str | None


class HeldRequest(TypedDict):
    """A device request the vehicle holds: for its primary, or (``device_id``, ``until_ms``)
    for the device's registration to join."""

    message_id: str
    raw: str  # base64
    source: HeldSource
    device_id: NotRequired[str]
    until_ms: NotRequired[int]


class PendingRehome(TypedDict):
    request_id: str
    region: str
    country_code: str
    deadline_ms: int
    cause_message_id: str
    waiters: list[dict[str, Any]]  # ReplyTo of every query waiting for the outcome


class PendingAdmin(TypedDict):
    """An operator's command under way in a region (``vprov.flows.operator_commands``)."""

    command_id: str
    operation: str  # MOVE, REPLACE_DEVICE, DECOMMISSION
    request_id: str  # of the requests to the regions
    stage: str  # MOVE: "export" (asked the source), "register" (asked the target); else "region"
    source: str | None  # the vehicle's region when the command came
    target: NotRequired[str]  # MOVE
    policy: NotRequired[str]  # MOVE: MIGRATE or RESET
    deadline_ms: NotRequired[int]  # MOVE: undone when it passes


class GlobalVehicle(TypedDict):
    """Table ``vehicles`` (global, key VIN): the global device store's vehicle record."""

    vin: str
    # None while no query has bound the VIN to a system (the entry then only remembers answers)
    system_id: str | None
    sub_system_id: str | None
    primary_device_id: str | None
    devices: list[Registration]
    state: str  # REGISTERED, REGIONAL, QRY_FAIL, MOVING, DECOMMISSIONED
    sequence: int  # last lifecycle sequence emitted for this vehicle
    region: str | None
    country_code: str | None
    gateway_endpoint: str | None
    request_id: str | None  # the rehome request that made the vehicle REGIONAL
    pending: PendingRehome | None
    error_code: int | None
    memo: dict[str, Remembered]
    admin: NotRequired[PendingAdmin | None]  # an operator's command under way
    revoked: NotRequired[list[str]]  # devices replaced: their requests are refused (13132)


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
    held: list[HeldRequest]
    global_identity_deleted: bool
    memo: dict[str, Remembered]
    # after the first boot (vprov.flows.rehome): a vehicle frozen by a move, handed over to
    # ("out") or taken up from ("in") another region, whose device requests get 13131 meanwhile
    frozen: NotRequired[dict[str, str] | None]  # request_id, direction, policy
    revoked: NotRequired[list[str]]  # devices replaced: their requests are refused (13132)
    deferred: NotRequired[list[dict[str, Any]]]  # JOIN/LEAVE requests that came while frozen
    decommissioned: NotRequired[bool]  # only this marker is left: requests get 13133
