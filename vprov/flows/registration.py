"""Registered devices (global side).

``registration.devices`` is keyed by device_id; queries need a system's devices, so each
registration is re-keyed by system_id onto an internal topic that feeds the ``systems`` table.
A device that moves to another system is removed from the old one.
"""

from __future__ import annotations

from typing import Any

from tables.models import Registration, SystemEntry
from vprov.flows.common import Context
from vprov.identity import GLOBAL_SCOPE
from vprov.outputs import DELETE, Decision, Effect, internal

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


def index_system(command: dict[str, Any], entry: SystemEntry | None) -> Decision:
    """Apply an upsert/remove to one system's device index."""
    devices = dict(entry["devices"]) if entry else {}
    if command.get("op") == "upsert":
        # Written even when unchanged: after a crash the entry may be in the local store only,
        # and this re-delivery is what puts it in the changelog.
        reg = command["registration"]
        devices[reg["device_id"]] = reg
    elif command.get("op") == "remove":
        if command.get("device_id") not in devices:
            return Decision()
        del devices[command["device_id"]]
    else:
        return Decision()
    return Decision(state={"devices": devices} if devices else DELETE)
