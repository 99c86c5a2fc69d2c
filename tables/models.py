"""Shapes of the table entries.

Entries are plain dicts (JSON in RocksDB and in the changelog, readable by any consumer), typed
here for the type checker. Each vehicle entry keeps a memo of what its last causes produced
(``vprov.memo``). This module depends on nothing in ``vprov``: the flows import it, not the
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
    """What one cause produced (``vprov.memo``): ``Output.to_dict`` and ``Effect.to_dict``."""

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


class GlobalVehicle(TypedDict):
    """Table ``vehicles`` (global, key VIN): the global device store's vehicle record."""

    vin: str
    # None while no query has bound the VIN to a system (the entry then only remembers answers)
    system_id: str | None
    sub_system_id: str | None
    primary_device_id: str | None
    devices: list[Registration]
    state: str  # REGISTERED, REGIONAL, QRY_FAIL
    sequence: int  # last lifecycle sequence emitted for this vehicle
    region: str | None
    country_code: str | None
    gateway_endpoint: str | None
    request_id: str | None  # the rehome request that made the vehicle REGIONAL
    pending: PendingRehome | None
    error_code: int | None
    memo: dict[str, Remembered]


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
