"""Registered devices (global side).

``registration.devices`` is keyed by device_id; queries need a system's devices, so each
registration is re-keyed by system_id onto an internal topic that feeds the ``systems`` table.
A device that moves to another system is removed from the old one.

Registration and first boot are not ordered (SPEC 2.1). Once a query binds a VIN to a system,
the system's index entry records the VIN (``bind``); from then on every device indexed for that
system is sent to the vehicle as a ``join`` command, and every device removed from it as a
``leave`` command (on the vehicle-commands topic, keyed by VIN). The bind itself compares the
devices the vehicle was bound with against the index, so a registration indexed between the
query's match and its bind is not missed either. Both orders meet on the system's partition.
"""

from __future__ import annotations

from typing import Any

from tables.models import Registration, SystemEntry
from vprov.core import commands
from vprov.core.commands import Bind, IndexCommand, Join, Leave, Remove, Upsert
from vprov.core.ids import derive_id
from vprov.core.outputs import DELETE, GLOBAL_SCOPE, Decision, Effect, Output
from vprov.flows.context import Context


def to_registration(record: dict[str, Any]) -> Registration:
    """The registration a DeviceRegistration record describes."""
    return Registration(
        system_id=record["system_id"],
        sub_system_id=record["sub_system_id"],
        device_id=record["device_id"],
        ecu_type=record["ecu_type"],
        primary=record["primary"],
        certificate_fingerprint=record["certificate_fingerprint"],
        home_region=record.get("home_region"),
    )


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
    outputs: list[Output] = []
    effects: list[Effect] = []
    if record is None:
        if previous is None:
            return Decision()
        outputs.append(commands.output(topic, previous["system_id"], Remove(device_id)))
        if previous["primary"]:
            effects.append(Effect("delete_identity", GLOBAL_SCOPE, device_id))
        return Decision(state=DELETE, outputs=outputs, effects=effects)

    reg = to_registration(record)
    if previous is not None and previous["system_id"] != reg["system_id"]:
        outputs.append(commands.output(topic, previous["system_id"], Remove(device_id)))
    outputs.append(commands.output(topic, reg["system_id"], Upsert(reg)))
    if previous == reg:
        # The same registration again (published again, or delivered again after a seek or a
        # rebalance): no identity effect. Provisioning may have deleted the global identity
        # since; creating it again would let the global IoT core take the device back.
        return Decision(state=reg, outputs=outputs, effects=effects)
    if reg["primary"]:
        effects.append(
            Effect("create_identity", GLOBAL_SCOPE, device_id, identity_attributes(reg))
        )
    elif previous is not None and previous["primary"]:
        effects.append(Effect("delete_identity", GLOBAL_SCOPE, device_id))
    return Decision(state=reg, outputs=outputs, effects=effects)


def _join(ctx: Context, vin: str, cause: str, reg: Registration) -> Output:
    """A join command for the vehicle; its id names the index record that caused it, so a
    re-delivered record repeats the command and a later change is a new one."""
    device_id = reg["device_id"]
    join = Join(derive_id(Join.TAG, cause, device_id), device_id, reg)
    return commands.output(ctx.topics.vehicle_commands, vin, join)


def _leave(ctx: Context, vin: str, cause: str, device_id: str) -> Output:
    leave = Leave(derive_id(Leave.TAG, cause, device_id), device_id)
    return commands.output(ctx.topics.vehicle_commands, vin, leave)


def index_system(command: IndexCommand, entry: SystemEntry | None, ctx: Context,
                 cause: str) -> Decision:
    """Apply an upsert/remove/bind to one system's device index. ``cause``: the index record's
    coordinates (topic:partition:offset), from which the commands to the vehicle are named."""
    devices = dict(entry["devices"]) if entry else {}
    vin = entry.get("vin") if entry else None
    outputs: list[Output] = []
    if isinstance(command, Upsert):
        # Written even when unchanged: after a crash the entry may be in the local store only,
        # and this re-delivery is what puts it in the changelog. The join is sent again for the
        # same reason; the vehicle recognises a device it already has.
        reg = command.registration
        devices[reg["device_id"]] = reg
        if vin:
            outputs.append(_join(ctx, vin, cause, reg))
    elif isinstance(command, Remove):
        if command.device_id not in devices:
            return Decision()
        del devices[command.device_id]
        if vin:
            outputs.append(_leave(ctx, vin, cause, command.device_id))
    else:
        assert isinstance(command, Bind)
        vin = command.vin
        bound = set(command.devices)
        outputs += [_join(ctx, vin, cause, reg)
                    for d, reg in sorted(devices.items()) if d not in bound]
        outputs += [_leave(ctx, vin, cause, d) for d in sorted(bound - set(devices))]
    if not devices and not vin:
        return Decision(state=DELETE)
    state = SystemEntry(devices=devices)
    if vin:
        state["vin"] = vin
    return Decision(state=state, outputs=outputs)
