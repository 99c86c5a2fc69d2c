"""What every flow step shares: the standard records (failure answers, dead letters, a region's
rehome results); lifecycle events are built by ``vprov.flows.lifecycle.advance``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from vprov.core import envelope
from vprov.core.codes import ErrorCode, message_for
from vprov.core.envelope import ReplyTo
from vprov.core.ids import derive_id
from vprov.core.outputs import Output, event, reply
from vprov.flows.context import Context, Source
from vprov.flows.lifecycle import State


class RehomeOutcome(StrEnum):
    """``RehomeResult.outcome``: what the region did with a rehome request."""

    REGISTERED = "REGISTERED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    # after the first boot (docs/after-first-boot.md)
    EXPORTED = "EXPORTED"
    REPLACED = "REPLACED"
    DECOMMISSIONED = "DECOMMISSIONED"


def reply_to_dict(reply_to: ReplyTo) -> dict[str, Any]:
    return envelope.reply_to_json(reply_to)


def reply_to_from(data: dict[str, Any]) -> ReplyTo:
    return ReplyTo(**data)


def response_id(reply_to: ReplyTo, fallback: str) -> str:
    """Deterministic id of the answer to a request: the same request gets the same answer id."""
    return derive_id("response", reply_to.message_id or fallback)


def reply_key(reply_to: ReplyTo, source_key: bytes | None = None) -> str:
    """Answers are keyed by VIN; a request without a usable VIN is answered under its record key
    or, last, its device id, so that it is still answered."""
    if reply_to.vin:
        return reply_to.vin
    if source_key:
        return source_key.decode("utf-8", errors="replace")
    return reply_to.device_id


def failure_reply(
    ctx: Context,
    *,
    topic: str,
    reply_to: ReplyTo,
    response_type: str,
    code: ErrorCode,
    detail: str | None,
    fallback_id: str,
    source_key: bytes | None = None,
) -> Output:
    if response_type == envelope.PROVISION_QUERY_RESPONSE:
        body = envelope.query_response_body("", State.QRY_FAIL.value)
    else:
        body = envelope.device_response_body(State.PROV_FAIL.value)
    payload = envelope.build_response(
        reply_to,
        message_type=response_type,
        message_id=response_id(reply_to, fallback_id),
        now=ctx.now_s,
        body=body,
        error=(int(code), message_for(code, detail)),
    )
    return reply(topic, reply_key(reply_to, source_key), payload, to=reply_to.sender)


def success_reply(
    ctx: Context, *, topic: str, reply_to: ReplyTo, response_type: str, body: dict[str, Any]
) -> Output:
    payload = envelope.build_response(
        reply_to,
        message_type=response_type,
        message_id=response_id(reply_to, ""),
        now=ctx.now_s,
        body=body,
    )
    return reply(topic, reply_key(reply_to), payload, to=reply_to.sender)


def dead_letter(
    ctx: Context, source: Source, raw: bytes, code: ErrorCode, detail: str | None
) -> Output:
    value = {
        "dead_letter_id": derive_id("deadletter", source.ref),
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "key": source.key,
        "payload": raw,
        "error_code": int(code),
        "error_message": message_for(code, detail),
        "received_at": ctx.now_ms,
    }
    key = source.key.decode("utf-8", errors="replace") if source.key else ""
    return event(ctx.topics.deadletter, key, "DeadLetter", value)


def rehome_result(ctx: Context, request: dict[str, Any], region: str, outcome: RehomeOutcome,
                  endpoint: str = "", error: tuple[int, str] | None = None,
                  sequence: int | None = None, snapshot: str | None = None) -> Output:
    """The region's answer to ``request`` (Avro ``RehomeResult``)."""
    value = {
        "request_id": request["request_id"],
        "vin": request["vin"],
        "system_id": request["system_id"],
        "region": region,
        "outcome": outcome.value,
        "gateway_endpoint": endpoint,
        "error_code": error[0] if error else None,
        "error_message": error[1] if error else None,
        "completed_at": ctx.now_ms,
        "sequence": sequence,
        "snapshot": snapshot,
    }
    return event(ctx.topics.rehome_result, request["vin"], "RehomeResult", value)


def primary_identity(request: dict[str, Any]) -> dict[str, str]:
    """The regional gateway identity of the request's primary device."""
    primary = next(
        (d for d in request["devices"] if d["device_id"] == request["primary_device_id"]), None
    )
    return device_identity(request, primary)


def device_identity(vehicle: Any, device: Any) -> dict[str, str]:
    """A device's gateway identity attributes (``device``: a record with its ECU type and
    certificate fingerprint, or None)."""
    attrs = {"system_id": vehicle["system_id"], "vin": vehicle["vin"]}
    if device is not None:
        attrs["certificate_fingerprint"] = device["certificate_fingerprint"]
        attrs["ecu_type"] = device["ecu_type"]
    return attrs


def rehome_request(ctx: Context, vehicle: Any, action: str, request_id: str, region: str,
                   cause: str, deadline_ms: int, devices: list[Any] | None = None, *,
                   sequence: int | None = None, move_policy: str | None = None,
                   snapshot: str | None = None) -> Output:
    """A request to the region (Avro ``RehomeRequest``) about ``vehicle`` (a global entry):
    REGISTER carries the vehicle's devices, the others those in ``devices`` (CANCEL none).
    ``sequence``: the request's sequence field, the one the region's entry takes (default: the
    one the REGIONAL event of a first boot will carry, the entry's next)."""
    if devices is None:
        devices = vehicle["devices"] if action == "REGISTER" else []
    value = {
        "request_id": request_id,
        "action": action,
        "vin": vehicle["vin"],
        "system_id": vehicle["system_id"],
        "sub_system_id": vehicle["sub_system_id"] or "",
        "region": region,
        "country_code": vehicle["country_code"] or "",
        "primary_device_id": vehicle["primary_device_id"] or "",
        "devices": [
            {
                "device_id": d["device_id"],
                "ecu_type": d["ecu_type"],
                "primary": d["primary"],
                "certificate_fingerprint": d["certificate_fingerprint"],
            }
            for d in devices
        ],
        "cause_message_id": cause,
        # the sequence the REGIONAL event will carry; the region numbers on from it
        "sequence": vehicle["sequence"] + 1 if sequence is None else sequence,
        "requested_at": ctx.now_ms,
        "deadline_at": deadline_ms,
        "move_policy": move_policy,
        "snapshot": snapshot,
    }
    return event(ctx.topics.rehome(region), vehicle["vin"], "RehomeRequest", value)
