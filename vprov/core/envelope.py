"""The device JSON envelope (docs/spec.md section 3): the decoded shapes and the encoders.

Decoding and validating an inbound request is ``vprov.flows.validation.decode_request``; this
module holds
what it produces (``Request`` or ``Rejection``) and builds the messages the cloud sends back
(``build_response``), plus the two helpers devices and tests use (``build_request``,
``parse_response``).

Encoded output is compact JSON with sorted keys, ASCII only (so valid UTF-8): equal inputs give
equal bytes whatever the insertion order of the dicts passed in, so a repeated request can be
answered with byte-identical output (docs/spec.md section 5).

Two envelope versions exist (SPEC section 3.6, docs/wire-format.md): ``v1`` names the message
type and carries vin, ecu_type and status in the header; ``v2`` carries an integer message type
code and none of those three. The property bag may be spelt ``property_bag`` or ``propertyBag``.
An answer uses the request's version and bag spelling, both kept in ``ReplyTo``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from vprov.core.codes import ErrorCode, message_for
from vprov.core.plain import scalar_fields

PROVISION_QUERY = "PROVISION_QUERY"
PROVISION_QUERY_RESPONSE = "PROVISION_QUERY_RESPONSE"
DEVICE_PROVISION = "DEVICE_PROVISION"
DEVICE_PROVISION_RESPONSE = "DEVICE_PROVISION_RESPONSE"

SOURCE_EDGE = "c2c-edge"
SOURCE_CLOUD = "c2c-cloud"

VERSION = "v1"
VERSION_2 = "v2"
VERSIONS = (VERSION, VERSION_2)  # the envelope shapes this module reads and writes

# v2 message type codes (published envelope page); only the provisioning ones are used here.
MESSAGE_TYPE_CODES: dict[str, int] = {
    PROVISION_QUERY: 1,
    PROVISION_QUERY_RESPONSE: 3,
    DEVICE_PROVISION: 4,
    DEVICE_PROVISION_RESPONSE: 6,
}
MESSAGE_TYPE_NAMES: dict[int, str] = {code: name for name, code in MESSAGE_TYPE_CODES.items()}

# The two spellings of the property bag: bag key -> keys inside it.
BAG_SNAKE = "property_bag"
BAG_CAMEL = "propertyBag"
BAG_KEYS: dict[str, tuple[str, str, str]] = {
    BAG_SNAKE: ("body_encoding_type", "error_code", "error_message"),
    BAG_CAMEL: ("bodyEncodingType", "errorCode", "errorMessage"),
}

STATUS_SUBMIT = "SUBMIT"
STATUS_SUCCESS = "SUCCESS"
STATUS_FAIL = "FAIL"
NEVER_EXPIRES = -1

BODY_JSON = 0
BODY_BASE64 = 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """A fully validated envelope; ``vin``, ``sub_system_id``: None when the header omits them,
    and in ``v2`` so may ``ecu_type`` and ``status``. ``message_type`` is always the type's name
    (a v2 code is translated), ``time`` always epoch seconds (milliseconds are converted).
    ``bag_spelling``: the key the property bag came under (``BAG_SNAKE`` or ``BAG_CAMEL``).
    """

    message_id: str
    correlation_id: str | None
    version: str
    system_id: str
    sub_system_id: str | None
    vin: str | None
    device_id: str
    ecu_type: str | None
    source_id: str
    target_id: str
    message_type: str
    time: int
    ttl: int
    status: str | None
    body_encoding_type: int
    property_bag: dict
    bag_spelling: str = BAG_SNAKE


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
    id: str | None  # None: not assigned yet (the device sends it blank until onboarding)
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
    ``body_encoding_type`` is 0 when the request's was unknown or invalid. ``version`` and
    ``bag_spelling`` make the answer speak the request's dialect; they have defaults so that
    reply-to records stored before they existed still load.
    """

    message_id: str | None
    system_id: str | None
    sub_system_id: str | None
    vin: str | None
    device_id: str
    ecu_type: str | None
    body_encoding_type: int
    version: str = VERSION
    bag_spelling: str = BAG_SNAKE
    # The authenticated device that sent the request (the gateway's header), if one did: the
    # answer carries it in the same header, so a bridge gives the answer to the connection the
    # request came from (a secondary device talks through its primary's).
    sender: str | None = None


def reply_to_json(reply_to: ReplyTo) -> dict[str, Any]:
    """A reply-to as JSON (internal topics, table entries); without ``sender`` when there is
    none, as before it existed."""
    doc = scalar_fields(reply_to)
    if doc["sender"] is None:
        del doc["sender"]
    return doc


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


def _bag_keys(bag_spelling: str) -> tuple[str, str, str]:
    try:
        return BAG_KEYS[bag_spelling]
    except KeyError:
        raise ValueError(f"bag_spelling must be {BAG_SNAKE} or {BAG_CAMEL}") from None


def _wire_type(message_type: str | int, version: str) -> str | int:
    """The message type as the version writes it: v1 the name, v2 the integer code."""
    if version == VERSION:
        return message_type
    if version != VERSION_2:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}, not {version!r}")
    if type(message_type) is int:
        return message_type
    try:
        # (ignore: ``type(...) is int`` above leaves a name, which mypy does not narrow)
        return MESSAGE_TYPE_CODES[message_type]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"message type {message_type!r} has no v2 code") from None


def build_response(
    reply_to: ReplyTo,
    *,
    message_type: str,
    message_id: str,
    now: int,
    body: dict,
    error: tuple[int, str] | None = None,
) -> bytes:
    """The answer to a request (docs/spec.md section 3.5); ``error`` is (code, message) on failure.

    It speaks the request's dialect: ``reply_to.version`` and ``reply_to.bag_spelling``. A v2
    answer has an integer message type and no vin, ecu_type or status in its header; the outcome
    is then in the property bag's error code and message and in the body's lifecycle state.
    """
    encoding_key, code_key, message_key = _bag_keys(reply_to.bag_spelling)
    wire_type = _wire_type(message_type, reply_to.version)
    property_bag: dict[str, Any] = {encoding_key: reply_to.body_encoding_type}
    if error is not None:
        property_bag[code_key] = int(error[0])
        property_bag[message_key] = error[1]
    doc: dict[str, Any] = {
        "message_id": message_id,
        "correlation_id": reply_to.message_id,
        "version": reply_to.version,
        "system_id": reply_to.system_id,
        "sub_system_id": reply_to.sub_system_id,
        "device_id": reply_to.device_id,
        "source_id": SOURCE_CLOUD,
        "target_id": SOURCE_EDGE,
        "message_type": wire_type,
        "time": now,
        "ttl": NEVER_EXPIRES,
        reply_to.bag_spelling: property_bag,
        "body": _encode_body(body, reply_to.body_encoding_type),
    }
    if reply_to.version == VERSION:
        doc["vin"] = reply_to.vin
        doc["ecu_type"] = reply_to.ecu_type
        doc["status"] = STATUS_SUCCESS if error is None else STATUS_FAIL
    return _dumps(doc)


# The error code of a response, found without parsing it. ``build_response`` writes compact JSON,
# where a key is a quote, the name, a quote and a colon, and a quote inside a string value is
# escaped: only the property bag's error code key can match.
_ERROR_CODE = re.compile(
    '"(?:' + "|".join(keys[1] for keys in BAG_KEYS.values()) + r')":(-?\d+)'
)


def response_error_code(payload: str) -> int | None:
    """The error code of a response built by ``build_response``, None for a success. Cheap
    enough for the workers' hot path (one regular expression search, no JSON decoding)."""
    found = _ERROR_CODE.search(payload)
    return int(found.group(1)) if found else None


def query_response_body(gateway_endpoint: str, lifecycle_state: str) -> dict:
    """PROVISION_QUERY_RESPONSE body (docs/spec.md 3.2); the misspelt names are the wire format."""
    return {
        "iot_gateway_endpoint": gateway_endpoint,
        "smqendpoint": "",
        "otaendoint": "",
        "lifecyclestate": lifecycle_state,
    }


def device_response_body(lifecycle_state: str) -> dict:
    """DEVICE_PROVISION_RESPONSE body (docs/spec.md 3.4); the misspelt name is the wire format."""
    return {"lifecycyclestate": lifecycle_state}


def build_request(
    *,
    message_type: str | int,
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
    version: str = VERSION,
    bag_spelling: str = BAG_SNAKE,
) -> bytes:
    """A request as an edge device sends it (for simulators and tests).

    ``version`` ``v2`` writes the message type as its code (a name is translated, an int is
    written as given) and leaves ``vin``, ``ecu_type`` and ``status`` out of the header: the body
    carries them. ``bag_spelling`` ``propertyBag`` writes ``propertyBag``/``bodyEncodingType``.
    ``now`` is written as given (epoch seconds, or milliseconds: the decoder tells them apart).
    """
    encoding_key = _bag_keys(bag_spelling)[0]
    doc: dict[str, Any] = {
        "message_id": message_id,
        "version": version,
        "system_id": system_id,
        "sub_system_id": sub_system_id,
        "device_id": device_id,
        "source_id": source_id,
        "target_id": target_id,
        "message_type": _wire_type(message_type, version),
        "time": now,
        "ttl": ttl,
        bag_spelling: {encoding_key: body_encoding_type},
        "body": _encode_body(body, body_encoding_type),
    }
    if version == VERSION:
        doc.update(vin=vin, ecu_type=ecu_type, status=STATUS_SUBMIT)
    return _dumps(doc)


def _response_bag(doc: dict) -> dict:
    """The property bag under either spelling, its keys in snake case."""
    for bag_spelling in (BAG_SNAKE, BAG_CAMEL):
        bag = doc.get(bag_spelling)
        if isinstance(bag, dict):
            names = zip(BAG_KEYS[bag_spelling], BAG_KEYS[BAG_SNAKE], strict=True)
            return {snake: bag[key] for key, snake in names if key in bag}
    return {}


def parse_response(raw: bytes, *, normalise: bool = False) -> dict:
    """A response as a dict, its ``body`` decoded to a dict whatever the encoding.

    Reads both versions and both bag spellings. As sent by default (so a test can check the
    dialect of the answer); ``normalise=True`` also puts the bag under ``property_bag`` with
    snake-case keys (``body_encoding_type``, ``error_code``, ``error_message``) and turns a v2
    message type code into its name.
    For clients and tests, not the hot path: malformed input raises ``ValueError``.
    """
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("response is not a JSON object")
    bag = _response_bag(doc)
    body = doc.get("body")
    if bag.get("body_encoding_type") == BODY_BASE64:
        if not isinstance(body, str):
            raise ValueError("body_encoding_type 1 needs a base64 string body")
        body = json.loads(base64.b64decode(body, validate=True))  # binascii.Error is a ValueError
    if not isinstance(body, dict):
        raise ValueError("response body is not a JSON object")
    parsed = {**doc, "body": body}
    if normalise:
        parsed.pop(BAG_CAMEL, None)
        parsed[BAG_SNAKE] = bag
        message_type = doc.get("message_type")
        if type(message_type) is int:
            parsed["message_type"] = MESSAGE_TYPE_NAMES.get(message_type, message_type)
    return parsed
