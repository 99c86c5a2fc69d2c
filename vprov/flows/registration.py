"""Registered devices (global side).

``registration.devices`` is keyed by device_id; queries need a system's devices, so each
registration is re-keyed by system_id onto an internal topic that feeds the ``systems`` table.
A device that moves to another system is removed from the old one.

Registration and first boot are not ordered (SPEC.md 2.1). Once a query binds a VIN to a system,
the system's index entry records the VIN (``bind``); from then on every device indexed for that
system is sent to the vehicle as a ``join`` command, and every device removed from it as a
``leave`` command (on the vehicle-commands topic, keyed by VIN). The bind itself compares the
devices the vehicle was bound with against the index, so a registration indexed between the
query's match and its bind is not missed either. Both orders meet on the system's partition.
"""

from __future__ import annotations

from typing import Any

from tables.models import Registration, SystemEntry
from vprov.flows.common import Context
from vprov.identity import GLOBAL_SCOPE
from vprov.ids import derive_id
from vprov.outputs import DELETE, Decision, Effect, Output, internal

REGISTRATION_FIELDS = (
    "system_id",
    "sub_system_id",
    "device_id",
    "ecu_type",
    "primary",
    "certificate_fingerprint",
    "home_region",
)


def to_registration(record: dict[str, Any]) -> Registration:
    return {name: record.get(name) for name in REGISTRATION_FIELDS}  # type: ignore[return-value]


def identity_attributes(reg: Registration, vin: str | None = None) -> dict[str, str]:
    attrs = {
        "system_id": reg["system_id"],
        "certificate_fingerprint": reg["certificate_fingerprint"],
        "ecu_type": reg["ecu_type"],
    }
    if vin:
        attrs["vin"] = vin
    return attrs


def ingest(
    device_id: str, record: dict[str, Any] | None, previous: Registration | None, ctx: Context
) -> Decision:
    """A registration (or a tombstone, ``record`` None) for ``device_id``."""
    topic = ctx.topics.system_registrations
    outputs = []
    effects = []
    if record is None:
        if previous is None:
            return Decision()
        outputs.append(
            internal(topic, previous["system_id"], {"op": "remove", "device_id": device_id})
        )
        if previous["primary"]:
            effects.append(Effect("delete_identity", GLOBAL_SCOPE, device_id))
        return Decision(state=DELETE, outputs=outputs, effects=effects)

    reg = to_registration(record)
    if previous is not None and previous["system_id"] != reg["system_id"]:
        outputs.append(
            internal(topic, previous["system_id"], {"op": "remove", "device_id": device_id})
        )
    outputs.append(internal(topic, reg["system_id"], {"op": "upsert", "registration": reg}))
    if reg["primary"]:
        effects.append(
            Effect("create_identity", GLOBAL_SCOPE, device_id, identity_attributes(reg))
        )
    elif previous is not None and previous["primary"]:
        effects.append(Effect("delete_identity", GLOBAL_SCOPE, device_id))
    return Decision(state=reg, outputs=outputs, effects=effects)


def _membership(ctx: Context, vin: str, cause: str, kind: str, device_id: str,
                reg: Registration | None = None) -> Output:
    """A join/leave command for the vehicle; its id names the index record that caused it, so
    a re-delivered record repeats the command and a later change is a new one."""
    command: dict[str, Any] = {"kind": kind, "command_id": derive_id(kind, cause, device_id),
                               "device_id": device_id}
    if reg is not None:
        command["registration"] = reg
    return internal(ctx.topics.vehicle_commands, vin, command)


def index_system(command: dict[str, Any], entry: SystemEntry | None, ctx: Context,
                 cause: str) -> Decision:
    """Apply an upsert/remove/bind to one system's device index. ``cause``: the index record's
    coordinates (topic:partition:offset), from which the commands to the vehicle are named."""
    devices = dict(entry["devices"]) if entry else {}
    vin = entry.get("vin") if entry else None
    outputs: list[Output] = []
    op = command.get("op")
    if op == "upsert":
        # Written even when unchanged: after a crash the entry may be in the local store only,
        # and this re-delivery is what puts it in the changelog. The join is sent again for the
        # same reason; the vehicle recognises a device it already has.
        reg = command["registration"]
        devices[reg["device_id"]] = reg
        if vin:
            outputs.append(_membership(ctx, vin, cause, "join", reg["device_id"], reg))
    elif op == "remove":
        device_id = command.get("device_id")
        if device_id not in devices:
            return Decision()
        del devices[device_id]
        if vin:
            outputs.append(_membership(ctx, vin, cause, "leave", device_id))
    elif op == "bind":
        vin = command["vin"]
        bound = set(command.get("devices", []))
        outputs += [_membership(ctx, vin, cause, "join", d, reg)
                    for d, reg in sorted(devices.items()) if d not in bound]
        outputs += [_membership(ctx, vin, cause, "leave", d) for d in sorted(bound - set(devices))]
    else:
        return Decision()
    if not devices and not vin:
        return Decision(state=DELETE)
    state: dict[str, Any] = {"devices": devices}
    if vin:
        state["vin"] = vin
    return Decision(state=state, outputs=outputs)  # type: ignore[arg-type]
