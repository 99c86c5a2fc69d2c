"""DEVICE_PROVISION in a region (docs/spec.md section 2.2).

A valid, authorized request for a device of a vehicle rehomed here stores the device's details,
moves it to PROVISIONED (or the ECU type's configured state), emits the lifecycle event, answers
the device and hands it to chipset onboarding. The primary goes first: a secondary that arrives
earlier is held in the vehicle's entry and provisioned in the same step as the primary. Once the
primary is provisioned its identity is deleted from the global gateway (configurable).

A request from a device the region does not know yet may come before its registration has
joined the vehicle (registration and first boot are not ordered, docs/spec.md 2.1). It is held too,
for ``flow.join_wait_seconds``: a JOIN of that device provisions it (``release``), else the
deadline answers it 13123 (``expire_holds``). Never dropped.
"""

from __future__ import annotations

import base64
from typing import Any

from tables.models import HeldRequest, RegionalVehicle
from vprov.core import envelope
from vprov.core.codes import ErrorCode
from vprov.core.envelope import Chipset, DeviceProvision, Rejection, ReplyTo
from vprov.core.ids import derive_id
from vprov.core.memo import remember, resend
from vprov.core.outputs import GLOBAL_SCOPE, Decision, Effect, Output, event
from vprov.core.plain import copied, scalar_fields
from vprov.flows.common import (
    Context,
    Source,
    dead_letter,
    device_identity,
    failure_reply,
    success_reply,
)
from vprov.flows.lifecycle import (
    PROVISIONED_STATES,
    State,
    TransitionRefused,
    advance,
    can_transition,
)
from vprov.flows.validation import check_sender, decode_request

RESPONSE = envelope.DEVICE_PROVISION_RESPONSE


def _fail(ctx: Context, region: str, reply_to: ReplyTo, code: ErrorCode, detail: str | None,
          source: Source | None = None) -> Output:
    return failure_reply(
        ctx,
        topic=ctx.topics.device_response(region),
        reply_to=reply_to,
        response_type=RESPONSE,
        code=code,
        detail=detail,
        fallback_id=source.ref if source else "",
        source_key=source.key if source else None,
    )


def handle(raw: bytes, source: Source, entry: RegionalVehicle | None, region: str,
           ctx: Context) -> Decision:
    """A DEVICE_PROVISION record from ``provisioning.device.<region>`` (key VIN)."""
    parsed = decode_request(
        raw, expected_type=envelope.DEVICE_PROVISION, config=ctx.config, now=ctx.now_s,
        sender=source.authenticated,
    )
    if isinstance(parsed, Rejection):
        if parsed.reply_to is None:
            return Decision(outputs=[dead_letter(ctx, source, raw, parsed.code, parsed.detail)])
        return Decision(outputs=[_fail(ctx, region, parsed.reply_to, parsed.code, parsed.detail,
                                       source)])
    body = parsed.body
    assert isinstance(body, DeviceProvision)
    reply_to = parsed.reply_to
    message_id = parsed.envelope.message_id

    def fail(code: ErrorCode, detail: str) -> Decision:
        return Decision(outputs=[_fail(ctx, region, reply_to, code, detail, source)])

    if source.key is not None and source.key != body.vin.encode("utf-8"):
        return fail(ErrorCode.HEADER_BODY_MISMATCH, "record key differs from the body's vin")
    if entry is None:
        return fail(ErrorCode.DEVICE_NOT_IN_REGION, f"vin {body.vin} is not rehomed to {region}")
    device = entry["devices"].get(body.device_id)
    denied = check_sender(source.authenticated, allowed_device_ids=set(entry["devices"]),
                          config=ctx.config)
    # A device not (yet) part of the vehicle speaking for itself may be waiting for its late
    # registration: it is authorized, or not, once that joins (held below).
    if denied is not None and not (device is None and source.authenticated == body.device_id):
        return fail(ErrorCode.NOT_AUTHORIZED, denied)
    resent = resend(entry, message_id)
    if resent is not None:
        return resent
    blocked = after_first_boot(entry, body.device_id)
    if blocked is not None:
        return fail(*blocked)
    if entry["system_id"] != body.system_id:
        return fail(ErrorCode.VIN_BOUND_TO_OTHER_SYSTEM, f"vin {body.vin}")
    if device is None:
        return _hold(raw, source, message_id, reply_to, entry, region, ctx,
                     until_ms=ctx.now_ms + int(ctx.config.join_wait_seconds * 1000))
    provisioned = device["state"] in PROVISIONED_STATES
    if provisioned and ctx.config.factory_reset == "refuse":
        # remembered, like the other policies' answers: a duplicate gets the same bytes
        return _remembered(entry, message_id, _fail(
            ctx, region, reply_to, ErrorCode.DEVICE_ALREADY_PROVISIONED,
            f"device_id {body.device_id}", source))
    if device["ecu_type"] != body.ecu_type:
        return fail(ErrorCode.FIELD_VIOLATION,
                    f"ecu_type {body.ecu_type} differs from the registered {device['ecu_type']}")
    if provisioned and ctx.config.factory_reset == "answer":
        # the device's current state, and nothing changes (remembered, like any answer)
        return _remembered(entry, message_id, success_reply(
            ctx, topic=ctx.topics.device_response(region), reply_to=reply_to,
            response_type=RESPONSE, body=envelope.device_response_body(device["state"])))

    primary = entry["devices"][entry["primary_device_id"]]
    if not device["primary"] and primary["state"] not in PROVISIONED_STATES:
        return _hold(raw, source, message_id, reply_to, entry, region, ctx)

    try:
        updated, outputs, effects = _provision(body, message_id, reply_to, copied(entry),
                                               region, ctx)
    except TransitionRefused as refused:  # the configured state for this ECU type (SPEC 2.3)
        return fail(refused.code, str(refused))
    decision = Decision(state=updated, outputs=outputs, effects=effects)
    if device["primary"]:
        decision = _release_held(decision, region, ctx)
    # Remembered with what the released requests produced: a crash can leave this state in the
    # local store and none of the records in Kafka, and then this request, read again, is the
    # only one left to send them (the released requests' offsets are long committed).
    remember(decision.state, message_id, decision.outputs, decision.effects)
    return decision


def _remembered(entry: RegionalVehicle, message_id: str, answer: Output) -> Decision:
    """An answer that changes nothing but the memo, so that a duplicate gets the same bytes."""
    updated = copied(entry)
    remember(updated, message_id, [answer], [])
    return Decision(state=updated, outputs=[answer])


def _release_held(decision: Decision, region: str, ctx: Context) -> Decision:
    """After the primary's provisioning: the requests held for it, each decided on the entry
    the one before left."""
    updated: RegionalVehicle = decision.state
    outputs, effects = list(decision.outputs), list(decision.effects)
    held, updated["held"] = updated["held"], []
    for item in held:
        step = handle(base64.b64decode(item["raw"]), Source(**item["source"]), updated,
                      region, ctx)
        if step.changes_state:
            updated = step.state
        outputs += step.outputs
        effects += step.effects
    return Decision(state=updated, outputs=outputs, effects=effects)


def after_first_boot(entry: RegionalVehicle, device_id: str) -> tuple[ErrorCode, str] | None:
    """Why the vehicle's state after its first boot refuses a device's request, or None:
    decommissioned (13133), the device replaced (13132), the vehicle frozen by a move (13131)."""
    if entry.get("decommissioned"):
        return ErrorCode.VEHICLE_DECOMMISSIONED, f"vin {entry['vin']}"
    if device_id in entry.get("revoked", ()):
        return ErrorCode.DEVICE_REPLACED, f"device_id {device_id}"
    if entry.get("frozen"):
        return ErrorCode.VEHICLE_BUSY, f"vin {entry['vin']} is moving region"
    return None


def _hold(raw: bytes, source: Source, message_id: str, reply_to: ReplyTo,
          entry: RegionalVehicle, region: str, ctx: Context,
          until_ms: int | None = None) -> Decision:
    """Keep a secondary's request until the primary is provisioned, or (``until_ms`` given) an
    unknown device's request until its registration joins; bounded per vehicle."""
    if any(item["message_id"] == message_id for item in entry["held"]):
        return Decision(state=entry)  # already held; written again, see vprov.core.memo.resend
    if until_ms is not None and len(entry["held"]) >= ctx.config.max_held_requests:
        refused = _fail(ctx, region, reply_to, ErrorCode.DEVICE_NOT_IN_REGION,
                        f"device_id {reply_to.device_id} is not part of vehicle "
                        f"{entry['vin']}, and {ctx.config.max_held_requests} requests already "
                        "wait in this vehicle", source)
        updated = copied(entry)
        remember(updated, message_id, [refused], [])
        return Decision(state=updated, outputs=[refused])
    if len(entry["held"]) >= ctx.config.max_held_requests:
        updated = copied(entry)
        outputs: list[Output] = []
        # a device that failed before stays PROV_FAIL: no second event
        if can_transition(entry["devices"][reply_to.device_id]["state"], State.PROV_FAIL,
                          device=True):
            updated, failed = advance(ctx, updated, State.PROV_FAIL, message_id,
                                      device_id=reply_to.device_id,
                                      error_code=int(ErrorCode.INVALID_TRANSITION))
            outputs.append(failed)
        outputs.append(_fail(ctx, region, reply_to, ErrorCode.INVALID_TRANSITION,
                             "the primary device is not provisioned yet and "
                             f"{ctx.config.max_held_requests} requests already wait for it"))
        remember(updated, message_id, outputs, [])
        return Decision(state=updated, outputs=outputs)
    updated = copied(entry)
    item: HeldRequest = {
        "message_id": message_id,
        "raw": base64.b64encode(raw).decode("ascii"),
        "source": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "key": None,
            "authenticated": source.authenticated,
        },
    }
    if until_ms is not None:
        item["device_id"] = reply_to.device_id
        item["until_ms"] = until_ms
    updated["held"].append(item)
    return Decision(state=updated)


def earliest_hold_deadline(entry: RegionalVehicle | None) -> int | None:
    """When the first request held for a device that has not joined runs out (None: none)."""
    held = entry["held"] if entry else []
    deadlines = [item["until_ms"] for item in held if "until_ms" in item]
    return min(deadlines) if deadlines else None


def release(entry: RegionalVehicle, device_id: str, region: str, ctx: Context) -> Decision:
    """The device has joined the vehicle: decide again on the requests held for it (in the order
    they came). Applied to ``entry`` as given; the caller writes the returned state."""
    mine = [item for item in entry["held"] if item.get("device_id") == device_id]
    if not mine:
        return Decision(state=entry)
    updated = copied(entry)
    updated["held"] = [item for item in entry["held"] if item.get("device_id") != device_id]
    outputs: list[Output] = []
    effects: list[Effect] = []
    for item in mine:
        step = handle(base64.b64decode(item["raw"]), Source(**item["source"]), updated, region,
                      ctx)
        if step.changes_state:
            updated = step.state
        outputs += step.outputs
        effects += step.effects
    return Decision(state=updated, outputs=outputs, effects=effects)


def expire_holds(entry: RegionalVehicle | None, region: str, ctx: Context) -> Decision:
    """The hold deadline: requests of devices that never joined are answered 13123 (and
    remembered, so a re-sent request gets the same answer)."""
    if entry is None:
        return Decision()
    expired = [item for item in entry["held"] if item.get("until_ms", ctx.now_ms + 1)
               <= ctx.now_ms]
    if not expired:
        return Decision()
    updated = copied(entry)
    updated["held"] = [item for item in entry["held"] if item not in expired]
    outputs = [answer_held(updated, item, region, ctx, ErrorCode.DEVICE_NOT_IN_REGION,
                           f"device_id {item['device_id']} is not part of vehicle "
                           f"{entry['vin']} (no registration joined it within "
                           f"{ctx.config.join_wait_seconds:g}s)")
               for item in expired]
    return Decision(state=updated, outputs=outputs)


def answer_held(entry: RegionalVehicle, item: HeldRequest, region: str, ctx: Context,
                code: ErrorCode, detail: str) -> Output:
    """The failure answer to a held request (remembered in ``entry``, so a re-sent request gets
    the same answer); the caller takes the item out of ``entry["held"]``."""
    raw = base64.b64decode(item["raw"])
    source = Source(**item["source"])
    parsed = decode_request(raw, expected_type=envelope.DEVICE_PROVISION, config=ctx.config,
                            now=ctx.now_s, sender=source.authenticated)
    reply_to = parsed.reply_to
    if reply_to is None:  # held only after decoding: cannot happen, but never drop it
        answer = dead_letter(ctx, source, raw, code, detail)
    else:
        answer = _fail(ctx, region, reply_to, code, detail, source)
    remember(entry, item["message_id"], [answer], [])
    return answer


def _onboarding_chipset(chipset: Chipset) -> dict[str, Any]:
    """A chipset for the onboarding record, whose Avro ``id`` is a non-null string: a chipset
    without an id yet (None) goes as "", as devices send it, rather than a new schema version."""
    return {**scalar_fields(chipset), "id": chipset.id or ""}


def _provision(body: DeviceProvision, message_id: str, reply_to: ReplyTo,
               entry: RegionalVehicle, region: str, ctx: Context
               ) -> tuple[RegionalVehicle, list[Output], list[Effect]]:
    """Provision the device: the new entry, its records and effects. A device provisioned
    before (a factory reset, policy ``reprovision``) stays in its state and gets its regional
    identity issued again."""
    before = entry["devices"][body.device_id]["state"]
    again = before in PROVISIONED_STATES
    target = State(before) if again else State(ctx.config.ecu_states[body.ecu_type])
    entry, provisioned = advance(ctx, entry, target, message_id, device_id=body.device_id)
    device = entry["devices"][body.device_id]
    device["details"] = {
        "ecu_model": body.ecu_model,
        "ecu_make": body.ecu_make,
        "sim_info": body.sim_info,
        "communication_channel": body.communication_channel,
        "configuration": body.configuration,
        "privacy_flag": body.privacy_flag,
        "chipsets": [scalar_fields(c) for c in body.chipsets],
        "provisioned_by": message_id,
        "provisioned_at": ctx.now_ms,
    }
    if body.vehicle_info:
        entry["vehicle_info"] = body.vehicle_info
    outputs = [
        provisioned,
        success_reply(ctx, topic=ctx.topics.device_response(region), reply_to=reply_to,
                      response_type=RESPONSE, body=envelope.device_response_body(target.value)),
        event(ctx.topics.onboarding(region), entry["vin"], "ChipsetOnboardingRequest", {
            "request_id": derive_id("onboarding", entry["vin"], body.device_id, message_id),
            "vin": entry["vin"],
            "system_id": entry["system_id"],
            "sub_system_id": entry["sub_system_id"],
            "device_id": body.device_id,
            "ecu_type": body.ecu_type,
            "region": region,
            "chipsets": [_onboarding_chipset(c) for c in body.chipsets],
            "cause_message_id": message_id,
            "requested_at": ctx.now_ms,
        }),
    ]
    effects: list[Effect] = []
    if again:
        effects.append(Effect("create_identity", region, body.device_id,
                              device_identity(entry, device)))
    if device["primary"] and ctx.config.delete_global_identity:
        effects.append(Effect("delete_identity", GLOBAL_SCOPE, body.device_id))
        entry["global_identity_deleted"] = True
    return entry, outputs, effects
