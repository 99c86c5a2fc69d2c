"""A region's part in the operations after the first boot (docs/after-first-boot.md).

A move is a saga the global side drives (``vprov.flows.operator_commands``); each region only does
as told:

- EXPORT (source): freeze the vehicle and hand its record over in the result. Its device requests
  get 13131 while it is frozen; requests it held are answered 13131 too, to be sent again.
- REGISTER with a ``move_policy`` (target): take the record up, frozen as well.
- COMMIT (target, once the global side switched the vehicle's home): unfreeze; with RESET every
  device goes back to REGIONAL, its details dropped, to provision again.
- RELEASE (source, after the switch): erase the vehicle and revoke its devices' identities here.
- RESUME (source, the move undone): unfreeze. CANCEL (target) is the first boot's undo.

REPLACE swaps one device for another. DECOMMISSION erases the vehicle's data here, keeping a marker
that answers its devices 13133. Each is remembered under its request, so a re-delivery repeats,
never redoes.
"""

from __future__ import annotations

import json
from typing import Any

from tables.models import RegionalDevice, RegionalVehicle
from vprov.core.codes import ErrorCode, message_for
from vprov.core.memo import remember
from vprov.core.outputs import DELETE, Decision, Effect, Output
from vprov.core.plain import copied
from vprov.flows import provision
from vprov.flows.common import (
    Context,
    RehomeOutcome,
    device_identity,
    primary_identity,
    rehome_result,
)
from vprov.flows.lifecycle import JOINED, State, advance

ACTIONS = frozenset({"EXPORT", "RESUME", "RELEASE", "COMMIT", "REPLACE", "DECOMMISSION"})


def handle(request: dict[str, Any], entry: RegionalVehicle | None, region: str, ctx: Context,
           cause: str) -> Decision:
    """One of ``ACTIONS``, or a REGISTER that takes up a moved vehicle."""
    action = request["action"]
    if action == "REGISTER":
        return _take_up(request, entry, region, ctx, cause)
    if action == "EXPORT":
        return _export(request, entry, region, ctx, cause)
    if action == "DECOMMISSION":
        return _decommission(request, entry, region, ctx, cause)
    if action == "RELEASE":
        return _release(request, entry, region)
    if entry is None or entry.get("decommissioned"):
        if action == "REPLACE":  # not homed here (any more): nothing to swap
            return Decision(outputs=[rehome_result(ctx, request, region,
                                                   RehomeOutcome.REPLACED)])
        return Decision()
    if action == "REPLACE":
        return _replace(request, entry, region, ctx, cause)
    frozen = entry.get("frozen") or {}
    if frozen.get("request_id") != request["request_id"]:
        return Decision()  # not frozen by this move: a late or repeated step
    updated = copied(entry)
    updated["frozen"] = None
    if action == "RESUME":
        updated["sequence"] = max(entry["sequence"], request["sequence"])
        return Decision(state=updated)
    return _commit(request, updated, ctx, cause)


def _snapshot(entry: RegionalVehicle) -> str:
    """What the target region needs of the vehicle's record, as JSON."""
    return json.dumps({
        "devices": entry["devices"],
        "vehicle_info": entry["vehicle_info"],
        "revoked": entry.get("revoked", []),
        "global_identity_deleted": entry["global_identity_deleted"],
    }, sort_keys=True)


def _export(request: dict[str, Any], entry: RegionalVehicle | None, region: str, ctx: Context,
            cause: str) -> Decision:
    if entry is None or entry.get("decommissioned"):
        code = ErrorCode.DEVICE_NOT_IN_REGION
        detail = f"vin {request['vin']} is not homed in {region}"
        return Decision(outputs=[rehome_result(ctx, request, region, RehomeOutcome.FAILED,
                                               error=(int(code), message_for(code, detail)))])
    updated = copied(entry)
    updated["frozen"] = {"request_id": request["request_id"], "direction": "out"}
    held, updated["held"] = updated["held"], []
    outputs = [provision.answer_held(updated, item, region, ctx, ErrorCode.VEHICLE_BUSY,
                                     f"vin {entry['vin']} is moving region") for item in held]
    outputs.append(rehome_result(ctx, request, region, RehomeOutcome.EXPORTED,
                                 sequence=entry["sequence"], snapshot=_snapshot(entry)))
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def regional_entry(request: dict[str, Any], region: str,
                   devices: dict[str, RegionalDevice]) -> RegionalVehicle:
    """A vehicle's new entry in ``region`` from the global side's request, with ``devices``."""
    return RegionalVehicle({
        "vin": request["vin"],
        "system_id": request["system_id"],
        "sub_system_id": request["sub_system_id"],
        "region": region,
        "country_code": request["country_code"],
        "request_id": request["request_id"],
        "primary_device_id": request["primary_device_id"],
        "sequence": request["sequence"],
        "devices": devices,
        "vehicle_info": {},
        "held": [],
        "global_identity_deleted": False,
        "memo": {},
    })


def _take_up(request: dict[str, Any], entry: RegionalVehicle | None, region: str,
             ctx: Context, cause: str) -> Decision:
    snapshot = json.loads(request.get("snapshot") or "{}")
    devices: dict[str, RegionalDevice] = dict(snapshot.get("devices", {}))
    for d in request["devices"]:  # a device the source did not know yet joins here REGIONAL
        devices.setdefault(d["device_id"], RegionalDevice(
            ecu_type=d["ecu_type"], primary=d["primary"],
            certificate_fingerprint=d["certificate_fingerprint"], state=State.REGIONAL.value))
    updated = regional_entry(request, region, devices)
    updated.update({
        "vehicle_info": snapshot.get("vehicle_info", {}),
        "global_identity_deleted": snapshot.get("global_identity_deleted", False),
        "frozen": {"request_id": request["request_id"], "direction": "in",
                   "policy": request["move_policy"]},
        "revoked": snapshot.get("revoked", []),
    })
    effect = Effect("create_identity", region, request["primary_device_id"],
                    primary_identity(request))
    outputs = [rehome_result(ctx, request, region, RehomeOutcome.REGISTERED,
                             ctx.config.region(region).gateway_endpoint,
                             sequence=request["sequence"])]
    remember(updated, cause, outputs, [effect])
    return Decision(state=updated, outputs=outputs, effects=[effect])


def _commit(request: dict[str, Any], updated: RegionalVehicle, ctx: Context,
            cause: str) -> Decision:
    """The move is done: the vehicle lives here now; with RESET its devices start over."""
    updated["sequence"] = request["sequence"]
    outputs: list[Output] = []
    if request.get("move_policy") == "RESET":
        updated["vehicle_info"] = {}
        for device_id in sorted(updated["devices"]):
            updated["devices"][device_id].pop("details", None)
            if updated["devices"][device_id]["state"] != State.REGIONAL:
                updated, reset = advance(ctx, updated, State.REGIONAL,
                                         request["cause_message_id"], device_id=device_id)
                outputs.append(reset)
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def _revoke(region: str, device_ids: Any) -> list[Effect]:
    return [Effect("delete_identity", region, d) for d in sorted(set(device_ids))]


def _release(request: dict[str, Any], entry: RegionalVehicle | None, region: str) -> Decision:
    """The vehicle moved away: erase it here. Without an entry (erased before a crash let the
    identities go) the identities of the request's devices are revoked again."""
    listed = [d["device_id"] for d in request["devices"]]
    if entry is None:
        return Decision(effects=_revoke(region, listed))
    if (entry.get("frozen") or {}).get("request_id") != request["request_id"]:
        return Decision()  # not the move that froze it: leave the vehicle alone
    return Decision(state=DELETE, effects=_revoke(region, [*listed, *entry["devices"]]))


def _replace(request: dict[str, Any], entry: RegionalVehicle, region: str, ctx: Context,
             cause: str) -> Decision:
    old, new = request["devices"][0], request["devices"][1]
    old_id, new_id = old["device_id"], new["device_id"]
    command = request["cause_message_id"]
    updated = copied(entry)
    outputs: list[Output] = []
    effects = _revoke(region, [old_id])
    was_primary = old_id == entry["primary_device_id"]
    if old_id in updated["devices"]:
        updated, removed = advance(ctx, updated, State.REMOVED, command, device_id=old_id)
        del updated["devices"][old_id]
        outputs.append(removed)
    updated["revoked"] = sorted({*updated.get("revoked", []), old_id})
    if new_id not in updated["devices"]:
        joining = RegionalDevice(ecu_type=new["ecu_type"], primary=False,
                                 certificate_fingerprint=new["certificate_fingerprint"],
                                 state=JOINED.value)
        updated, joined = advance(ctx, updated, JOINED, command, device_id=new_id,
                                  joining=joining)
        outputs.append(joined)
    if was_primary:
        updated["primary_device_id"] = new_id
        updated["devices"][new_id]["primary"] = True
        effects.append(Effect("create_identity", region, new_id,
                              device_identity(updated, updated["devices"][new_id])))
    released = provision.release(updated, new_id, region, ctx)  # its requests held so far
    updated = released.state
    outputs += released.outputs
    effects += released.effects
    outputs.append(rehome_result(ctx, request, region, RehomeOutcome.REPLACED,
                                 sequence=updated["sequence"]))
    remember(updated, cause, outputs, effects)
    return Decision(state=updated, outputs=outputs, effects=effects)


def _decommission(request: dict[str, Any], entry: RegionalVehicle | None, region: str,
                  ctx: Context, cause: str) -> Decision:
    """Every device REMOVED, its identity revoked, the vehicle's data erased: only a marker
    stays, which answers the VIN's devices 13133."""
    listed = [d["device_id"] for d in request["devices"]]
    if entry is None or entry.get("decommissioned"):
        return Decision(effects=_revoke(region, listed), outputs=[rehome_result(
            ctx, request, region, RehomeOutcome.DECOMMISSIONED,
            sequence=entry["sequence"] if entry else None)])
    updated = copied(entry)
    outputs: list[Output] = []
    for device_id in sorted(entry["devices"]):
        updated, removed = advance(ctx, updated, State.REMOVED, request["cause_message_id"],
                                   device_id=device_id)
        outputs.append(removed)
    held, updated["held"] = updated["held"], []
    outputs += [provision.answer_held(updated, item, region, ctx,
                                      ErrorCode.VEHICLE_DECOMMISSIONED, f"vin {entry['vin']}")
                for item in held]
    marker = RegionalVehicle({
        "vin": entry["vin"], "system_id": entry["system_id"], "sub_system_id": "",
        "region": region, "country_code": "", "request_id": entry["request_id"],
        "primary_device_id": "", "sequence": updated["sequence"], "devices": {},
        "vehicle_info": {}, "held": [], "global_identity_deleted": True, "memo": {},
        "decommissioned": True,
    })
    effects = _revoke(region, [*listed, *entry["devices"]])
    outputs.append(rehome_result(ctx, request, region, RehomeOutcome.DECOMMISSIONED,
                                 sequence=updated["sequence"]))
    # of the memo only the answers to the held requests stay, so a re-sent one gets the same
    marker["memo"] = {item["message_id"]: updated["memo"][item["message_id"]] for item in held}
    remember(marker, cause, outputs, effects)
    return Decision(state=marker, outputs=outputs, effects=effects)
