"""The device JSON envelope (SPEC.md section 3): the decoded shapes and the encoders.

Decoding and validating an inbound request is ``vprov.validation.decode_request``; this module holds
what it produces (``Request`` or ``Rejection``) and builds the messages the cloud sends back
(``build_response``), plus the two helpers devices and tests use (``build_request``,
``parse_response``).

Encoded output is compact JSON with sorted keys, ASCII only (so valid UTF-8): equal inputs give
equal bytes whatever the insertion order of the dicts passed in, so a repeated request can be
answered with byte-identical output (SPEC.md section 5).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from vprov.codes import ErrorCode, message_for

PROVISION_QUERY = "PROVISION_QUERY"
PROVISION_QUERY_RESPONSE = "PROVISION_QUERY_RESPONSE"
DEVICE_PROVISION = "DEVICE_PROVISION"
DEVICE_PROVISION_RESPONSE = "DEVICE_PROVISION_RESPONSE"

SOURCE_EDGE = "c2c-edge"
SOURCE_CLOUD = "c2c-cloud"

VERSION = "v1"
STATUS_SUBMIT = "SUBMIT"
STATUS_SUCCESS = "SUCCESS"
STATUS_FAIL = "FAIL"
NEVER_EXPIRES = -1

BODY_JSON = 0
BODY_BASE64 = 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """A fully validated envelope; ``vin``, ``sub_system_id``: None when the header omits them."""

    message_id: str
    correlation_id: str | None
    version: str
    system_id: str
    sub_system_id: str | None
    vin: str | None
    device_id: str
    ecu_type: str
    source_id: str
    target_id: str
    message_type: str
    time: int
    ttl: int
    status: str
    body_encoding_type: int
    property_bag: dict


@dataclass(frozen=True, slots=True)
class ProvisionQuery:
    system_id: str
    sub_system_id: str
    vin: str
    device_id: str
    ecu_type: str
    primary: bool
    region_code: str
    country_code: str


@dataclass(frozen=True, slots=True)
class Chipset:
    id: str
    name: str | None
    type: str | None
    state: str | None
    version: str | None
    sw_version: str | None
    hw_version: str | None
    program_sku_id: str | None


@dataclass(frozen=True, slots=True)
class DeviceProvision:
    system_id: str
    sub_system_id: str
    vin: str
    device_id: str
    ecu_type: str
    primary: bool
    ecu_model: str | None
    ecu_make: str | None
    vehicle_info: dict
    chipsets_count: int
    chipsets: tuple[Chipset, ...]
    region_code: str
    country_code: str
    sim_info: dict
    communication_channel: list
    configuration: dict
    privacy_flag: bool


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """What is known of a request, enough to answer it (also of a rejected one).

    Every value has passed its field's syntax rule, so an answer never echoes junk back.
    ``body_encoding_type`` is 0 when the request's was unknown or invalid.
    """

    message_id: str | None
    system_id: str | None
    sub_system_id: str | None
    vin: str | None
    device_id: str
    ecu_type: str | None
    body_encoding_type: int


@dataclass(frozen=True, slots=True)
class Request:
    envelope: Envelope
    body: ProvisionQuery | DeviceProvision
    reply_to: ReplyTo


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request that failed validation; ``reply_to`` None: it cannot be answered (dead-letter)."""

    code: ErrorCode
    detail: str
    reply_to: ReplyTo | None

    @property
    def message(self) -> str:
        return message_for(self.code, self.detail)


def _dumps(doc: Any) -> bytes:
    # allow_nan=False: NaN/Infinity are not JSON and edge parsers reject them.
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("ascii")


def _encode_body(body: dict, body_encoding_type: int) -> dict | str:
    if body_encoding_type == BODY_JSON:
        return body
    if body_encoding_type == BODY_BASE64:
        return base64.b64encode(_dumps(body)).decode("ascii")
    raise ValueError(f"body_encoding_type must be 0 or 1, not {body_encoding_type!r}")


def build_response(
    reply_to: ReplyTo,
    *,
    message_type: str,
    message_id: str,
    now: int,
    body: dict,
    error: tuple[int, str] | None = None,
) -> bytes:
    """The answer to a request (SPEC.md section 3.5); ``error`` is (code, message) on failure."""
    property_bag: dict[str, Any] = {"body_encoding_type": reply_to.body_encoding_type}
    if error is not None:
        property_bag["error_code"] = int(error[0])
        property_bag["error_message"] = error[1]
    return _dumps(
        {
            "message_id": message_id,
            "correlation_id": reply_to.message_id,
            "version": VERSION,
            "system_id": reply_to.system_id,
            "sub_system_id": reply_to.sub_system_id,
            "vin": reply_to.vin,
            "device_id": reply_to.device_id,
            "ecu_type": reply_to.ecu_type,
            "source_id": SOURCE_CLOUD,
            "target_id": SOURCE_EDGE,
            "message_type": message_type,
            "time": now,
            "ttl": NEVER_EXPIRES,
            "status": STATUS_SUCCESS if error is None else STATUS_FAIL,
            "property_bag": property_bag,
            "body": _encode_body(body, reply_to.body_encoding_type),
        }
    )


def query_response_body(gateway_endpoint: str, lifecycle_state: str) -> dict:
    """PROVISION_QUERY_RESPONSE body (SPEC.md 3.2); the misspelt names are the wire format."""
    return {
        "iot_gateway_endpoint": gateway_endpoint,
        "smqendpoint": "",
        "otaendoint": "",
        "lifecyclestate": lifecycle_state,
    }


def device_response_body(lifecycle_state: str) -> dict:
    """DEVICE_PROVISION_RESPONSE body (SPEC.md 3.4); the misspelt name is the wire format."""
    return {"lifecycyclestate": lifecycle_state}


def build_request(
    *,
    message_type: str,
    message_id: str,
    system_id: str,
    sub_system_id: str,
    vin: str,
    device_id: str,
    ecu_type: str,
    body: dict,
    now: int,
    ttl: int = NEVER_EXPIRES,
    body_encoding_type: int = BODY_JSON,
    source_id: str = SOURCE_EDGE,
    target_id: str = SOURCE_CLOUD,
) -> bytes:
    """A request as an edge device sends it (for simulators and tests)."""
    return _dumps(
        {
            "message_id": message_id,
            "version": VERSION,
            "system_id": system_id,
            "sub_system_id": sub_system_id,
            "vin": vin,
            "device_id": device_id,
            "ecu_type": ecu_type,
            "source_id": source_id,
            "target_id": target_id,
            "message_type": message_type,
            "time": now,
            "ttl": ttl,
            "status": STATUS_SUBMIT,
            "property_bag": {"body_encoding_type": body_encoding_type},
            "body": _encode_body(body, body_encoding_type),
        }
    )


def parse_response(raw: bytes) -> dict:
    """A response as a dict, its ``body`` decoded to a dict whatever the encoding.

    For clients and tests, not the hot path: malformed input raises ``ValueError``.
    """
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("response is not a JSON object")
    bag = doc.get("property_bag")
    encoding = bag.get("body_encoding_type") if isinstance(bag, dict) else None
    body = doc.get("body")
    if encoding == BODY_BASE64:
        if not isinstance(body, str):
            raise ValueError("body_encoding_type 1 needs a base64 string body")
        body = json.loads(base64.b64decode(body, validate=True))  # binascii.Error is a ValueError
    if not isinstance(body, dict):
        raise ValueError("response body is not a JSON object")
    return {**doc, "body": body}
