"""Operators' commands after the first boot, on the global side (docs/after-first-boot.md).

An ``AdminCommand`` (topic ``provisioning.admin``, key VIN) moves a vehicle to another region,
replaces one of its devices, decommissions it, or reinstates a decommissioned VIN. Its outcome
(``AdminOutcome``) is REFUSED when it cannot be done, with nothing changed; DONE when the global
store alone carries it out; else ACCEPTED, and DONE or FAILED once the regions have answered
(``on_result``, on ``provisioning.rehome.result``). While one command is under way the vehicle
refuses others, and its devices' requests, with 13131.

The move is a saga with a deadline and an undo (like the first boot's rehome):

1. EXPORT to the source region, which freezes the vehicle and answers with its record;
2. the vehicle goes MOVING, and the target region is asked to REGISTER that record, frozen;
3. on its confirmation the vehicle's home switches (REGIONAL, the new region): COMMIT to the
   target, RELEASE to the source. The source lets go only after the target has confirmed.

A failure, or the deadline, before the switch undoes it: the vehicle stays (REGIONAL, in the
source, again), RESUME to the source, CANCEL to the target. The global side numbers the vehicle's
events only while both regions are frozen, on from the sequence the source reported; so the
vehicle's history stays one sequence.

Each command is remembered under its ``command_id``: sent again, it gets the same outcome and has
no second effect.
"""

from __future__ import annotations

import json
from typing import Any

from tables.models import GlobalVehicle, PendingAdmin
from vprov.core.codes import ErrorCode, message_for
from vprov.core.ids import derive_id
from vprov.core.memo import remember, resend
from vprov.core.outputs import GLOBAL_SCOPE, Decision, Effect, Output, event
from vprov.core.plain import copied
from vprov.flows.common import RehomeOutcome, rehome_request
from vprov.flows.context import Context
from vprov.flows.lifecycle import State, advance

MOVE, REPLACE, DECOMMISSION, REINSTATE = "MOVE", "REPLACE_DEVICE", "DECOMMISSION", "REINSTATE"


def _cause(command_id: str) -> str:
    return f"admin:{command_id}"


def _outcome(ctx: Context, command: dict[str, Any], outcome: str, region: str | None,
             code: ErrorCode | None = None, detail: str | None = None) -> Output:
    value = {
        "command_id": command["command_id"],
        "vin": command["vin"],
        "operation": command["operation"],
        "outcome": outcome,
        "region": region,
        "error_code": int(code) if code is not None else None,
        "error_message": message_for(code, detail) if code is not None else None,
        "decided_at": ctx.now_ms,
    }
    return event(ctx.topics.admin_outcome, command["vin"], "AdminOutcome", value)


def busy(vehicle: GlobalVehicle) -> bool:
    """A move or a command waiting for its region is under way."""
    return bool(vehicle.get("admin")) or vehicle["state"] == State.MOVING


def refusal(vehicle: GlobalVehicle | None, device_id: str) -> tuple[ErrorCode, str] | None:
    """Why a device's query for this vehicle is refused after its first boot, or None."""
    if vehicle is None:
        return None
    if vehicle["state"] == State.DECOMMISSIONED:
        return ErrorCode.VEHICLE_DECOMMISSIONED, f"vin {vehicle['vin']}"
    if device_id in vehicle.get("revoked", ()):
        return ErrorCode.DEVICE_REPLACED, f"device_id {device_id}"
    if busy(vehicle):
        return ErrorCode.VEHICLE_BUSY, f"vin {vehicle['vin']}"
    return None


def handle(command: dict[str, Any], vehicle: GlobalVehicle | None, ctx: Context) -> Decision:
    """An ``AdminCommand`` (key VIN)."""
    cause = _cause(command["command_id"])
    resent = resend(vehicle, cause)
    if resent is not None:
        return resent
    operation = command["operation"]

    def refuse(code: ErrorCode, detail: str) -> Decision:
        region = vehicle["region"] if vehicle else None
        outcome = _outcome(ctx, command, "REFUSED", region, code, detail)
        if vehicle is None:
            return Decision(outputs=[outcome])
        updated = copied(vehicle)
        remember(updated, cause, [outcome], [])
        return Decision(state=updated, outputs=[outcome])

    if vehicle is None or vehicle["system_id"] is None:
        return refuse(ErrorCode.VEHICLE_NOT_FOUND, f"vin {command['vin']}")
    if operation == REINSTATE:
        if vehicle["state"] != State.DECOMMISSIONED:
            return refuse(ErrorCode.INVALID_TRANSITION,
                          f"vin {vehicle['vin']} is {vehicle['state']}, not DECOMMISSIONED")
        return _reinstate(command, vehicle, ctx, cause)
    if vehicle["state"] == State.DECOMMISSIONED:
        return refuse(ErrorCode.VEHICLE_DECOMMISSIONED, f"vin {vehicle['vin']}")
    if busy(vehicle) or vehicle["pending"] is not None:
        return refuse(ErrorCode.VEHICLE_BUSY, f"vin {vehicle['vin']} has a command or a "
                      "first-boot rehome under way")
    if operation == MOVE:
        problem = _move_problem(command, vehicle, ctx)
        if problem is not None:
            return refuse(*problem)
        return _start_move(command, vehicle, ctx, cause)
    if operation == REPLACE:
        problem = _replace_problem(command, vehicle)
        if problem is not None:
            return refuse(*problem)
        return _replace(command, vehicle, ctx, cause)
    return _decommission(command, vehicle, ctx, cause)


# --- move ------------------------------------------------------------------------------------


def _move_problem(command: dict[str, Any], vehicle: GlobalVehicle, ctx: Context
                  ) -> tuple[ErrorCode, str] | None:
    target = command.get("target_region") or ""
    if target not in ctx.config.regions:
        return ErrorCode.REGION_NOT_FOUND, f"region {target!r}"
    if command.get("move_policy") not in ("MIGRATE", "RESET"):
        return ErrorCode.FIELD_VIOLATION, "move_policy must be MIGRATE or RESET"
    if vehicle["state"] != State.REGIONAL:
        return ErrorCode.INVALID_TRANSITION, (f"vin {vehicle['vin']} is {vehicle['state']}: only "
                                              "a REGIONAL vehicle moves")
    if vehicle["region"] == target:
        return ErrorCode.INVALID_TRANSITION, f"vin {vehicle['vin']} is homed in {target} already"
    if ctx.config.homing_by_country and not command.get("force"):
        country = vehicle["country_code"] or ""
        home = ctx.config.region_for_country(country)
        if home is not None and home != target:
            return ErrorCode.RESIDENCY_VIOLATION, (f"{country} is homed in {home}; send the move "
                                                   "with force to move it anyway")
    return None


def _start_move(command: dict[str, Any], vehicle: GlobalVehicle, ctx: Context,
                cause: str) -> Decision:
    source = vehicle["region"]
    assert source is not None
    request_id = derive_id("move", vehicle["vin"], command["command_id"])
    updated = copied(vehicle)
    deadline = ctx.now_ms + int(ctx.config.move_timeout_seconds * 1000)
    updated["admin"] = PendingAdmin(
        command_id=command["command_id"], operation=MOVE, request_id=request_id, stage="export",
        source=source, target=command["target_region"], policy=command["move_policy"],
        deadline_ms=deadline)
    outputs = [rehome_request(ctx, vehicle, "EXPORT", request_id, source, command["command_id"],
                              deadline, sequence=vehicle["sequence"]),
               _outcome(ctx, command, "ACCEPTED", source)]
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def _exported(result: dict[str, Any], vehicle: GlobalVehicle, admin: PendingAdmin,
              ctx: Context, cause: str) -> Decision:
    """Step 2: the source froze the vehicle; MOVING, and the target takes the record up."""
    command_id = admin["command_id"]
    updated = copied(vehicle)
    updated["sequence"] = max(vehicle["sequence"], result.get("sequence") or 0)
    updated, moving = advance(ctx, updated, State.MOVING, command_id)
    target, policy = admin["target"], admin["policy"]
    snapshot = json.loads(result.get("snapshot") or "{}")
    if policy == "RESET":  # the devices start over: their details stay behind
        snapshot["vehicle_info"] = {}
        for device in snapshot.get("devices", {}).values():
            device.pop("details", None)
    updated["admin"] = {**admin, "stage": "register"}
    outputs = [moving, rehome_request(
        ctx, updated, "REGISTER", admin["request_id"], target, command_id,
        admin["deadline_ms"], sequence=updated["sequence"], move_policy=policy,
        snapshot=json.dumps(snapshot, sort_keys=True))]
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def _moved(result: dict[str, Any], vehicle: GlobalVehicle, admin: PendingAdmin, ctx: Context,
           cause: str) -> Decision:
    """Step 3: the target has the vehicle. Switch its home, then let the source go."""
    command_id = admin["command_id"]
    updated = copied(vehicle)
    updated["sequence"] = max(vehicle["sequence"], result.get("sequence") or 0)
    updated, rehomed = advance(ctx, updated, State.REGIONAL, command_id)
    updated.update({"region": admin["target"], "gateway_endpoint": result["gateway_endpoint"],
                    "request_id": admin["request_id"], "admin": None})
    source = admin["source"]
    assert source is not None
    outputs = [
        rehomed,
        rehome_request(ctx, updated, "COMMIT", admin["request_id"], admin["target"], command_id,
                       ctx.now_ms, sequence=updated["sequence"], move_policy=admin["policy"]),
        rehome_request(ctx, updated, "RELEASE", admin["request_id"], source, command_id,
                       ctx.now_ms, devices=updated["devices"], sequence=updated["sequence"]),
        _outcome(ctx, _command(vehicle, admin), "DONE", admin["target"]),
    ]
    return _finish(updated, admin["command_id"], cause, outputs)


def _undo_move(vehicle: GlobalVehicle, admin: PendingAdmin, ctx: Context, cause: str,
               code: ErrorCode, detail: str) -> Decision:
    """The move failed before the switch: the vehicle stays in the source."""
    command_id = admin["command_id"]
    updated = copied(vehicle)
    outputs: list[Output] = []
    if vehicle["state"] == State.MOVING:
        updated, back = advance(ctx, updated, State.REGIONAL, f"undo:{command_id}")
        outputs.append(back)
    updated["admin"] = None
    source = admin["source"]
    assert source is not None
    outputs.append(rehome_request(ctx, updated, "RESUME", admin["request_id"], source,
                                  command_id, ctx.now_ms, sequence=updated["sequence"]))
    if admin["stage"] == "register":
        outputs.append(rehome_request(ctx, updated, "CANCEL", admin["request_id"],
                                      admin["target"], command_id, ctx.now_ms))
    outputs.append(_outcome(ctx, _command(vehicle, admin), "FAILED", source, code, detail))
    return _finish(updated, admin["command_id"], cause, outputs)


# --- replace a device ------------------------------------------------------------------------


def _replace_problem(command: dict[str, Any], vehicle: GlobalVehicle
                     ) -> tuple[ErrorCode, str] | None:
    old, new = command.get("old_device_id") or "", command.get("new_device_id") or ""
    ids = {d["device_id"] for d in vehicle["devices"]}
    if not old or not new or old == new:
        return ErrorCode.FIELD_VIOLATION, "replace needs two different devices, old and new"
    if old not in ids:
        return ErrorCode.DEVICE_NOT_REGISTERED, f"device_id {old} is not part of the vehicle"
    if new in vehicle.get("revoked", ()):
        return ErrorCode.DEVICE_REPLACED, f"device_id {new}"
    if new not in ids:
        return ErrorCode.DEVICE_NOT_REGISTERED, (
            f"device_id {new} has not joined the vehicle: register it under system "
            f"{vehicle['system_id']} first")
    return None


def _replace(command: dict[str, Any], vehicle: GlobalVehicle, ctx: Context,
             cause: str) -> Decision:
    """The new device takes the old one's place (and role); the old one's identities go."""
    old_id, new_id = command["old_device_id"], command["new_device_id"]
    old = next(d for d in vehicle["devices"] if d["device_id"] == old_id)
    new = next(d for d in vehicle["devices"] if d["device_id"] == new_id)
    updated = copied(vehicle)
    was_primary = old_id == vehicle["primary_device_id"]
    updated["devices"] = [{**d, "primary": d["primary"] or (was_primary and d is new)}
                          for d in vehicle["devices"] if d["device_id"] != old_id]
    if was_primary:
        updated["primary_device_id"] = new_id
    updated["revoked"] = sorted({*vehicle.get("revoked", []), old_id})
    effects = [Effect("delete_identity", GLOBAL_SCOPE, old_id)]
    region = vehicle["region"] if vehicle["state"] == State.REGIONAL else None
    if region is None:  # not rehomed yet: the global store is all there is
        outputs = [_outcome(ctx, command, "DONE", None)]
        remember(updated, cause, outputs, effects)
        return Decision(state=updated, outputs=outputs, effects=effects)
    request_id = derive_id("replace", vehicle["vin"], command["command_id"])
    updated["admin"] = PendingAdmin(command_id=command["command_id"], operation=REPLACE,
                                    request_id=request_id, stage="region", source=region)
    outputs = [rehome_request(ctx, updated, "REPLACE", request_id, region, command["command_id"],
                              ctx.now_ms, devices=[old, new]),
               _outcome(ctx, command, "ACCEPTED", region)]
    remember(updated, cause, outputs, effects)
    return Decision(state=updated, outputs=outputs, effects=effects)


# --- decommission and reinstate ----------------------------------------------------------------


def _decommission(command: dict[str, Any], vehicle: GlobalVehicle, ctx: Context,
                  cause: str) -> Decision:
    region = vehicle["region"] if vehicle["state"] == State.REGIONAL else None
    if region is None:
        return _decommissioned(command, vehicle, vehicle["sequence"], ctx, cause)
    request_id = derive_id("decommission", vehicle["vin"], command["command_id"])
    updated = copied(vehicle)
    updated["admin"] = PendingAdmin(command_id=command["command_id"], operation=DECOMMISSION,
                                    request_id=request_id, stage="region", source=region)
    outputs = [rehome_request(ctx, vehicle, "DECOMMISSION", request_id, region,
                              command["command_id"], ctx.now_ms, devices=vehicle["devices"]),
               _outcome(ctx, command, "ACCEPTED", region)]
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def _decommissioned(command: dict[str, Any], vehicle: GlobalVehicle, sequence: int,
                    ctx: Context, cause: str) -> Decision:
    """DECOMMISSIONED; the devices' global identities go, and the store keeps only what the
    audit needs: the VIN, its system, its state, sequence and last region."""
    updated = copied(vehicle)
    updated["sequence"] = max(vehicle["sequence"], sequence)
    updated, decommissioned = advance(ctx, updated, State.DECOMMISSIONED, command["command_id"])
    effects = [Effect("delete_identity", GLOBAL_SCOPE, d["device_id"])
               for d in vehicle["devices"]]
    updated.update({"sub_system_id": None, "primary_device_id": None, "devices": [],
                    "country_code": None, "gateway_endpoint": None, "pending": None,
                    "error_code": None, "memo": {}, "admin": None, "revoked": []})
    outputs = [decommissioned, _outcome(ctx, command, "DONE", vehicle["region"])]
    return _finish(updated, command["command_id"], cause, outputs, effects)


def _reinstate(command: dict[str, Any], vehicle: GlobalVehicle, ctx: Context,
               cause: str) -> Decision:
    """REGISTERED again, bound to no system: the next query binds the VIN like a new one."""
    updated, registered = advance(ctx, copied(vehicle), State.REGISTERED,
                                  command["command_id"])
    updated.update({"system_id": None, "region": None, "request_id": None})
    outputs = [registered, _outcome(ctx, command, "DONE", None)]
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


# --- the regions' answers and the deadline ---------------------------------------------------


def _finish(updated: GlobalVehicle, command_id: str, cause: str, outputs: list[Output],
            effects: list[Effect] | None = None) -> Decision:
    """The command's last step: remembered under its cause, and its outcome (the last output)
    under the command, so the command sent again gets the final outcome, not ACCEPTED."""
    remember(updated, cause, outputs, effects or [])
    remember(updated, _cause(command_id), outputs[-1:], [])
    return Decision(state=updated, outputs=outputs, effects=effects or [])


def _command(vehicle: GlobalVehicle, admin: PendingAdmin) -> dict[str, Any]:
    """Enough of the command for its outcome record."""
    return {"command_id": admin["command_id"], "vin": vehicle["vin"],
            "operation": admin["operation"]}


def pending(vehicle: GlobalVehicle | None, request_id: str) -> PendingAdmin | None:
    """The command under way that sent request ``request_id``, if any."""
    admin = vehicle.get("admin") if vehicle else None
    return admin if admin and admin["request_id"] == request_id else None


def on_result(result: dict[str, Any], vehicle: GlobalVehicle, admin: PendingAdmin,
              ctx: Context, cause: str) -> Decision:
    """A region answered a request of the command under way (``pending``)."""
    outcome = result["outcome"]
    failed = outcome == RehomeOutcome.FAILED
    detail = result.get("error_message") or f"region {result['region']} refused"
    if admin["operation"] == MOVE:
        if admin["stage"] == "export" and outcome == RehomeOutcome.EXPORTED:
            return _exported(result, vehicle, admin, ctx, cause)
        if admin["stage"] == "register" and outcome == RehomeOutcome.REGISTERED \
                and result["region"] == admin["target"]:
            return _moved(result, vehicle, admin, ctx, cause)
        if failed:
            return _undo_move(vehicle, admin, ctx, cause, ErrorCode.REGIONAL_REGISTRATION_FAILED,
                              detail)
        return Decision()
    if admin["operation"] == DECOMMISSION and outcome == RehomeOutcome.DECOMMISSIONED:
        return _decommissioned(_command(vehicle, admin), vehicle, result.get("sequence") or 0,
                               ctx, cause)
    if admin["operation"] == REPLACE and outcome == RehomeOutcome.REPLACED:
        updated = copied(vehicle)
        updated["admin"] = None
        outputs = [_outcome(ctx, _command(vehicle, admin), "DONE", result["region"])]
        return _finish(updated, admin["command_id"], cause, outputs)
    return Decision()


def deadline(vehicle: GlobalVehicle, admin: PendingAdmin, ctx: Context) -> Decision:
    """The timer: a move past its deadline is undone. (Replace and decommission wait for their
    region however long it takes: neither can be undone halfway.)"""
    if admin["operation"] != MOVE or ctx.now_ms < admin.get("deadline_ms", ctx.now_ms + 1):
        return Decision()
    waited = admin["source"] if admin["stage"] == "export" else admin["target"]
    return _undo_move(vehicle, admin, ctx, f"deadline:{admin['request_id']}",
                      ErrorCode.REGIONAL_REGISTRATION_FAILED,
                      f"region {waited} did not answer in {ctx.config.move_timeout_seconds:g}s")
