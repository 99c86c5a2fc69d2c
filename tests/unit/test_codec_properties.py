"""Properties of the codec over arbitrary and mutated inputs (13,000 examples in all).

Whatever the bytes, ``decode_request`` yields a ``Request`` or a ``Rejection`` whose code is in the
one table; an answerable rejection can be answered; a valid message built with ``build_request``
(v1 or v2, either bag spelling, time in seconds or milliseconds, the published quirks of
docs/spec.md 3.6) decodes to exactly the fields it was built from, normalised.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vprov.config import load
from vprov.core.codes import ErrorCode
from vprov.core.envelope import (
    DEVICE_PROVISION,
    PROVISION_QUERY,
    PROVISION_QUERY_RESPONSE,
    Chipset,
    DeviceProvision,
    Envelope,
    ProvisionQuery,
    Rejection,
    ReplyTo,
    Request,
    build_request,
    build_response,
    parse_response,
)
from vprov.flows.validation import MAX_LEN, VIN_ALPHABET, decode_request, is_valid_identifier

CONFIG = load(env={})
NOW = 1_700_000_000
MAX_INT64 = 2**63 - 1
KINDS = (PROVISION_QUERY, DEVICE_PROVISION)
ENVELOPE_KEYS = (
    "message_id", "correlation_id", "version", "system_id", "sub_system_id", "vin", "device_id",
    "ecu_type", "source_id", "target_id", "message_type", "time", "ttl", "status",
    "property_bag", "body",
)  # fmt: skip
CHIPSET_TEXT = ("name", "type", "state", "version", "sw_version", "hw_version", "program_sku_id")


def examples(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def check(result: object) -> None:
    """What must hold for any input."""
    assert isinstance(result, Request | Rejection), result
    reply_to = result.reply_to
    if isinstance(result, Rejection):
        assert isinstance(result.code, ErrorCode)
        assert isinstance(result.detail, str) and isinstance(result.message, str)
        error: tuple[int, str] | None = (result.code, result.message)
        if reply_to is None:
            return
    else:
        error = None
    assert is_valid_identifier(reply_to.device_id, MAX_LEN["device_id"])
    assert reply_to.body_encoding_type in (0, 1)
    assert reply_to.version in ("v1", "v2")
    assert reply_to.bag_spelling in ("property_bag", "propertyBag")
    # A type with a v2 code: the answer may be in v2.
    answer = build_response(
        reply_to, message_type=PROVISION_QUERY_RESPONSE, message_id="a", now=NOW,
        body={"k": "v"}, error=error,
    )
    assert parse_response(answer)["body"] == {"k": "v"}


def decode_any(raw: bytes) -> None:
    for kind in KINDS:
        check(decode_request(raw, expected_type=kind, config=CONFIG, now=NOW))


# --- strategies --------------------------------------------------------------------------------


UPPER = string.ascii_uppercase
IDENTIFIER_CHARS = string.ascii_letters + string.digits + "-_."


def identifiers(max_len: int) -> st.SearchStrategy[str]:
    # st.text over an alphabet: several times faster to draw than st.from_regex.
    return st.text(alphabet=IDENTIFIER_CHARS, min_size=1, max_size=max_len)


VINS = st.text(alphabet=VIN_ALPHABET, min_size=17, max_size=17)
REGIONS = st.builds(
    str.__add__,
    st.sampled_from(UPPER),
    st.text(alphabet=UPPER + string.digits, min_size=1, max_size=7),
)
COUNTRIES = st.text(alphabet=UPPER, min_size=2, max_size=2)
ECU_TYPES = st.sampled_from(sorted(CONFIG.ecu_states))
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
FLAT_OBJECTS = st.dictionaries(st.text(max_size=8), LEAVES, max_size=4)
EDGY_STRINGS = st.sampled_from(
    ["", " ", "\t", "x" * 200, "a b", "é", "\x00", "TCU\n", "1" * 18, "v1", "v2", "c2c-edge",
     "ÿ" * 3]
)
CHIPSETS = st.fixed_dictionaries(
    {"id": identifiers(MAX_LEN["chipset_id"])},
    optional={
        **{key: st.none() | st.text(max_size=10) for key in CHIPSET_TEXT},
        "program_sku_id": st.none() | st.text(max_size=10) | st.integers(-(10**20), 10**20),
    },
)


def wire_case(code: str, lower: bool) -> str:
    return code.lower() if lower else code


def expected_chipset(chip: dict[str, Any]) -> Chipset:
    text = [chip.get(key) for key in CHIPSET_TEXT]
    if type(text[-1]) is int:
        text[-1] = str(text[-1])
    return Chipset(chip["id"].strip() and chip["id"] or None, *text)


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """The inputs of a valid message and the Request it must decode to."""
    kind = draw(st.sampled_from(KINDS))
    system_id = draw(identifiers(MAX_LEN["system_id"]))
    sub_system_id = draw(identifiers(MAX_LEN["sub_system_id"]))
    vin = draw(VINS)
    device_id = draw(identifiers(MAX_LEN["device_id"]))
    ecu_type = draw(ECU_TYPES)
    region_code, country_code = draw(REGIONS), draw(COUNTRIES)
    lower = draw(st.booleans())  # codes are case-insensitive and stored upper-case
    region_info = {"region_code": wire_case(region_code, lower),
                   "country_code": wire_case(country_code, lower)}
    # A blank body device id: the envelope's stands (the published sample sends "").
    body_device_id = draw(st.sampled_from([device_id, device_id, ""]))
    lifecycle = draw(st.sampled_from([{}, {"lifecyclestate": "X"}, {"lifecycyclestate": "Y"}]))
    body: dict[str, Any]
    expected: ProvisionQuery | DeviceProvision
    if kind == PROVISION_QUERY:
        spelling = draw(st.sampled_from(["deviceId", "device_id"]))
        body = {
            "system_id": system_id,
            "sub_system_id": sub_system_id,
            "vin": vin,
            spelling: body_device_id,
            "ecu_type": ecu_type,
            "primary": True,
            "region_info": region_info,
            **lifecycle,
        }
        expected = ProvisionQuery(
            system_id, sub_system_id, vin, device_id, ecu_type, True, region_code, country_code
        )
    else:
        chipsets = draw(st.lists(CHIPSETS, max_size=4, unique_by=lambda chip: chip["id"]))
        for chip in chipsets:  # blanking some keeps the given ones unique
            if draw(st.booleans()):
                chip["id"] = draw(st.sampled_from(["", " "]))
        vehicle_info = draw(FLAT_OBJECTS)
        primary = draw(st.booleans())
        ecu_model, ecu_make = draw(st.none() | st.text(max_size=8)), draw(st.none() | st.text())
        optional = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "SIMInfo": FLAT_OBJECTS,
                    "communication_channel": st.lists(LEAVES, max_size=3),
                    "configuration": FLAT_OBJECTS,
                    "privacyFlag": st.booleans(),
                },
            )
        )
        body = {
            "system_id": system_id,
            "sub_system_id": sub_system_id,
            "vin": vin,
            "vehicle_info": vehicle_info,
            "device_id": body_device_id,
            "device_info": {
                "ecu_model": ecu_model,
                "ecu_make": ecu_make,
                "ecu_type": ecu_type,
                "primary": primary,
            },
            "chipsets_count": len(chipsets),
            "chipsets": chipsets,
            "region_info": region_info,
            **optional,
            **lifecycle,
        }
        expected = DeviceProvision(
            system_id=system_id,
            sub_system_id=sub_system_id,
            vin=vin,
            device_id=device_id,
            ecu_type=ecu_type,
            primary=primary,
            ecu_model=ecu_model,
            ecu_make=ecu_make,
            vehicle_info=vehicle_info,
            chipsets_count=len(chipsets),
            chipsets=tuple(expected_chipset(chip) for chip in chipsets),
            region_code=region_code,
            country_code=country_code,
            sim_info=optional.get("SIMInfo", {}),
            communication_channel=optional.get("communication_channel", []),
            configuration=optional.get("configuration", {}),
            privacy_flag=optional.get("privacyFlag", False),
        )
    in_ms = draw(st.booleans())
    # Milliseconds below 10**11 (before 1973) read as seconds: not drawn, see MILLISECONDS_FROM.
    time = draw(st.integers(10**8 if in_ms else 0, NOW))
    sent_time = time * 1000 + draw(st.integers(0, 999)) if in_ms else time
    ttl = draw(st.just(-1) | st.integers(NOW - time, MAX_INT64))
    return {
        "kind": kind,
        "message_id": draw(identifiers(MAX_LEN["message_id"])),
        "system_id": system_id,
        "sub_system_id": sub_system_id,
        "vin": vin,
        "device_id": device_id,
        "ecu_type": ecu_type,
        "body": body,
        "time": time,
        "sent_time": sent_time,
        "ttl": ttl,
        "encoding": draw(st.sampled_from([0, 1])),
        "version": draw(st.sampled_from(["v1", "v2"])),
        "bag_spelling": draw(st.sampled_from(["property_bag", "propertyBag"])),
        "expected": expected,
    }


def build(m: dict[str, Any]) -> bytes:
    return build_request(
        message_type=m["kind"],
        message_id=m["message_id"],
        system_id=m["system_id"],
        sub_system_id=m["sub_system_id"],
        vin=m["vin"],
        device_id=m["device_id"],
        ecu_type=m["ecu_type"],
        body=m["body"],
        now=m.get("sent_time", m["time"]),
        ttl=m["ttl"],
        body_encoding_type=m["encoding"],
        version=m.get("version", "v1"),
        bag_spelling=m.get("bag_spelling", "property_bag"),
    )


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of the nested dicts and lists of a message, for mutation."""
    found: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, dict | list):
            found.extend(paths(value, (*prefix, key)))
    return found


def retyped(value: Any) -> Any:
    """A value of another JSON type carrying the same content."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.isdigit() else [value]
    return json.dumps(value)


# --- properties --------------------------------------------------------------------------------


@examples(3000)
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    decode_any(raw)


@examples(2000)
@given(JSON_VALUES)
def test_random_json_values(value: Any) -> None:
    decode_any(json.dumps(value).encode())


@examples(1500)
@given(
    st.fixed_dictionaries(
        {}, optional=dict.fromkeys((*ENVELOPE_KEYS, "propertyBag"), JSON_VALUES | EDGY_STRINGS)
    )
)
def test_random_values_under_envelope_names(doc: dict[str, Any]) -> None:
    decode_any(json.dumps(doc).encode())


@examples(1500)
@given(valid_messages())
def test_valid_message_round_trips(m: dict[str, Any]) -> None:
    result = decode_request(build(m), expected_type=m["kind"], config=CONFIG, now=NOW)
    assert isinstance(result, Request), result
    assert result.body == m["expected"]
    v1 = m["version"] == "v1"
    encoding_key = "body_encoding_type" if m["bag_spelling"] == "property_bag" else (
        "bodyEncodingType")
    assert result.envelope == Envelope(
        message_id=m["message_id"],
        correlation_id=None,
        version=m["version"],
        system_id=m["system_id"],
        sub_system_id=m["sub_system_id"],
        vin=m["vin"] if v1 else None,
        device_id=m["device_id"],
        ecu_type=m["ecu_type"] if v1 else None,
        source_id="c2c-edge",
        target_id="c2c-cloud",
        message_type=m["kind"],
        time=m["time"],
        ttl=m["ttl"],
        status="SUBMIT" if v1 else None,
        body_encoding_type=m["encoding"],
        property_bag={encoding_key: m["encoding"]},
        bag_spelling=m["bag_spelling"],
    )
    assert result.reply_to == ReplyTo(
        m["message_id"], m["system_id"], m["sub_system_id"], m["vin"], m["device_id"],
        m["ecu_type"], m["encoding"], m["version"], m["bag_spelling"],
    )  # fmt: skip
    check(result)


@examples(2500)
@given(valid_messages(), st.data())
def test_one_field_mutated_removed_or_retyped(m: dict[str, Any], data: st.DataObject) -> None:
    doc = json.loads(build({**m, "encoding": 0}))
    path = data.draw(st.sampled_from(paths(doc)))
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    operation = data.draw(st.sampled_from(["remove", "null", "retype", "edgy", "any"]))
    if operation == "remove":
        del target[last]
    elif operation == "null":
        target[last] = None
    elif operation == "retype":
        target[last] = retyped(target[last])
    elif operation == "edgy":
        target[last] = data.draw(EDGY_STRINGS)
    else:
        target[last] = data.draw(JSON_VALUES)
    # The mutated message is sent as encoding 1 too, unless the mutation was to the bag itself.
    bag = m["bag_spelling"]
    if m["encoding"] == 1 and path[0] != bag and isinstance(doc.get("body"), dict):
        doc["body"] = base64.b64encode(json.dumps(doc["body"]).encode()).decode()
        doc[bag] = {"body_encoding_type" if bag == "property_bag" else "bodyEncodingType": 1}
    decode_any(json.dumps(doc).encode())


@examples(1000)
@given(
    valid_messages(),
    st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode()),
        JSON_VALUES.map(lambda value: base64.b64encode(json.dumps(value).encode()).decode()),
        st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode().rstrip("=")),
    ),
)
def test_base64_garbage_bodies(m: dict[str, Any], body: str) -> None:
    doc = json.loads(build({**m, "encoding": 1}))
    doc["body"] = body
    decode_any(json.dumps(doc).encode())


@examples(500)
@given(
    valid_messages(),
    st.integers(1, 30_000),
    st.sampled_from(["[", '{"a":']),
    st.sampled_from(["whole", "body", "property_bag", "base64 body"]),
)
def test_deep_nesting(m: dict[str, Any], depth: int, opener: str, where: str) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "0" + closer * depth
    if where == "whole":
        decode_any(nested.encode())
        return
    doc = json.loads(build({**m, "encoding": 1 if where == "base64 body" else 0,
                            "bag_spelling": "property_bag"}))
    marker = '"__nested__"'
    if where == "base64 body":
        doc["body"] = base64.b64encode(f'{{"deep":{nested}}}'.encode()).decode()
        raw = json.dumps(doc)
    else:
        doc[where]["deep"] = "__nested__"
        raw = json.dumps(doc).replace(marker, nested)
    decode_any(raw.encode())


@examples(500)
@given(
    valid_messages(),
    st.sampled_from(["time", "ttl", "body_encoding_type", "chipsets_count", "primary"]),
    st.sampled_from(
        ["9" * 5000, "-" + "9" * 4000, "1e400", "-1e400", "NaN", "Infinity", "1.0", "2e0",
         "12345678901234567890123", "-0", "true"]
    ),
)  # fmt: skip
def test_odd_numbers(m: dict[str, Any], field: str, number: str) -> None:
    doc = json.loads(build({**m, "encoding": 0, "bag_spelling": "property_bag"}))
    target = doc["property_bag"] if field == "body_encoding_type" else doc
    if field in ("chipsets_count", "primary"):
        target = doc["body"]
    target[field] = "__number__"
    decode_any(json.dumps(doc).replace('"__number__"', number).encode())


@examples(500)
@given(valid_messages(), st.sampled_from(ENVELOPE_KEYS[:1] + ENVELOPE_KEYS[2:]), JSON_VALUES)
def test_duplicate_keys_are_refused(m: dict[str, Any], key: str, value: Any) -> None:
    # v1 with the snake-case bag: every key of ENVELOPE_KEYS is in the message, so a duplicate.
    raw = build({**m, "encoding": 0, "version": "v1", "bag_spelling": "property_bag"})
    duplicated = raw[:-1] + f',"{key}":{json.dumps(value)}}}'.encode()
    for kind in KINDS:
        result = decode_request(duplicated, expected_type=kind, config=CONFIG, now=NOW)
        check(result)
        assert isinstance(result, Rejection) and result.code == ErrorCode.NOT_JSON
