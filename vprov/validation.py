"""The validation rules for inbound device messages (SPEC.md sections 3, 4 and 6), in one place.

``decode_request`` turns raw bytes into a ``Request`` or a ``Rejection`` and never raises on any
input. It reads what deployed edge software sends (SPEC.md 3.6, docs/wire-format.md): envelope
v1 or v2, the property bag spelt ``property_bag``/``body_encoding_type`` or
``propertyBag``/``bodyEncodingType``, time in epoch seconds or milliseconds, and the quirks of the
published DEVICE_PROVISION sample; it normalises them and refuses only what the flow cannot use.
The first failing check answers, in this order:

1. size: more than ``config.max_payload_bytes`` bytes -> 1413.
2. JSON: not UTF-8, not JSON, NaN/Infinity, a number too large for a float, an integer too long
   to parse, a duplicate key in any object (parsers disagree on which one wins, so the gateway
   and we could read different messages), nesting too deep, or a value that is not an object
   -> 13113.
3. envelope, in the table's order (absent, null and blank strings count as missing; a value of the
   wrong type or outside its alphabet is a field violation, 13122):
   message_id 1002 -> correlation_id (optional) -> version 1409 (missing or not in
   ``config.supported_versions``; "v1" and "v2" exist) -> system_id 1001 -> sub_system_id, vin
   (optional) -> device_id 1003 -> ecu_type 1004 (v1; optional in v2) -> source_id 1005 (must be
   ``c2c-edge``: only device-to-cloud messages are decoded here) -> target_id 1006 ->
   message_type 1007 (a name, or in either version an integer code, translated: 1
   PROVISION_QUERY, 3 PROVISION_QUERY_RESPONSE, 4 DEVICE_PROVISION, 6 DEVICE_PROVISION_RESPONSE;
   an unknown code fails step 5; neither a string nor an integer, a bool included, is 13122) ->
   time 1008 (an integer, not a bool; outside 0..2**63-1 is 13122; at or above
   ``MILLISECONDS_FROM`` it is milliseconds and kept as seconds) -> ttl (optional, default -1;
   -1 or 0..2**63-1, else 13122) -> status 10001 (v1; optional in v2) -> property bag 13114
   (under ``property_bag`` or ``propertyBag``: both given and different is 13122; missing, null,
   not an object, or no encoding under either ``body_encoding_type`` or ``bodyEncodingType``) ->
   body encoding 13127 (not an integer; a bool is not) / 13126 (not 0 or 1).
   The header VIN is not checked on its own ("body rules apply"): a bad one disagrees with the
   valid body VIN and ends in 13130.
4. expiry: ttl != -1 and now > time + ttl (seconds) -> 10003.
5. message type: not ``expected_type`` -> 13115.
6. body decoding -> 10000: body missing or null; encoding 0 and not an object; encoding 1 and not
   a string of strict base64 (standard alphabet, padded, no whitespace) of a UTF-8 JSON object
   (same JSON rules as step 2). Then an empty object -> 13118.
7. body fields, in SPEC order (section 3.1 or 3.3; see ``_query_body`` and ``_device_body``).
   Normalised on the way: a blank or absent body device id is the envelope's; region and country
   codes are read in any case (ASCII) and kept upper-case, their shape still checked (13122); a
   chipset id blank or absent is None (not assigned yet), a given one must be an identifier and
   unique; a numeric program_sku_id becomes a string.
8. header/body agreement -> 13130: system_id, sub_system_id, vin, device_id, ecu_type, each
   compared where the header has it. sub_system_id is not in the SPEC's list, but a response
   copies it, so a header naming another sub-system is refused rather than echoed.

The ``ReplyTo`` of a request, and of a rejection where it can be told, carries the request's
version and bag spelling so that the answer is written in the same dialect.

Who sent the message (section 6) needs the vehicle's state, so it is a separate check:
``check_sender``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Collection
from typing import Any, TypeGuard

from vprov.codes import ErrorCode
from vprov.config import COUNTRY_CODE, REGION_CODE, Config
from vprov.envelope import (
    BAG_CAMEL,
    BAG_SNAKE,
    DEVICE_PROVISION,
    MESSAGE_TYPE_NAMES,
    PROVISION_QUERY,
    SOURCE_EDGE,
    VERSION,
    VERSION_2,
    Chipset,
    DeviceProvision,
    Envelope,
    ProvisionQuery,
    Rejection,
    ReplyTo,
    Request,
)

VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # ISO 3779: no I, O, Q
VIN_LENGTH = 17
IDENTIFIER_ALPHABET = "letters, digits, '-', '_', '.'"
MAX_LEN: dict[str, int] = {
    "system_id": 23,
    "sub_system_id": 23,
    "device_id": 19,
    "message_id": 64,
    "correlation_id": 64,
    "ecu_type": 32,
    "chipset_id": 64,
}
MAX_INT64 = 2**63 - 1  # time and ttl travel on in Avro longs
# A time at or above this is epoch milliseconds, below it epoch seconds. As seconds it would be
# the year 5138; as milliseconds it is 1973-03-03: no real message is ambiguous.
MILLISECONDS_FROM = 10**11

_VIN = re.compile(f"[{VIN_ALPHABET}]{{{VIN_LENGTH}}}").fullmatch
_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]+").fullmatch
# Same shapes the configuration accepts for region and country codes (vprov.config).
_REGION_CODE = REGION_CODE.fullmatch
_COUNTRY_CODE = COUNTRY_CODE.fullmatch

_E = ErrorCode


def is_valid_vin(vin: object) -> TypeGuard[str]:
    """17 characters of the ISO 3779 alphabet (no check digit: not every market uses one)."""
    return isinstance(vin, str) and _VIN(vin) is not None


def is_valid_identifier(value: object, max_len: int) -> TypeGuard[str]:
    """1..max_len ASCII letters, digits, '-', '_' or '.'."""
    return isinstance(value, str) and len(value) <= max_len and _IDENTIFIER(value) is not None


def check_sender(
    authenticated: str | bytes | None, *, allowed_device_ids: Collection[str], config: Config
) -> str | None:
    """SPEC.md section 6: None when the sender may act, else why not (answer with code 1401).

    ``authenticated`` is the value of the ``config.authenticated_header`` Kafka header (bytes as
    read from the record, or already decoded), None when the record has no such header.
    ``allowed_device_ids``: the message's device id (query), or the vehicle's device ids (device
    provisioning: secondary devices talk through the primary's connection).
    The reason is a detail for ``Rejection``/``message_for(ErrorCode.NOT_AUTHORIZED, ...)``.
    """
    if isinstance(allowed_device_ids, str):
        # "in" on a string matches substrings: a device id would authorize its prefixes.
        raise TypeError("allowed_device_ids must be a collection of device ids, not a str")
    header = config.authenticated_header
    if authenticated is None:
        return f"{header} header missing" if config.require_authenticated_header else None
    if isinstance(authenticated, bytes):
        try:
            authenticated = authenticated.decode("utf-8")
        except UnicodeDecodeError:
            return f"{header} header is not UTF-8"
    # A present but empty header names nobody: refused like a wrong name.
    if authenticated and authenticated in allowed_device_ids:
        return None
    # The value is echoed only when it is a plain identifier (it ends up in logs and answers).
    who = authenticated if is_valid_identifier(authenticated, MAX_LEN["device_id"]) else "?"
    return f"{header} {who} is not a device of this message or vehicle"


class _Fail(Exception):
    """Internal: the first failed check; ``decode_request`` turns it into a ``Rejection``."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        self.code = code
        self.detail = detail


class _DuplicateKey(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey("duplicate key in an object")
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e400 is JSON but parses to inf, which no strict JSON encoder downstream can write back.
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


# One decoder built once: json.loads with options would build a new one per call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_constant=_reject_constant, parse_float=_finite_float
)


def _parse_json(raw: bytes | str) -> Any:
    """Parse JSON or raise ValueError/RecursionError."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return _DECODER.decode(text)


def _json_failure(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nesting too deep"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc)[:200]


# --- field helpers: each returns the value or raises _Fail --------------------------------------


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _identifier(value: object, field: str, missing: ErrorCode, max_len: int) -> str:
    if type(value) is str and len(value) <= max_len and _IDENTIFIER(value):
        return value
    raise _identifier_failure(value, field, missing, max_len)


def _identifier_failure(value: object, field: str, missing: ErrorCode, max_len: int) -> _Fail:
    if _blank(value):
        return _Fail(missing, field)
    return _Fail(_E.FIELD_VIOLATION, f"{field}: {IDENTIFIER_ALPHABET} only, at most {max_len}")


def _optional_identifier(value: object, field: str, max_len: int) -> str | None:
    if _blank(value):
        return None
    return _identifier(value, field, _E.FIELD_VIOLATION, max_len)


def _text(value: object, field: str, missing: ErrorCode) -> str:
    if type(value) is str and value.strip():
        return value
    if _blank(value):
        raise _Fail(missing, field)
    raise _Fail(_E.FIELD_VIOLATION, f"{field}: not a string")


def _int64(value: int, field: str, low: int) -> int:
    if low <= value <= MAX_INT64:
        return value
    raise _Fail(_E.FIELD_VIOLATION, f"{field}: out of range")


def _one_of(snake: object, camel: object, field: str) -> object:
    """A value that may come under its snake-case or its camelCase name; both given: they agree.

    Compared with their types: 1 and true are equal in Python, not in JSON.
    """
    if snake is None:
        return camel
    if camel is not None and (type(snake) is not type(camel) or snake != camel):
        raise _Fail(_E.FIELD_VIOLATION, f"{field}: the two spellings differ")
    return snake


def _bag_spelling(doc: dict[str, Any]) -> str:
    """The key the request's property bag came under; snake case unless only camelCase is used."""
    if doc.get(BAG_SNAKE) is None and doc.get(BAG_CAMEL) is not None:
        return BAG_CAMEL
    return BAG_SNAKE


def _message_type(value: object) -> str:
    """The type's name: a string as given, an integer code translated (either version may use
    either form). An unknown code keeps its digits, so the type check answers it with 13115."""
    if type(value) is int:  # not bool
        return MESSAGE_TYPE_NAMES.get(value) or str(value)
    if type(value) is str and value.strip():
        return value
    if _blank(value):
        raise _Fail(_E.MESSAGE_TYPE_MISSING, "message_type")
    raise _Fail(_E.FIELD_VIOLATION, "message_type: not a string or an integer code")


def _seconds(time: int) -> int:
    """Epoch seconds from a time in seconds or in milliseconds (see ``MILLISECONDS_FROM``)."""
    return time // 1000 if time >= MILLISECONDS_FROM else time


def _envelope(doc: dict[str, Any], config: Config) -> Envelope:
    get = doc.get
    message_id = _identifier(
        get("message_id"), "message_id", _E.MESSAGE_ID_MISSING, MAX_LEN["message_id"]
    )
    correlation_id = _optional_identifier(
        get("correlation_id"), "correlation_id", MAX_LEN["correlation_id"]
    )
    version = get("version")
    if type(version) is not str or version not in config.supported_versions:
        raise _Fail(_E.VERSION_UNSUPPORTED, "version")
    v1 = version == VERSION  # v2 has no ecu_type or status in its header (nor a vin)
    system_id = _identifier(
        get("system_id"), "system_id", _E.SYSTEM_ID_MISSING, MAX_LEN["system_id"]
    )
    sub_system_id = _optional_identifier(
        get("sub_system_id"), "sub_system_id", MAX_LEN["sub_system_id"]
    )
    vin = get("vin")
    if _blank(vin):
        vin = None
    elif type(vin) is not str:
        raise _Fail(_E.FIELD_VIOLATION, "vin: not a string")
    device_id = _identifier(
        get("device_id"), "device_id", _E.DEVICE_ID_MISSING, MAX_LEN["device_id"]
    )
    ecu_type: str | None
    if v1:
        ecu_type = _identifier(
            get("ecu_type"), "ecu_type", _E.ECU_TYPE_MISSING, MAX_LEN["ecu_type"]
        )
    else:
        ecu_type = _optional_identifier(get("ecu_type"), "ecu_type", MAX_LEN["ecu_type"])
    source_id = _text(get("source_id"), "source_id", _E.SOURCE_ID_MISSING)
    if source_id != SOURCE_EDGE:
        raise _Fail(_E.FIELD_VIOLATION, f"source_id: must be {SOURCE_EDGE}")
    target_id = _text(get("target_id"), "target_id", _E.TARGET_ID_MISSING)
    message_type = _message_type(get("message_type"))
    time = get("time")
    if type(time) is not int:  # also refuses bool, an int subclass
        raise _Fail(_E.TIME_MISSING, "time")
    _int64(time, "time", 0)
    ttl = get("ttl")
    if ttl is None:
        ttl = -1
    elif type(ttl) is not int:
        raise _Fail(_E.FIELD_VIOLATION, "ttl: not an integer")
    else:
        _int64(ttl, "ttl", -1)
    status = get("status")
    if v1:
        status = _text(status, "status", _E.STATUS_MISSING)
    elif _blank(status):
        status = None
    elif type(status) is not str:
        raise _Fail(_E.FIELD_VIOLATION, "status: not a string")
    bag = _one_of(get(BAG_SNAKE), get(BAG_CAMEL), BAG_SNAKE)
    if type(bag) is not dict:
        raise _Fail(_E.PROPERTY_BAG_MISSING, "property_bag.body_encoding_type")
    field = "property_bag.body_encoding_type"
    encoding = _one_of(bag.get("body_encoding_type"), bag.get("bodyEncodingType"), field)
    if encoding is None:
        raise _Fail(_E.PROPERTY_BAG_MISSING, "property_bag.body_encoding_type")
    if type(encoding) is not int:
        raise _Fail(_E.BODY_ENCODING_NOT_INTEGER, "property_bag.body_encoding_type")
    if encoding != 0 and encoding != 1:
        raise _Fail(_E.BODY_ENCODING_UNSUPPORTED, "property_bag.body_encoding_type")
    return Envelope(
        message_id=message_id,
        correlation_id=correlation_id,
        version=version,
        system_id=system_id,
        sub_system_id=sub_system_id,
        vin=vin,
        device_id=device_id,
        ecu_type=ecu_type,
        source_id=source_id,
        target_id=target_id,
        message_type=message_type,
        time=_seconds(time),
        ttl=ttl,
        status=status,
        body_encoding_type=encoding,
        property_bag=bag,
        bag_spelling=_bag_spelling(doc),
    )


def _body_object(doc: dict[str, Any], encoding: int) -> Any:
    """The body as parsed JSON (any type), or raise ValueError/RecursionError/_Fail."""
    body = doc.get("body")
    if body is None:
        raise _Fail(_E.BODY_MISSING, "body")
    if encoding == 0:
        return body
    if type(body) is not str:
        raise _Fail(_E.BODY_MISSING, "body: encoding 1 needs a base64 string")
    return _parse_json(base64.b64decode(body, validate=True))


def _decode_body(doc: dict[str, Any], encoding: int) -> dict[str, Any]:
    try:
        body = _body_object(doc, encoding)
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise _Fail(_E.BODY_MISSING, "body: not base64 of a UTF-8 JSON object") from None
    if type(body) is not dict:
        raise _Fail(_E.BODY_MISSING, "body: not a JSON object")
    if not body:
        raise _Fail(_E.BODY_EMPTY, "body")
    return body


# --- body fields --------------------------------------------------------------------------------


def _either(first: object, second: object, conflict: str) -> object:
    """A value that may come under two names or places; when both are given they must agree."""
    if _blank(first):
        return second
    if not _blank(second) and first != second:
        raise _Fail(_E.FIELD_VIOLATION, conflict)
    return first


def _body_device_id(body: dict[str, Any], envelope: Envelope) -> str:
    """deviceId (3.1) and device_id (3.3) are both accepted in both messages. Blank or absent in
    the body (the published sample sends ""), the envelope's device id stands."""
    value = _either(
        body.get("deviceId"), body.get("device_id"), "body.deviceId: differs from device_id"
    )
    if _blank(value):
        return envelope.device_id
    return _identifier(value, "body.device_id", _E.FIELD_VIOLATION, MAX_LEN["device_id"])


def _ecu_type(value: object, config: Config, missing: ErrorCode) -> str:
    ecu_type = _identifier(value, "body.ecu_type", missing, MAX_LEN["ecu_type"])
    if ecu_type not in config.ecu_states:
        raise _Fail(_E.FIELD_VIOLATION, f"body.ecu_type: unknown ECU type {ecu_type}")
    return ecu_type


def _code(value: object, shape: Callable[[str], object]) -> str | None:
    """A region or country code in any case, upper-cased; None when it has not the shape.

    ASCII only before upper-casing: str.upper() maps "ß" to "SS" and "ı" to "I".
    """
    if type(value) is not str or not value.isascii():
        return None
    code = value.upper()
    return code if shape(code) else None


def _region_info(
    value: object, region_missing: ErrorCode, country_missing: ErrorCode
) -> tuple[str, str]:
    # A region_info that is not an object carries no codes: reported as the codes missing.
    info = value if type(value) is dict else {}
    region, country = info.get("region_code"), info.get("country_code")
    if _blank(region):
        raise _Fail(region_missing, "body.region_info.region_code")
    region = _code(region, _REGION_CODE)
    if region is None:
        raise _Fail(_E.FIELD_VIOLATION, "body.region_info.region_code: 2-8 letters or digits")
    if _blank(country):
        raise _Fail(country_missing, "body.region_info.country_code")
    country = _code(country, _COUNTRY_CODE)
    if country is None:
        raise _Fail(_E.FIELD_VIOLATION, "body.region_info.country_code: ISO 3166 alpha-2")
    return region, country


def _query_body(body: dict[str, Any], envelope: Envelope, config: Config) -> ProvisionQuery:
    """SPEC 3.1, in its order; every field is mandatory (13129), except the VIN's own 13101 and
    the device id, which defaults to the envelope's."""
    missing = _E.QUERY_FIELD_MISSING
    get = body.get
    system_id = _identifier(get("system_id"), "body.system_id", missing, MAX_LEN["system_id"])
    sub_system_id = _identifier(
        get("sub_system_id"), "body.sub_system_id", missing, MAX_LEN["sub_system_id"]
    )
    vin = get("vin")
    if not is_valid_vin(vin):
        raise _Fail(_E.QUERY_VIN_INVALID, "body.vin")
    device_id = _body_device_id(body, envelope)
    ecu_type = _ecu_type(get("ecu_type"), config, missing)
    primary = get("primary")
    if primary is None:
        raise _Fail(missing, "body.primary")
    if type(primary) is not bool:
        raise _Fail(_E.FIELD_VIOLATION, "body.primary: not a boolean")
    if not primary:
        raise _Fail(_E.FIELD_VIOLATION, "body.primary: a query must come from the primary device")
    region_code, country_code = _region_info(get("region_info"), missing, missing)
    return ProvisionQuery(
        system_id=system_id,
        sub_system_id=sub_system_id,
        vin=vin,
        device_id=device_id,
        ecu_type=ecu_type,
        primary=primary,
        region_code=region_code,
        country_code=country_code,
    )


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _optional(value: object, kind: type, field: str, default: Any = None) -> Any:
    if value is None:
        return default
    if type(value) is not kind:
        raise _Fail(_E.FIELD_VIOLATION, f"{field}: not {_JSON_NAMES[kind]}")
    return value


# Chipset's optional text fields, in its constructor's order after ``id``; program_sku_id last.
_CHIPSET_TEXT = ("name", "type", "state", "version", "sw_version", "hw_version", "program_sku_id")


def _chipsets(value: object, count: int) -> tuple[Chipset, ...]:
    items = _optional(value, list, "body.chipsets", [])
    if len(items) != count:
        raise _Fail(_E.CHIPSETS_COUNT_MISMATCH, f"body.chipsets: {len(items)} != {count}")
    max_len = MAX_LEN["chipset_id"]
    chipsets = []
    seen: set[str] = set()
    # Per-message hot loop: field names for details are built only on failure.
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise _Fail(_E.FIELD_VIOLATION, f"body.chipsets[{index}]: not an object")
        chip_id = item.get("id")
        if _blank(chip_id):
            chip_id = None  # not assigned yet: onboarding gives it one
        elif not is_valid_identifier(chip_id, max_len):
            raise _Fail(
                _E.FIELD_VIOLATION,
                f"body.chipsets[{index}].id: {IDENTIFIER_ALPHABET} only, at most {max_len}",
            )
        elif chip_id in seen:
            raise _Fail(_E.FIELD_VIOLATION, f"body.chipsets[{index}].id: duplicate {chip_id}")
        else:
            seen.add(chip_id)
        text = [item.get(key) for key in _CHIPSET_TEXT]
        if type(text[-1]) is int:  # program_sku_id: the published sample sends a number
            text[-1] = str(text[-1])
        for key, found in zip(_CHIPSET_TEXT, text, strict=True):
            if found is not None and type(found) is not str:
                raise _Fail(_E.FIELD_VIOLATION, f"body.chipsets[{index}].{key}: not a string")
        chipsets.append(Chipset(chip_id, *text))
    return tuple(chipsets)


def _device_body(body: dict[str, Any], envelope: Envelope, config: Config) -> DeviceProvision:
    """SPEC 3.3, in its order. system_id missing answers as in the envelope (1001), and so does
    ecu_type (1004), taken from device_info or else the top level; a blank device_id is the
    envelope's.
    """
    get = body.get
    system_id = _identifier(
        get("system_id"), "body.system_id", _E.SYSTEM_ID_MISSING, MAX_LEN["system_id"]
    )
    sub_system_id = _identifier(
        get("sub_system_id"),
        "body.sub_system_id",
        _E.SUB_SYSTEM_ID_MISSING,
        MAX_LEN["sub_system_id"],
    )
    vin = get("vin")
    if not is_valid_vin(vin):
        raise _Fail(_E.VIN_INVALID, "body.vin")
    vehicle_info = get("vehicle_info")
    if type(vehicle_info) is not dict:
        raise _Fail(_E.VEHICLE_INFO_MISSING, "body.vehicle_info")
    device_id = _body_device_id(body, envelope)
    info = _optional(get("device_info"), dict, "body.device_info", {})
    ecu_type = _ecu_type(
        _either(info.get("ecu_type"), get("ecu_type"), "body.ecu_type: differs in device_info"),
        config,
        _E.ECU_TYPE_MISSING,
    )
    primary = _optional(
        _either(info.get("primary"), get("primary"), "body.primary: differs in device_info"),
        bool,
        "body.device_info.primary",
        False,
    )
    ecu_model = _optional(info.get("ecu_model"), str, "body.device_info.ecu_model")
    ecu_make = _optional(info.get("ecu_make"), str, "body.device_info.ecu_make")
    count = get("chipsets_count")
    if count is None:
        raise _Fail(_E.CHIPSETS_COUNT_MISSING, "body.chipsets_count")
    if type(count) is not int or count < 0:
        raise _Fail(_E.FIELD_VIOLATION, "body.chipsets_count: not a non-negative integer")
    chipsets = _chipsets(get("chipsets"), count)
    region_code, country_code = _region_info(
        get("region_info"), _E.REGION_CODE_MISSING, _E.COUNTRY_CODE_MISSING
    )
    return DeviceProvision(
        system_id=system_id,
        sub_system_id=sub_system_id,
        vin=vin,
        device_id=device_id,
        ecu_type=ecu_type,
        primary=primary,
        ecu_model=ecu_model,
        ecu_make=ecu_make,
        vehicle_info=vehicle_info,
        chipsets_count=count,
        chipsets=chipsets,
        region_code=region_code,
        country_code=country_code,
        sim_info=_optional(get("SIMInfo"), dict, "body.SIMInfo", {}),
        communication_channel=_optional(
            get("communication_channel"), list, "body.communication_channel", []
        ),
        configuration=_optional(get("configuration"), dict, "body.configuration", {}),
        privacy_flag=_optional(get("privacyFlag"), bool, "body.privacyFlag", False),
    )


_BodyParser = Callable[[dict[str, Any], Envelope, Config], ProvisionQuery | DeviceProvision]
_BODY_PARSERS: dict[str, _BodyParser] = {
    PROVISION_QUERY: _query_body,
    DEVICE_PROVISION: _device_body,
}


def _check_agreement(envelope: Envelope, body: ProvisionQuery | DeviceProvision) -> None:
    for field, header, inner in (
        ("system_id", envelope.system_id, body.system_id),
        ("sub_system_id", envelope.sub_system_id, body.sub_system_id),
        ("vin", envelope.vin, body.vin),
        ("device_id", envelope.device_id, body.device_id),
        ("ecu_type", envelope.ecu_type, body.ecu_type),
    ):
        if header is not None and header != inner:
            raise _Fail(_E.HEADER_BODY_MISMATCH, field)


# --- whom to answer -----------------------------------------------------------------------------


def _first_known(field: str, *values: object) -> str | None:
    for value in values:
        if is_valid_identifier(value, MAX_LEN[field]):
            return value
    return None


def _peek_body(doc: dict[str, Any], encoding: int) -> dict[str, Any]:
    """Best effort, for answering a rejection: the body as an object, else {}."""
    try:
        body = _body_object(doc, encoding)
    except (_Fail, ValueError, RecursionError):
        return {}
    return body if type(body) is dict else {}


def _rejected_reply_to(doc: object, body: dict[str, Any] | None) -> ReplyTo | None:
    """Whom to answer about a rejected message: None when no usable device id is known."""
    if type(doc) is not dict:
        return None
    bag_spelling = _bag_spelling(doc)
    bag = doc.get(bag_spelling)
    encoding = None
    if type(bag) is dict:
        encoding = bag.get("body_encoding_type")
        if encoding is None:
            encoding = bag.get("bodyEncodingType")
    if type(encoding) is not int or encoding not in (0, 1):
        encoding = 0
    if body is None:
        body = _peek_body(doc, encoding)
    info = body.get("device_info")
    nested_ecu = info.get("ecu_type") if type(info) is dict else None
    device_id = _first_known(
        "device_id", doc.get("device_id"), body.get("deviceId"), body.get("device_id")
    )
    if device_id is None:
        return None
    vin = next((v for v in (doc.get("vin"), body.get("vin")) if is_valid_vin(v)), None)
    return ReplyTo(
        message_id=_first_known("message_id", doc.get("message_id")),
        system_id=_first_known("system_id", doc.get("system_id"), body.get("system_id")),
        sub_system_id=_first_known(
            "sub_system_id", doc.get("sub_system_id"), body.get("sub_system_id")
        ),
        vin=vin,
        device_id=device_id,
        ecu_type=_first_known("ecu_type", doc.get("ecu_type"), nested_ecu, body.get("ecu_type")),
        body_encoding_type=encoding,
        # Answered in v2 when the request says so, even where v2 is not supported (1409): a
        # device that writes v2 reads v2.
        version=VERSION_2 if doc.get("version") == VERSION_2 else VERSION,
        bag_spelling=bag_spelling,
    )


def decode_request(
    raw: bytes, *, expected_type: str, config: Config, now: int
) -> Request | Rejection:
    """Validate one inbound message (order in the module docstring); never raises on ``raw``.

    ``expected_type`` is the topic's message type: ``PROVISION_QUERY`` or ``DEVICE_PROVISION``
    (anything else is a programming error: ValueError). ``now``: epoch seconds, for the ttl.
    """
    parse_body = _BODY_PARSERS.get(expected_type)
    if parse_body is None:
        raise ValueError(f"expected_type must be {PROVISION_QUERY} or {DEVICE_PROVISION}")
    doc: Any = None
    body: dict[str, Any] | None = None
    try:
        if isinstance(raw, bytearray | memoryview):
            raw = bytes(raw)
        elif isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        elif not isinstance(raw, bytes):
            raise _Fail(_E.NOT_JSON, f"not bytes but {type(raw).__name__}")
        if len(raw) > config.max_payload_bytes:
            raise _Fail(_E.PAYLOAD_TOO_LARGE, f"{len(raw)} bytes > {config.max_payload_bytes}")
        try:
            doc = _parse_json(raw)
        except (ValueError, RecursionError) as exc:
            raise _Fail(_E.NOT_JSON, _json_failure(exc)) from None
        if type(doc) is not dict:
            raise _Fail(_E.NOT_JSON, "not a JSON object")
        envelope = _envelope(doc, config)
        if envelope.ttl != -1 and now > envelope.time + envelope.ttl:
            raise _Fail(
                _E.MESSAGE_EXPIRED, f"time {envelope.time} + ttl {envelope.ttl} < now {now}"
            )
        if envelope.message_type != expected_type:
            raise _Fail(_E.WRONG_MESSAGE_TYPE, f"message_type: expected {expected_type}")
        body = _decode_body(doc, envelope.body_encoding_type)
        parsed = parse_body(body, envelope, config)
        _check_agreement(envelope, parsed)
    except _Fail as fail:
        return Rejection(code=fail.code, detail=fail.detail, reply_to=_rejected_reply_to(doc, body))
    reply_to = ReplyTo(
        message_id=envelope.message_id,
        system_id=envelope.system_id,
        sub_system_id=parsed.sub_system_id,
        vin=parsed.vin,
        device_id=envelope.device_id,
        ecu_type=parsed.ecu_type,  # the header's when it has one (they agree), v2's from the body
        body_encoding_type=envelope.body_encoding_type,
        version=envelope.version,
        bag_spelling=envelope.bag_spelling,
    )
    return Request(envelope=envelope, body=parsed, reply_to=reply_to)
