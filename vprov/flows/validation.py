"""The validation rules for inbound device messages (SPEC sections 3, 4 and 6), in one place.

``decode_request`` turns raw bytes into a ``Request`` or a ``Rejection`` and never raises on any
input. It reads what deployed edge software sends (docs/spec.md 3.6, docs/wire-format.md): envelope
v1 or v2, the property bag spelt ``property_bag``/``body_encoding_type`` or
``propertyBag``/``bodyEncodingType``, time in epoch seconds or milliseconds, and the quirks of the
published DEVICE_PROVISION sample; it normalises them and refuses only what the flow cannot use.
The first failing check answers, in this order:

1. size: more than ``config.max_payload_bytes`` bytes -> 1413.
2. JSON: not UTF-8, not JSON, NaN/Infinity, a number too large for a float, an integer too long
   to parse, a duplicate key in any object (parsers disagree on which one wins, so the gateway
   and we could read different messages), nesting too deep, or a value that is not an object
   -> 13113.
3. envelope: the rows of ``_ENVELOPE``, in order (SPEC section 3).
4. expiry: ttl != -1 and now > time + ttl (seconds) -> 10003.
5. message type: not ``expected_type`` -> 13115.
6. body decoding -> 10000: body missing or null; encoding 0 and not an object; encoding 1 and not
   a string of strict base64 (standard alphabet, padded, no whitespace) of a UTF-8 JSON object
   (same JSON rules as step 2). Then an empty object -> 13118.
7. body fields: the rows of ``_QUERY`` or ``_DEVICE``, in order (SPEC section 3.1 or 3.3).
8. header/body agreement -> 13130: the fields of ``_AGREEMENT``, where the header has them.

Each table row names a field, its check and its code when missing; the check answers anything
else (13122 unless it says otherwise) and normalises the value it keeps.

The ``ReplyTo`` of a request, and of a rejection where it can be told, carries the request's
version and bag spelling so that the answer is written in the same dialect.

Who sent the message (section 6) needs the vehicle's state, so it is a separate check:
``check_sender``.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from vprov.config import COUNTRY_CODE, REGION_CODE, Config
from vprov.core.codes import ErrorCode
from vprov.core.envelope import (
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
    """docs/spec.md section 6: None when the sender may act, else why not (answer with code 1401).

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


# --- the rule engine ------------------------------------------------------------------------------

# A check's verdict: no usable value. The rule's ``missing`` code answers, or it keeps ``default``.
_MISSING: Any = object()


@dataclass(slots=True)
class _Reading:
    """What a check sees besides its value: the object a table reads, the prefix of its fields in
    details, the configuration, for a body the envelope, and the values kept so far by name."""

    obj: dict[str, Any]
    prefix: str
    config: Config
    envelope: Envelope | None = None
    kept: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Any, "Rule", _Reading], Any]


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of a table: read ``key``, ``check`` it, keep the result under ``name``.

    ``key`` is a name in the object, or "outer.inner" inside the value of ``outer`` (the one kept
    by an earlier rule if there is one; one that is not an object holds nothing). The check
    returns the value to keep or ``_MISSING``, or raises ``_Fail``. ``_MISSING`` answers with
    ``missing``, or keeps ``default`` when that is None or, with ``v1_only``, outside envelope v1.
    Details name the field as the key with the table's prefix ("body.").
    """

    key: str
    check: Check
    missing: ErrorCode | None = None
    default: Any = None
    name: str = ""  # the keyword it is kept as; the key's last part by default
    keep: bool = True  # False: checked only
    v1_only: bool = False
    outer: str = field(init=False)
    inner: str = field(init=False)

    def __post_init__(self) -> None:
        outer, _, inner = self.key.partition(".")
        object.__setattr__(self, "outer", outer)
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "name", self.name or inner or outer)


def _apply(rules: tuple[Rule, ...], reading: _Reading) -> dict[str, Any]:
    """The values ``rules`` keep, run in order; the first failure raises ``_Fail``."""
    obj, kept = reading.obj, reading.kept
    for rule in rules:
        if rule.inner:
            outer = kept[rule.outer] if rule.outer in kept else obj.get(rule.outer)
            value = outer.get(rule.inner) if type(outer) is dict else None
        else:
            value = obj.get(rule.key)
        value = rule.check(value, rule, reading)
        if value is _MISSING:
            if rule.missing is not None and not (rule.v1_only and kept["version"] != VERSION):
                raise _Fail(rule.missing, reading.prefix + rule.key)
            value = copy.copy(rule.default)  # a default {} or [] of its own for each message
        if rule.keep:
            kept[rule.name] = value
    return kept


def _violation(rule: Rule, reading: _Reading, why: str) -> _Fail:
    return _Fail(_E.FIELD_VIOLATION, f"{reading.prefix}{rule.key}: {why}")


# --- the checks -----------------------------------------------------------------------------------


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _identifier(value: Any, rule: Rule, reading: _Reading) -> Any:
    """``MAX_LEN[name]`` characters at most of the identifier alphabet."""
    max_len = MAX_LEN[rule.name]
    if type(value) is str and len(value) <= max_len and _IDENTIFIER(value):
        return value
    if _blank(value):
        return _MISSING
    raise _violation(rule, reading, f"{IDENTIFIER_ALPHABET} only, at most {max_len}")


def _text(value: Any, rule: Rule, reading: _Reading) -> Any:
    if type(value) is str and value.strip():
        return value
    if _blank(value):
        return _MISSING
    raise _violation(rule, reading, "not a string")


def _of(kind: type) -> Check:
    """A value of one JSON type, or absent (null)."""
    what = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}[kind]

    def check(value: Any, rule: Rule, reading: _Reading) -> Any:
        if value is None or type(value) is kind:
            return _MISSING if value is None else value
        raise _violation(rule, reading, f"not {what}")

    return check


_OBJECT, _ARRAY, _STRING, _BOOLEAN = (_of(kind) for kind in (dict, list, str, bool))


def _any_object(value: Any, rule: Rule, reading: _Reading) -> Any:
    """An object, and anything else counts as missing."""
    return value if type(value) is dict else _MISSING


def _vin(value: Any, rule: Rule, reading: _Reading) -> Any:
    """A VIN of the wrong shape answers as a missing one (its own code)."""
    return value if is_valid_vin(value) else _MISSING


def _version(value: Any, rule: Rule, reading: _Reading) -> Any:
    """Missing or not in ``config.supported_versions`` (exact, lower case) alike."""
    return value if type(value) is str and value in reading.config.supported_versions else _MISSING


def _edge(value: Any, rule: Rule, reading: _Reading) -> Any:
    """Only device-to-cloud messages are decoded here."""
    value = _text(value, rule, reading)
    if value is not _MISSING and value != SOURCE_EDGE:
        raise _violation(rule, reading, f"must be {SOURCE_EDGE}")
    return value


def _message_type(value: Any, rule: Rule, reading: _Reading) -> Any:
    """The type's name: a string as given, an integer code translated (either version may use
    either form). An unknown code keeps its digits, so the type check answers it with 13115."""
    if type(value) is int:  # not bool
        return MESSAGE_TYPE_NAMES.get(value) or str(value)
    if type(value) is str and value.strip():
        return value
    if _blank(value):
        return _MISSING
    raise _violation(rule, reading, "not a string or an integer code")


def _time(value: Any, rule: Rule, reading: _Reading) -> Any:
    """Epoch seconds from seconds or milliseconds (``MILLISECONDS_FROM``); not an integer, a bool
    included: missing."""
    if type(value) is not int:
        return _MISSING
    if not 0 <= value <= MAX_INT64:
        raise _violation(rule, reading, "out of range")
    return value // 1000 if value >= MILLISECONDS_FROM else value


def _ttl(value: Any, rule: Rule, reading: _Reading) -> Any:
    """-1 (never expires) or seconds; absent: never expires."""
    if value is None:
        return _MISSING
    if type(value) is not int:
        raise _violation(rule, reading, "not an integer")
    if not -1 <= value <= MAX_INT64:
        raise _violation(rule, reading, "out of range")
    return value


def _one_of(snake: object, camel: object, field: str) -> object:
    """A value that may come under its snake-case or its camelCase name; both given: they agree.

    Compared with their types: 1 and true are equal in Python, not in JSON.
    """
    if snake is None:
        return camel
    if camel is not None and (type(snake) is not type(camel) or snake != camel):
        raise _Fail(_E.FIELD_VIOLATION, f"{field}: the two spellings differ")
    return snake


def _bag(value: Any, rule: Rule, reading: _Reading) -> Any:
    """Under ``property_bag`` or ``propertyBag``. One that is not an object holds no encoding:
    the next rule answers that (13114)."""
    bag = _one_of(value, reading.obj.get(BAG_CAMEL), BAG_SNAKE)
    return bag if type(bag) is dict else {}


def _encoding(value: Any, rule: Rule, reading: _Reading) -> Any:
    """``body_encoding_type`` or ``bodyEncodingType``: 0 (JSON) or 1 (base64 of JSON)."""
    path = reading.prefix + rule.key
    value = _one_of(value, reading.kept[BAG_SNAKE].get("bodyEncodingType"), path)
    if value is None:
        return _MISSING
    if type(value) is not int:  # also refuses bool, an int subclass
        raise _Fail(_E.BODY_ENCODING_NOT_INTEGER, path)
    if value != 0 and value != 1:
        raise _Fail(_E.BODY_ENCODING_UNSUPPORTED, path)
    return value


def _either(first: object, second: object, conflict: str) -> object:
    """A value that may come under two names or places; when both are given they must agree."""
    if _blank(first):
        return second
    if not _blank(second) and first != second:
        raise _Fail(_E.FIELD_VIOLATION, conflict)
    return first


def _body_device_id(value: Any, rule: Rule, reading: _Reading) -> Any:
    """deviceId (3.1) and device_id (3.3) are both accepted in both messages. Blank or absent in
    the body (the published sample sends ""), the envelope's device id stands."""
    value = _either(reading.obj.get("deviceId"), value, "body.deviceId: differs from device_id")
    assert reading.envelope is not None  # a body's table
    return reading.envelope.device_id if _blank(value) else _identifier(value, rule, reading)


def _ecu_type(value: Any, rule: Rule, reading: _Reading) -> Any:
    """An identifier naming a configured ECU type."""
    value = _identifier(value, rule, reading)
    if value is not _MISSING and value not in reading.config.ecu_states:
        raise _violation(rule, reading, f"unknown ECU type {value}")
    return value


def _device_ecu_type(value: Any, rule: Rule, reading: _Reading) -> Any:
    """In device_info or at the top level of the body."""
    nested = (reading.obj.get("device_info") or {}).get("ecu_type")  # an object or null
    return _ecu_type(_either(nested, value, "body.ecu_type: differs in device_info"), rule, reading)


def _device_primary(value: Any, rule: Rule, reading: _Reading) -> Any:
    """In device_info or at the top level of the body."""
    value = _either(value, reading.obj.get("primary"), "body.primary: differs in device_info")
    return _BOOLEAN(value, rule, reading)


def _query_primary(value: Any, rule: Rule, reading: _Reading) -> Any:
    if value is None:
        return _MISSING
    if type(value) is not bool:
        raise _violation(rule, reading, "not a boolean")
    if not value:
        raise _violation(rule, reading, "a query must come from the primary device")
    return value


def _code(shape: Callable[[str], object], why: str) -> Check:
    """A region or country code in any case, kept upper-case.

    ASCII only before upper-casing: str.upper() maps "ß" to "SS" and "ı" to "I".
    """

    def check(value: Any, rule: Rule, reading: _Reading) -> Any:
        if _blank(value):
            return _MISSING
        if type(value) is str and value.isascii() and shape(value.upper()):
            return value.upper()
        raise _violation(rule, reading, why)

    return check


_REGION = _code(_REGION_CODE, "2-8 letters or digits")
_COUNTRY = _code(_COUNTRY_CODE, "ISO 3166 alpha-2")


def _count(value: Any, rule: Rule, reading: _Reading) -> Any:
    if value is None:
        return _MISSING
    if type(value) is not int or value < 0:
        raise _violation(rule, reading, "not a non-negative integer")
    return value


# Chipset's optional text fields, in its constructor's order after ``id``; program_sku_id last.
_CHIPSET_TEXT = ("name", "type", "state", "version", "sw_version", "hw_version", "program_sku_id")


def _chipsets(value: Any, rule: Rule, reading: _Reading) -> Any:
    """As many as chipsets_count. A blank or absent id is None (onboarding assigns one), a given
    one an identifier, unique; a numeric program_sku_id (the published sample) becomes a string."""
    items = [] if value is None else _ARRAY(value, rule, reading)
    count = reading.kept["chipsets_count"]
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
            chip_id = None
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
        if type(text[-1]) is int:
            text[-1] = str(text[-1])
        for key, found in zip(_CHIPSET_TEXT, text, strict=True):
            if found is not None and type(found) is not str:
                raise _Fail(_E.FIELD_VIOLATION, f"body.chipsets[{index}].{key}: not a string")
        chipsets.append(Chipset(chip_id, *text))
    return tuple(chipsets)


# --- the tables: SPEC order; the first failing row answers ---------------------------------------

# The envelope (SPEC 3): absent, null and blank strings are missing; a value of the wrong type or
# outside its alphabet is a field violation (13122). v2 has no ecu_type or status in its header.
# The header VIN is not checked on its own ("body rules apply"): a bad one disagrees with the
# valid body VIN and ends in 13130.
_ENVELOPE = (
    Rule("message_id", _identifier, _E.MESSAGE_ID_MISSING),
    Rule("correlation_id", _identifier),
    Rule("version", _version, _E.VERSION_UNSUPPORTED),
    Rule("system_id", _identifier, _E.SYSTEM_ID_MISSING),
    Rule("sub_system_id", _identifier),
    Rule("vin", _text),
    Rule("device_id", _identifier, _E.DEVICE_ID_MISSING),
    Rule("ecu_type", _identifier, _E.ECU_TYPE_MISSING, v1_only=True),
    Rule("source_id", _edge, _E.SOURCE_ID_MISSING),
    Rule("target_id", _text, _E.TARGET_ID_MISSING),
    Rule("message_type", _message_type, _E.MESSAGE_TYPE_MISSING),
    Rule("time", _time, _E.TIME_MISSING),
    Rule("ttl", _ttl, default=-1),
    Rule("status", _text, _E.STATUS_MISSING, v1_only=True),
    Rule(BAG_SNAKE, _bag),
    Rule(f"{BAG_SNAKE}.body_encoding_type", _encoding, _E.PROPERTY_BAG_MISSING),
)

# PROVISION_QUERY (SPEC 3.1): every field is mandatory (13129), except the VIN's own 13101 and the
# device id, which defaults to the envelope's.
_QUERY = (
    Rule("system_id", _identifier, _E.QUERY_FIELD_MISSING),
    Rule("sub_system_id", _identifier, _E.QUERY_FIELD_MISSING),
    Rule("vin", _vin, _E.QUERY_VIN_INVALID),
    Rule("device_id", _body_device_id),
    Rule("ecu_type", _ecu_type, _E.QUERY_FIELD_MISSING),
    Rule("primary", _query_primary, _E.QUERY_FIELD_MISSING),
    Rule("region_info.region_code", _REGION, _E.QUERY_FIELD_MISSING),
    Rule("region_info.country_code", _COUNTRY, _E.QUERY_FIELD_MISSING),
)

# DEVICE_PROVISION (SPEC 3.3): system_id and ecu_type missing answer as in the envelope.
_DEVICE = (
    Rule("system_id", _identifier, _E.SYSTEM_ID_MISSING),
    Rule("sub_system_id", _identifier, _E.SUB_SYSTEM_ID_MISSING),
    Rule("vin", _vin, _E.VIN_INVALID),
    Rule("vehicle_info", _any_object, _E.VEHICLE_INFO_MISSING),
    Rule("device_id", _body_device_id),
    Rule("device_info", _OBJECT, keep=False),  # holds the next four
    Rule("ecu_type", _device_ecu_type, _E.ECU_TYPE_MISSING),
    Rule("device_info.primary", _device_primary, default=False),
    Rule("device_info.ecu_model", _STRING),
    Rule("device_info.ecu_make", _STRING),
    Rule("chipsets_count", _count, _E.CHIPSETS_COUNT_MISSING),
    Rule("chipsets", _chipsets),
    Rule("region_info.region_code", _REGION, _E.REGION_CODE_MISSING),
    Rule("region_info.country_code", _COUNTRY, _E.COUNTRY_CODE_MISSING),
    Rule("SIMInfo", _OBJECT, default={}, name="sim_info"),
    Rule("communication_channel", _ARRAY, default=[]),
    Rule("configuration", _OBJECT, default={}),
    Rule("privacyFlag", _BOOLEAN, default=False, name="privacy_flag"),
)

# Header and body agree (13130) where the header has the field. sub_system_id is not in the SPEC's
# list, but a response copies it, so a header naming another sub-system is refused, not echoed.
_AGREEMENT = ("system_id", "sub_system_id", "vin", "device_id", "ecu_type")


_BODIES: dict[str, tuple[tuple[Rule, ...], Callable[..., ProvisionQuery | DeviceProvision]]] = {
    PROVISION_QUERY: (_QUERY, ProvisionQuery),
    DEVICE_PROVISION: (_DEVICE, DeviceProvision),
}


def _check_agreement(envelope: Envelope, body: ProvisionQuery | DeviceProvision) -> None:
    for name in _AGREEMENT:
        header = getattr(envelope, name)
        if header is not None and header != getattr(body, name):
            raise _Fail(_E.HEADER_BODY_MISMATCH, name)


def _bag_spelling(doc: dict[str, Any]) -> str:
    """The key the request's property bag came under; snake case unless only camelCase is used."""
    if doc.get(BAG_SNAKE) is None and doc.get(BAG_CAMEL) is not None:
        return BAG_CAMEL
    return BAG_SNAKE


# --- the body -------------------------------------------------------------------------------------


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


def _declared_encoding(doc: dict[str, Any]) -> int:
    """Best effort: the body encoding the property bag declares, 0 when it declares none."""
    bag = doc.get(_bag_spelling(doc))
    encoding = None
    if type(bag) is dict:
        encoding = bag.get("body_encoding_type")
        if encoding is None:
            encoding = bag.get("bodyEncodingType")
    return encoding if type(encoding) is int and encoding in (0, 1) else 0


def _rejected_reply_to(doc: object, body: dict[str, Any] | None) -> ReplyTo | None:
    """Whom to answer about a rejected message: None when no usable device id is known."""
    if type(doc) is not dict:
        return None
    bag_spelling = _bag_spelling(doc)
    encoding = _declared_encoding(doc)
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
    raw: bytes, *, expected_type: str, config: Config, now: int, sender: str | None = None
) -> Request | Rejection:
    """Validate one inbound message (order in the module docstring); never raises on ``raw``.

    ``expected_type`` is the topic's message type: ``PROVISION_QUERY`` or ``DEVICE_PROVISION``
    (anything else is a programming error: ValueError). ``now``: epoch seconds, for the ttl.
    ``sender``: the authenticated device that sent it (the gateway's header), kept in the
    reply-to so that the answer goes back to it.
    """
    if expected_type not in _BODIES:
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
        kept = _apply(_ENVELOPE, _Reading(doc, "", config))
        envelope = Envelope(**kept, bag_spelling=_bag_spelling(doc))
        if envelope.ttl != -1 and now > envelope.time + envelope.ttl:
            raise _Fail(
                _E.MESSAGE_EXPIRED, f"time {envelope.time} + ttl {envelope.ttl} < now {now}"
            )
        if envelope.message_type != expected_type:
            raise _Fail(_E.WRONG_MESSAGE_TYPE, f"message_type: expected {expected_type}")
        body = _decode_body(doc, envelope.body_encoding_type)
        rules, build = _BODIES[expected_type]
        kept = _apply(rules, _Reading(body, "body.", config, envelope))
        parsed = build(**kept)
        _check_agreement(envelope, parsed)
    except _Fail as fail:
        rejected = _rejected_reply_to(doc, body)
        if rejected is not None and sender is not None:
            rejected = replace(rejected, sender=sender)
        return Rejection(code=fail.code, detail=fail.detail, reply_to=rejected)
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
        sender=sender,
    )
    return Request(envelope=envelope, body=parsed, reply_to=reply_to)


# --- where a request belongs ----------------------------------------------------------------------


def routing_vin(raw: bytes | None, *, max_payload_bytes: int) -> str | None:
    """The VIN a request belongs to, for routing it to the partition that holds its vehicle: the
    body's VIN, else the v1 header's; None when neither is a valid VIN. Never raises on ``raw``.

    A record's Kafka key is only a routing hint: a gateway forwarding v2 messages (whose header
    has no VIN) keys by what it has, a device or client id, or nothing. The request is routed by
    what it says; ``decode_request`` then judges it in full where it lands.
    """
    if not raw or len(raw) > max_payload_bytes:
        return None
    try:
        doc = _parse_json(raw)
    except (ValueError, RecursionError):
        return None
    if type(doc) is not dict:
        return None
    body = _peek_body(doc, _declared_encoding(doc))
    return next((v for v in (body.get("vin"), doc.get("vin")) if is_valid_vin(v)), None)
