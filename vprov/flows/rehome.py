"""Registering a rehomed vehicle in its region (docs/spec.md section 2.1, step 5).

On REGISTER the region stores the vehicle and all its devices (each device REGIONAL), creates the
primary's identity in the regional gateway, and confirms. On CANCEL, sent when the global side
gave up on that request, it removes what it stored, so no half-registered vehicle stays behind.

JOIN adds a device registered after the vehicle was bound (REGIONAL, with a lifecycle event
that has no previous state), and provisions the requests it held for that device. LEAVE removes
a device that moved to another system (REMOVED) and revokes its identity in the region's
gateway. Both are remembered under their request id, so a re-delivery repeats, never redoes.
"""

from __future__ import annotations

from typing import Any

from tables.models import RegionalDevice, RegionalVehicle
from vprov.core.memo import remember, resend
from vprov.core.outputs import DELETE, Decision, Effect, Output
from vprov.core.plain import copied
from vprov.flows import handover, provision
from vprov.flows.common import RehomeOutcome, primary_identity, rehome_result
from vprov.flows.context import Context
from vprov.flows.lifecycle import JOINED, PROVISIONED_STATES, State, advance


def _any_provisioned(entry: RegionalVehicle) -> bool:
    return any(d["state"] in PROVISIONED_STATES for d in entry["devices"].values())


def handle(request: dict[str, Any], entry: RegionalVehicle | None, region: str,
           ctx: Context) -> Decision:
    """A rehome request for this region, key VIN: the first boot's REGISTER, CANCEL, JOIN and
    LEAVE here, the operations after it in ``handover``."""
    cause = f"{request['action'].lower()}:{request['request_id']}"
    resent = resend(entry, cause)
    if resent is not None:
        return resent
    if request["action"] == "CANCEL":
        return _cancel(request, entry, region, ctx)
    if request["action"] in ("JOIN", "LEAVE"):
        if entry is not None and entry.get("frozen"):
            # A move numbers the vehicle's events meanwhile: the change waits for its end.
            deferred = copied(entry)
            deferred["deferred"] = [*entry.get("deferred", []), {
                key: request[key] for key in ("action", "request_id", "devices")}]
            return Decision(state=deferred)
        return _membership(request, entry, region, ctx, cause)
    if request["action"] in handover.ACTIONS or request.get("move_policy"):
        return _catch_up(handover.handle(request, entry, region, ctx, cause), region, ctx,
                         cause)
    return _register(request, entry, region, ctx, cause)


def _catch_up(decision: Decision, region: str, ctx: Context, cause: str) -> Decision:
    """After a move's last step here unfroze the vehicle (COMMIT, RESUME): the JOINs and LEAVEs
    that came while it was frozen, in order, remembered with the step that released them."""
    state = decision.state
    if not isinstance(state, dict) or state.get("frozen") or not state.get("deferred"):
        return decision
    updated: RegionalVehicle = copied(state)  # type: ignore[assignment]
    deferred, updated["deferred"] = updated["deferred"], []
    outputs, effects = list(decision.outputs), list(decision.effects)
    for request in deferred:
        step = _membership(request, updated, region, ctx,
                           f"{request['action'].lower()}:{request['request_id']}")
        if step.changes_state and isinstance(step.state, dict):
            updated = step.state  # type: ignore[assignment]
        outputs += step.outputs
        effects += step.effects
    remember(updated, cause, outputs, effects)
    return Decision(state=updated, outputs=outputs, effects=effects)


def _register(request: dict[str, Any], entry: RegionalVehicle | None, region: str,
              ctx: Context, cause: str) -> Decision:
    endpoint = ctx.config.region(region).gateway_endpoint
    effect = Effect("create_identity", region, request["primary_device_id"],
                    primary_identity(request))
    if entry is not None and _any_provisioned(entry):
        # Already provisioned here: confirm, keep the provisioned devices as they are.
        updated = copied(entry)
        updated["request_id"] = request["request_id"]
    else:
        updated = handover.regional_entry(request, region, {
            d["device_id"]: RegionalDevice(
                ecu_type=d["ecu_type"], primary=d["primary"],
                certificate_fingerprint=d["certificate_fingerprint"],
                state=State.REGIONAL.value)
            for d in request["devices"]})
    outputs = [rehome_result(ctx, request, region, RehomeOutcome.REGISTERED, endpoint)]
    remember(updated, cause, outputs, [effect])
    return Decision(state=updated, outputs=outputs, effects=[effect])


def _cancel(request: dict[str, Any], entry: RegionalVehicle | None, region: str,
            ctx: Context) -> Decision:
    undo = Effect("delete_identity", region, request["primary_device_id"])
    if entry is None:
        # Nothing stored (or the undo already ran): make sure no identity is left behind.
        return Decision(effects=[undo] if request["primary_device_id"] else [])
    moving_in = (entry.get("frozen") or {}).get("direction") == "in"
    if entry["request_id"] != request["request_id"] or (_any_provisioned(entry) and not moving_in):
        return Decision()
    undo = Effect("delete_identity", region, entry["primary_device_id"])
    return Decision(state=DELETE, effects=[undo],
                    outputs=[rehome_result(ctx, request, region, RehomeOutcome.CANCELLED)])


def _membership(request: dict[str, Any], entry: RegionalVehicle | None, region: str,
                ctx: Context, cause: str) -> Decision:
    if entry is None or not request["devices"]:
        return Decision()  # not (or no longer) rehomed here: the vehicle's REGISTER carries it
    device = request["devices"][0]
    device_id = device["device_id"]
    current = entry["devices"].get(device_id)
    updated = copied(entry)
    outputs: list[Output] = []
    effects: list[Effect] = []
    if request["action"] == "JOIN":
        if current is not None and \
                current["certificate_fingerprint"] == device["certificate_fingerprint"]:
            remember(updated, cause, [], [])
            return Decision(state=updated)  # part of the vehicle here already
        joining = RegionalDevice(
            ecu_type=device["ecu_type"],
            primary=device_id == entry["primary_device_id"],
            certificate_fingerprint=device["certificate_fingerprint"],
            state=JOINED.value,
        )
        updated, joined = advance(ctx, updated, JOINED, request["request_id"],
                                  device_id=device_id, joining=joining)
        outputs.append(joined)
        # its requests that came before the join are decided now
        released = provision.release(updated, device_id, region, ctx)
        updated = released.state
        outputs += released.outputs
        effects += released.effects
    else:
        if current is None:
            remember(updated, cause, [], [])
            return Decision(state=updated)
        updated, removed = advance(ctx, updated, State.REMOVED, request["request_id"],
                                   device_id=device_id)
        del updated["devices"][device_id]  # a device that left is no part of the vehicle
        outputs.append(removed)
        effects.append(Effect("delete_identity", region, device_id))
    remember(updated, cause, outputs, effects)
    return Decision(state=updated, outputs=outputs, effects=effects)
