"""PROVISION_QUERY on the global side (docs/spec.md section 2.1).

The query meets three keys, so it travels in hops (docs/architecture.md):

1. ``intake`` (key VIN): validate, authorize, answer duplicates and vehicles already REGIONAL;
   else forward to the system's partition.
2. ``match_system`` (key system_id): is the system registered, is the sender its primary?
   A device the system does not list goes to ``match_device`` (key device_id) to tell
   "under another system" (13108) from "not registered" (13111).
3. ``vehicle_command`` (key VIN): bind the VIN, pick the home region, ask the region to register
   the vehicle (``rehome``), hold the query until the region answers or the deadline passes;
   tell the system's index the VIN (``bind``). Later registration changes arrive here as
   ``join``/``leave`` commands and reach the vehicle's region the same way.
4. ``rehome_result`` (key VIN): REGIONAL and the answer, or QRY_FAIL and an undo.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tables.models import GlobalVehicle, PendingRehome, Registration, SystemEntry
from vprov.config import Config
from vprov.core import commands, envelope
from vprov.core.codes import ErrorCode
from vprov.core.commands import (
    Bind,
    Join,
    Leave,
    Matched,
    MatchFailed,
    QueryHop,
    RehomeDeadline,
    VehicleCommand,
)
from vprov.core.envelope import ProvisionQuery, Rejection, ReplyTo
from vprov.core.ids import derive_id
from vprov.core.memo import recall, remember, resend
from vprov.core.outputs import Decision, Output
from vprov.core.plain import copied
from vprov.flows import operator_commands
from vprov.flows.common import (
    Context,
    RehomeOutcome,
    Source,
    dead_letter,
    failure_reply,
    rehome_request,
    reply_to_dict,
    reply_to_from,
    success_reply,
)
from vprov.flows.lifecycle import PROVISION_PENDING_REGIONAL, State, advance
from vprov.flows.validation import check_sender, decode_request

RESPONSE = envelope.PROVISION_QUERY_RESPONSE


def _fail(ctx: Context, reply_to: ReplyTo, code: ErrorCode, detail: str | None,
          fallback_id: str = "", source_key: bytes | None = None) -> Output:
    return failure_reply(
        ctx,
        topic=ctx.topics.query_response,
        reply_to=reply_to,
        response_type=RESPONSE,
        code=code,
        detail=detail,
        fallback_id=fallback_id,
        source_key=source_key,
    )


def _success(ctx: Context, reply_to: ReplyTo, endpoint: str) -> Output:
    return success_reply(
        ctx,
        topic=ctx.topics.query_response,
        reply_to=reply_to,
        response_type=RESPONSE,
        body=envelope.query_response_body(endpoint, PROVISION_PENDING_REGIONAL),
    )


def _is_bound(vehicle: GlobalVehicle) -> bool:
    """A VIN belongs to its system once REGIONAL or while its rehome is under way; a VIN whose
    queries all failed is free again (the failed attempt's work was undone)."""
    return vehicle["state"] in (State.REGIONAL, State.MOVING) or vehicle["pending"] is not None


def _refused_after_first_boot(ctx: Context, reply_to: ReplyTo, vehicle: GlobalVehicle | None,
                              device_id: str) -> Decision | None:
    """A query for a decommissioned vehicle (13133), from a replaced device (13132), or while
    an operator's command is under way (13131): answered, and remembered; else None."""
    refused = operator_commands.refusal(vehicle, device_id)
    if refused is None or vehicle is None:
        return None
    answer = _fail(ctx, reply_to, *refused)
    updated = copied(vehicle)
    remember(updated, reply_to.message_id or "", [answer], [])
    return Decision(state=updated, outputs=[answer])


def _repeat_or_wait(
    ctx: Context, query: ProvisionQuery, reply_to: ReplyTo, vehicle: GlobalVehicle
) -> Decision | None:
    """Answer a query for a vehicle that is already bound, or None when it needs the full path."""
    if not _is_bound(vehicle):
        return None
    if vehicle["system_id"] != query.system_id:
        return Decision(outputs=[_fail(ctx, reply_to, ErrorCode.VIN_BOUND_TO_OTHER_SYSTEM,
                                       f"vin {query.vin}")])
    primary = next((d for d in vehicle["devices"]
                    if d["device_id"] == vehicle["primary_device_id"]), None)
    if query.device_id != vehicle["primary_device_id"] or (
            primary is not None and primary["ecu_type"] != query.ecu_type):
        return Decision(outputs=[_fail(ctx, reply_to, ErrorCode.FIELD_VIOLATION,
                                       "query from a non-primary device")])
    updated = copied(vehicle)
    if vehicle["state"] == State.REGIONAL:
        # The device may have missed the first answer: same regional details, no new work.
        answer = _success(ctx, reply_to, vehicle["gateway_endpoint"] or "")
        remember(updated, reply_to.message_id or "", [answer], [])
        return Decision(state=updated, outputs=[answer])
    pending = updated["pending"]
    assert pending is not None
    if not any(w["message_id"] == reply_to.message_id for w in pending["waiters"]):
        pending["waiters"].append(reply_to_dict(reply_to))
    # written even when this query already waits: see vprov.core.memo.resend
    return Decision(state=updated)


def intake(raw: bytes, source: Source, vehicle: GlobalVehicle | None, ctx: Context) -> Decision:
    """Step 1, on ``provisioning.query`` (key VIN)."""
    parsed = decode_request(
        raw, expected_type=envelope.PROVISION_QUERY, config=ctx.config, now=ctx.now_s,
        sender=source.authenticated,
    )
    if isinstance(parsed, Rejection):
        return reject(parsed, raw, source, ctx)
    query = parsed.body
    assert isinstance(query, ProvisionQuery)
    reply_to = parsed.reply_to
    if source.key is not None and source.key != query.vin.encode("utf-8"):
        return Decision(outputs=[_fail(ctx, reply_to, ErrorCode.HEADER_BODY_MISMATCH,
                                       "record key differs from the body's vin")])
    denied = check_sender(source.authenticated, allowed_device_ids={query.device_id},
                          config=ctx.config)
    if denied is not None:
        return Decision(outputs=[_fail(ctx, reply_to, ErrorCode.NOT_AUTHORIZED, denied)])
    resent = resend(vehicle, parsed.envelope.message_id)
    if resent is not None:
        return resent
    refused = _refused_after_first_boot(ctx, reply_to, vehicle, query.device_id)
    if refused is not None:
        return refused
    if vehicle is not None:
        answered = _repeat_or_wait(ctx, query, reply_to, vehicle)
        if answered is not None:
            return answered
    hop = QueryHop(query, reply_to)
    return Decision(outputs=[commands.output(ctx.topics.query_by_system, query.system_id, hop)])


def reject(rejection: Rejection, raw: bytes, source: Source, ctx: Context) -> Decision:
    """A message that failed validation: its failure answer, or a dead letter when it cannot be
    answered. Nothing else changes."""
    if rejection.reply_to is None:
        return Decision(outputs=[dead_letter(ctx, source, raw, rejection.code, rejection.detail)])
    return Decision(outputs=[
        _fail(ctx, rejection.reply_to, rejection.code, rejection.detail,
              fallback_id=source.ref, source_key=source.key)
    ])


def _to_vehicle(ctx: Context, hop: QueryHop, code: ErrorCode, detail: str) -> Output:
    failed = MatchFailed(hop.query, hop.reply_to, hop.hops, int(code), detail)
    return commands.output(ctx.topics.vehicle_commands, hop.query.vin, failed)


def match_system(hop: QueryHop, system: SystemEntry | None, ctx: Context) -> Decision:
    """Step 2, on the query-by-system topic (key system_id)."""
    query = hop.query
    if system is None:
        return Decision(outputs=[_to_vehicle(ctx, hop, ErrorCode.SYSTEM_NOT_REGISTERED,
                                             f"system_id {query.system_id}")])
    registration = system["devices"].get(query.device_id)
    if registration is None:
        return Decision(outputs=[commands.output(ctx.topics.query_by_device, query.device_id,
                                                 hop)])
    if not registration["primary"]:
        return Decision(outputs=[_to_vehicle(ctx, hop, ErrorCode.FIELD_VIOLATION,
                                             "query from a non-primary device")])
    if registration["ecu_type"] != query.ecu_type:
        return Decision(outputs=[_to_vehicle(
            ctx, hop, ErrorCode.FIELD_VIOLATION,
            f"ecu_type {query.ecu_type} differs from the registered {registration['ecu_type']}",
        )])
    matched = Matched(query, hop.reply_to, hop.hops, tuple(system["devices"].values()))
    return Decision(outputs=[commands.output(ctx.topics.vehicle_commands, query.vin, matched)])


def match_device(hop: QueryHop, registration: Registration | None, ctx: Context) -> Decision:
    """Step 2b, on the query-by-device topic (key device_id)."""
    query = hop.query
    if registration is None:
        return Decision(outputs=[_to_vehicle(ctx, hop, ErrorCode.DEVICE_NOT_REGISTERED,
                                             f"device_id {query.device_id}")])
    if registration["system_id"] != query.system_id:
        return Decision(outputs=[_to_vehicle(ctx, hop, ErrorCode.DEVICE_UNDER_OTHER_SYSTEM,
                                             f"device_id {query.device_id}")])
    # Registered under this system after step 2 looked: look once more, then give up.
    if hop.hops >= 1:
        return Decision(outputs=[_to_vehicle(ctx, hop, ErrorCode.DEVICE_NOT_REGISTERED,
                                             f"device_id {query.device_id}")])
    again = replace(hop, hops=hop.hops + 1)
    return Decision(outputs=[commands.output(ctx.topics.query_by_system, query.system_id,
                                             again)])


def choose_region(
    query: ProvisionQuery, primary: Registration | None, config: Config
) -> str | None:
    """The homing policy: a registration's pinned home region, then (when configured) the
    country's data-residency region, then the region the query asks for."""
    if primary is not None and primary.get("home_region") in config.regions:
        return primary["home_region"]
    if config.homing_by_country:
        by_country = config.region_for_country(query.country_code)
        if by_country is not None:
            return by_country
    if query.region_code in config.regions:
        return query.region_code
    return None


def _unbound(vin: str) -> GlobalVehicle:
    """The entry of a VIN no system is bound to (yet): REGISTERED, only answers remembered."""
    return {
        "vin": vin,
        "state": State.REGISTERED.value,
        "sequence": 0,
        "system_id": None,
        "sub_system_id": None,
        "primary_device_id": None,
        "devices": [],
        "country_code": None,
        "region": None,
        "gateway_endpoint": None,
        "request_id": None,
        "pending": None,
        "error_code": None,
        "memo": {},
    }


def _bind(matched: Matched, vehicle: GlobalVehicle | None) -> GlobalVehicle:
    query = matched.query
    # a device replaced before the first boot stays out, though the system's index lists it
    revoked = set(vehicle.get("revoked", ())) if vehicle else set()
    devices = sorted((d for d in matched.devices if d["device_id"] not in revoked),
                     key=lambda d: d["device_id"])
    base = copied(vehicle) if vehicle else _unbound(query.vin)
    base.update({
        "system_id": query.system_id,
        "sub_system_id": query.sub_system_id,
        "primary_device_id": query.device_id,
        "devices": devices,
        "country_code": query.country_code,
        "pending": None,
    })
    return base


def _fail_vehicle(
    ctx: Context, vehicle: GlobalVehicle, code: ErrorCode, detail: str, cause: str,
    waiters: list[ReplyTo],
) -> tuple[GlobalVehicle, list[Output]]:
    """Move the vehicle to QRY_FAIL: one lifecycle event, a failure answer to every waiter."""
    updated, failed = advance(ctx, copied(vehicle), State.QRY_FAIL, cause,
                              error_code=int(code))
    outputs = [failed]
    updated["pending"] = None
    updated["error_code"] = int(code)
    for waiter in waiters:
        answer = _fail(ctx, waiter, code, detail)
        outputs.append(answer)
        remember(updated, waiter.message_id or "", [answer], [])
    return updated, outputs


def vehicle_command(
    command: VehicleCommand, vehicle: GlobalVehicle | None, ctx: Context
) -> Decision:
    """Steps 3 and the deadline, on the vehicle-commands topic (key VIN)."""
    if isinstance(command, RehomeDeadline):
        return _deadline(command, vehicle, ctx)
    if isinstance(command, Join | Leave):
        return _membership(command, vehicle, ctx)
    reply_to = command.reply_to
    query = command.query
    message_id = reply_to.message_id or ""
    resent = resend(vehicle, message_id)
    if resent is not None:
        return resent
    if isinstance(command, MatchFailed):
        # Remembered under the VIN even when nothing is bound to it: the match step may be
        # re-delivered after a crash and, the index having caught up meanwhile, match. The
        # query must keep its first answer (SPEC 5), so that match resends this one.
        answer = _fail(ctx, reply_to, ErrorCode(command.code), command.detail)
        updated = copied(vehicle) if vehicle is not None else _unbound(query.vin)
        remember(updated, message_id, [answer], [])
        return Decision(state=updated, outputs=[answer])
    refused = _refused_after_first_boot(ctx, reply_to, vehicle, query.device_id)
    if refused is not None:
        return refused
    if vehicle is not None:
        answered = _repeat_or_wait(ctx, query, reply_to, vehicle)
        if answered is not None:
            return answered
    bound = _bind(command, vehicle)
    # The index learns the VIN: devices indexed later, or since the match, join the vehicle.
    bind = commands.output(ctx.topics.system_registrations, query.system_id,
                           Bind(bound["vin"], tuple(d["device_id"] for d in bound["devices"])))
    primary = next((d for d in bound["devices"] if d["device_id"] == query.device_id), None)
    region = choose_region(query, primary, ctx.config)
    if region is None:
        detail = f"region_code {query.region_code} (country {query.country_code})"
        failed, outputs = _fail_vehicle(ctx, bound, ErrorCode.REGION_NOT_FOUND, detail,
                                        message_id, [reply_to])
        outputs.append(bind)
        remember(failed, message_id, outputs, [])
        return Decision(state=failed, outputs=outputs)
    request_id = derive_id("rehome", bound["vin"], message_id)
    deadline_ms = ctx.now_ms + int(ctx.config.rehome_timeout_seconds * 1000)
    bound["pending"] = {
        "request_id": request_id,
        "region": region,
        "country_code": query.country_code,
        "deadline_ms": deadline_ms,
        "cause_message_id": message_id,
        "waiters": [reply_to_dict(reply_to)],
    }
    request = rehome_request(ctx, bound, "REGISTER", request_id, region, message_id, deadline_ms)
    # Remembered under the query's id: a re-delivered query re-sends the request, which the
    # region recognises by its request_id.
    remember(bound, message_id, [request, bind], [])
    return Decision(state=bound, outputs=[request, bind])


def _membership(command: Join | Leave, vehicle: GlobalVehicle | None, ctx: Context
                ) -> Decision:
    """A device registered to the vehicle's system after the bind joins it; one moved to
    another system leaves it. A rehomed vehicle (or one being rehomed) hears of it in its
    region, through the rehome topic, keyed by VIN like the REGISTER before it."""
    if vehicle is None:
        return Decision()
    cause = command.command_id
    resent = resend(vehicle, cause)
    if resent is not None:
        return resent
    device_id = command.device_id
    current = next((d for d in vehicle["devices"] if d["device_id"] == device_id), None)
    others = [d for d in vehicle["devices"] if d["device_id"] != device_id]
    change: Registration
    if isinstance(command, Join):
        reg = command.registration
        if reg["system_id"] != vehicle["system_id"] or device_id in vehicle.get("revoked", ()):
            return Decision()  # moved on since (its leave follows), or replaced
        # The vehicle keeps its primary: a late device joins as a secondary.
        change = {**reg, "primary": device_id == vehicle["primary_device_id"]}
        if current == change:
            return Decision()  # part of the vehicle already (bound with it, or joined before)
        devices = sorted([*others, change], key=lambda d: d["device_id"])
    else:
        if current is None:
            return Decision()
        devices, change = others, current
    updated = copied(vehicle)
    updated["devices"] = devices
    pending, moving = vehicle["pending"], vehicle.get("admin")
    if vehicle["state"] == State.MOVING and moving and "target" in moving:
        region: str | None = moving["target"]  # it reaches the source no more
    elif vehicle["state"] == State.REGIONAL:
        region = vehicle["region"]
    else:
        region = pending["region"] if pending else None
    outputs: list[Output] = []
    if region is not None:
        action = command.TAG.upper()
        outputs.append(rehome_request(ctx, updated, action, derive_id(command.TAG, cause),
                                       region, cause, ctx.now_ms, devices=[change]))
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def _waiters(vehicle: GlobalVehicle) -> list[ReplyTo]:
    pending: PendingRehome | None = vehicle["pending"]
    return [reply_to_from(w) for w in pending["waiters"]] if pending else []


def _give_up(ctx: Context, vehicle: GlobalVehicle, cause: str, detail: str) -> Decision:
    """QRY_FAIL with 13105, failure answers, and tell the region to undo what it did."""
    pending = vehicle["pending"]
    assert pending is not None
    failed, outputs = _fail_vehicle(ctx, vehicle, ErrorCode.REGIONAL_REGISTRATION_FAILED, detail,
                                    cause, _waiters(vehicle))
    outputs.append(rehome_request(ctx, vehicle, "CANCEL", pending["request_id"],
                                   pending["region"], cause, pending["deadline_ms"]))
    remember(failed, cause, outputs, [])
    return Decision(state=failed, outputs=outputs)


def _deadline(command: RehomeDeadline, vehicle: GlobalVehicle | None, ctx: Context
              ) -> Decision:
    command_under_way = operator_commands.pending(vehicle, command.request_id)
    if vehicle is not None and command_under_way is not None:
        return operator_commands.deadline(vehicle, command_under_way, ctx)
    if vehicle is None or vehicle["pending"] is None:
        return Decision()
    pending = vehicle["pending"]
    if pending["request_id"] != command.request_id or ctx.now_ms < pending["deadline_ms"]:
        return Decision()
    return _give_up(ctx, vehicle, f"deadline:{pending['request_id']}",
                    f"region {pending['region']} did not answer in "
                    f"{ctx.config.rehome_timeout_seconds:g}s")


def rehome_result(result: dict[str, Any], vehicle: GlobalVehicle | None, ctx: Context) -> Decision:
    """Step 4, on ``provisioning.rehome.result`` (key VIN)."""
    request_id = result["request_id"]
    outcome = result["outcome"]
    # one request of an operator's command may be answered by two regions, in turn
    step = f"rehome:{request_id}:{result['region']}:{outcome}"
    resent = resend(vehicle, step)
    if resent is not None:
        return resent
    command_under_way = operator_commands.pending(vehicle, request_id)
    if vehicle is not None and command_under_way is not None:
        return operator_commands.on_result(result, vehicle, command_under_way, ctx, step)
    cause = f"rehome:{request_id}"
    resent = resend(vehicle, cause)
    if resent is not None:
        return resent
    pending = vehicle["pending"] if vehicle else None
    if vehicle is None or pending is None or pending["request_id"] != request_id:
        if outcome == RehomeOutcome.REGISTERED and not (
                vehicle and vehicle["request_id"] == request_id):
            # The global side gave up on this request: the region must not keep the vehicle.
            late = vehicle or {**_unbound(result["vin"]), "system_id": result["system_id"],
                               "sub_system_id": "", "country_code": "",
                               "primary_device_id": ""}
            return Decision(outputs=[rehome_request(
                ctx, late, "CANCEL", request_id, result["region"], cause, ctx.now_ms)])
        return Decision()
    if outcome == RehomeOutcome.CANCELLED:
        # The answer to a CANCEL this side sent, not to the REGISTER that is pending: after a
        # crash a region's REGISTERED can come before the query that sent the REGISTER is
        # processed again; it is cancelled (above), the query sends the same REGISTER again,
        # and the region registers the vehicle again. Its REGISTERED decides.
        return Decision()
    if outcome != RehomeOutcome.REGISTERED:
        detail = result.get("error_message") or f"region {result['region']} refused"
        return _give_up(ctx, vehicle, cause, detail)
    updated, rehomed = advance(ctx, copied(vehicle), State.REGIONAL,
                               pending["cause_message_id"])
    updated.update({
        "region": result["region"],
        "gateway_endpoint": result["gateway_endpoint"],
        "request_id": request_id,
        "pending": None,
        "error_code": None,
    })
    outputs = [rehomed]
    for waiter in _waiters(vehicle):
        answer = _success(ctx, waiter, result["gateway_endpoint"])
        outputs.append(answer)
        _remember_answer(updated, waiter.message_id or "", answer, ctx)
    remember(updated, cause, outputs, [])
    return Decision(state=updated, outputs=outputs)


def _remember_answer(vehicle: GlobalVehicle, message_id: str, answer: Output, ctx: Context
                     ) -> None:
    """Remember a waiting query's answer with the bind its own step sent. A worker that died
    with the bind still in its producer, and read the region's answer before the query it had
    not committed, must send the bind again when it reads the query: without it the index never
    learns the VIN, and a device registered later never joins the vehicle. The REGISTER is not
    kept: the region has answered it."""
    recalled = recall(vehicle, message_id)
    kept = [o for o in recalled[0] if o.topic == ctx.topics.system_registrations] \
        if recalled else []
    remember(vehicle, message_id, [*kept, answer], [])
