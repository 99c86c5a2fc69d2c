"""The validation rules (docs/spec.md sections 3, 4 and 6), one named case per rule."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from vprov.config import load
from vprov.core.codes import ErrorCode, message_for
from vprov.core.envelope import (
    DEVICE_PROVISION,
    PROVISION_QUERY,
    PROVISION_QUERY_RESPONSE,
    Chipset,
    DeviceProvision,
    ProvisionQuery,
    Rejection,
    ReplyTo,
    Request,
)
from vprov.flows.validation import (
    _AGREEMENT,
    _DEVICE,
    _ENVELOPE,
    _QUERY,
    MAX_LEN,
    Rule,
    check_sender,
    decode_request,
    is_valid_identifier,
    is_valid_vin,
    routing_vin,
)

CONFIG = load(env={})
NOW = 1_700_000_000
VIN = "1HGCM82633A004352"
SYSTEM = "c2c-sys-00000001"
SUB = "c2c-sub-00000001"
TCU = "TCU-0000000001"
IVI = "IVI-0000000002"
DROP = object()  # a change that removes the field
Q, D = PROVISION_QUERY, DEVICE_PROVISION


def query_body() -> dict[str, Any]:
    return {
        "system_id": SYSTEM,
        "sub_system_id": SUB,
        "vin": VIN,
        "deviceId": TCU,
        "ecu_type": "TCU",
        "primary": True,
        "region_info": {"region_code": "NA", "country_code": "US"},
    }


def device_body() -> dict[str, Any]:
    return {
        "system_id": SYSTEM,
        "sub_system_id": SUB,
        "vin": VIN,
        "vehicle_info": {"class": "SUV", "style": "5D", "model": "X1", "year": "2025"},
        "device_id": TCU,
        "device_info": {
            "ecu_model": "T100",
            "ecu_make": "Acme",
            "ecu_type": "TCU",
            "primary": True,
        },
        "chipsets_count": 2,
        "chipsets": [
            {
                "state": "ACTIVE",
                "name": "modem",
                "id": "chip-1",
                "type": "LTE",
                "version": "1",
                "sw_version": "1.2.3",
                "hw_version": "B",
                "program_sku_id": "SKU-1",
            },
            {"id": "chip-2"},
        ],
        "region_info": {"region_code": "NA", "country_code": "US"},
        "SIMInfo": {"iccid": "8901"},
        "communication_channel": ["MQTT"],
        "configuration": {"telemetry": True},
        "privacyFlag": False,
        "lifecycyclestate": "PROVISIONED",
    }


def apply(doc: Any, changes: dict[str, Any]) -> None:
    """Set (or with DROP remove) values by dotted path; digits index lists."""
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is DROP:
            target.pop(key)
        else:
            target[key] = value


def message(
    kind: str = Q, *, env: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
    encoding: int = 0,
) -> bytes:
    """A valid message of ``kind`` with ``body`` changes applied before encoding, then ``env``."""
    inner = query_body() if kind == Q else device_body()
    apply(inner, body or {})
    encoded: Any = inner
    if encoding == 1:
        encoded = base64.b64encode(json.dumps(inner).encode()).decode()
    doc = {
        "message_id": "msg-0001",
        "version": "v1",
        "system_id": SYSTEM,
        "sub_system_id": SUB,
        "vin": VIN,
        "device_id": TCU,
        "ecu_type": "TCU",
        "source_id": "c2c-edge",
        "target_id": "c2c-cloud",
        "message_type": kind,
        "time": NOW - 10,
        "ttl": -1,
        "status": "SUBMIT",
        "property_bag": {"body_encoding_type": encoding},
        "body": encoded,
    }
    apply(doc, env or {})
    return json.dumps(doc).encode()


def named(*cases: tuple[Any, ...]) -> list[Any]:
    """Parametrize cases whose first item is the rule they check, used as the test id."""
    return [pytest.param(*case, id=case[0]) for case in cases]


def decode(raw: bytes, kind: str = Q, config: Any = CONFIG) -> Request | Rejection:
    return decode_request(raw, expected_type=kind, config=config, now=NOW)


def rejected(raw: bytes, kind: str = Q) -> Rejection:
    result = decode(raw, kind)
    assert isinstance(result, Rejection), result
    return result


def accepted(raw: bytes, kind: str = Q) -> Request:
    result = decode(raw, kind)
    assert isinstance(result, Request), result
    return result


def valid_reply_to(encoding: int = 0) -> ReplyTo:
    """Whom the answer to ``message()`` goes back to."""
    return ReplyTo(message_id="msg-0001", system_id=SYSTEM, sub_system_id=SUB, vin=VIN,
                   device_id=TCU, ecu_type="TCU", body_encoding_type=encoding)


E = ErrorCode
# (rule, topic's type, raw message, expected code)
CASES: list[tuple[str, str, bytes, ErrorCode]] = [
    # size and JSON
    ("payload over the size limit -> 1413", Q, message(env={"pad": "x" * 70_000}),
     E.PAYLOAD_TOO_LARGE),
    ("not JSON -> 13113", Q, b"{not json", E.NOT_JSON),
    ("empty payload -> 13113", Q, b"", E.NOT_JSON),
    ("not UTF-8 -> 13113", Q, b'{"message_id": "\xff"}', E.NOT_JSON),
    ("UTF-16 JSON -> 13113", Q, message().decode().encode("utf-16"), E.NOT_JSON),
    ("UTF-8 byte order mark -> 13113", Q, b"\xef\xbb\xbf" + message(), E.NOT_JSON),
    ("JSON array -> 13113", Q, b"[1, 2]", E.NOT_JSON),
    ("JSON string -> 13113", Q, b'"PROVISION_QUERY"', E.NOT_JSON),
    ("JSON null -> 13113", Q, b"null", E.NOT_JSON),
    ("NaN is not JSON -> 13113", Q, message().replace(b'"ttl": -1', b'"ttl": NaN'), E.NOT_JSON),
    ("Infinity is not JSON -> 13113", Q, message().replace(b'"ttl": -1', b'"ttl": -Infinity'),
     E.NOT_JSON),
    ("duplicate key -> 13113", Q, message().replace(b'"ttl": -1', b'"ttl": -1, "ttl": 5'),
     E.NOT_JSON),
    ("duplicate key inside the body -> 13113", Q,
     message().replace(b'"primary": true', b'"primary": false, "primary": true'), E.NOT_JSON),
    ("nesting too deep -> 13113", Q, b"[" * 20_000 + b"]" * 20_000, E.NOT_JSON),
    ("integer too long to parse -> 13113", Q,
     message().replace(b'"ttl": -1', b'"ttl": ' + b"9" * 5000), E.NOT_JSON),
    ("trailing garbage -> 13113", Q, message() + b" x", E.NOT_JSON),
    ("number too large for a float -> 13113", D,
     message(D, body={"vehicle_info.year": "@"}).replace(b'"@"', b"1e400"), E.NOT_JSON),
    # envelope, field by field
    ("message_id missing -> 1002", Q, message(env={"message_id": DROP}), E.MESSAGE_ID_MISSING),
    ("message_id null -> 1002", Q, message(env={"message_id": None}), E.MESSAGE_ID_MISSING),
    ("message_id blank -> 1002", Q, message(env={"message_id": "  "}), E.MESSAGE_ID_MISSING),
    ("message_id outside the identifier alphabet -> 13122", Q,
     message(env={"message_id": "msg/1"}), E.FIELD_VIOLATION),
    ("message_id longer than 64 -> 13122", Q, message(env={"message_id": "m" * 65}),
     E.FIELD_VIOLATION),
    ("message_id not a string -> 13122", Q, message(env={"message_id": 7}), E.FIELD_VIOLATION),
    ("correlation_id not an identifier -> 13122", Q, message(env={"correlation_id": "a b"}),
     E.FIELD_VIOLATION),
    ("version missing -> 1409", Q, message(env={"version": DROP}), E.VERSION_UNSUPPORTED),
    ("version unsupported -> 1409", Q, message(env={"version": "v3"}), E.VERSION_UNSUPPORTED),
    ("version in another case -> 1409", Q, message(env={"version": "V1"}),
     E.VERSION_UNSUPPORTED),
    ("version not a string -> 1409", Q, message(env={"version": 1}), E.VERSION_UNSUPPORTED),
    ("system_id missing -> 1001", Q, message(env={"system_id": DROP}), E.SYSTEM_ID_MISSING),
    ("system_id blank -> 1001", Q, message(env={"system_id": ""}), E.SYSTEM_ID_MISSING),
    ("system_id with a space -> 13122", Q, message(env={"system_id": "c2c sys"}),
     E.FIELD_VIOLATION),
    ("system_id longer than 23 -> 13122", Q, message(env={"system_id": "s" * 24}),
     E.FIELD_VIOLATION),
    ("system_id with a non-ASCII letter -> 13122", Q, message(env={"system_id": "c2c-sys-é"}),
     E.FIELD_VIOLATION),
    ("header sub_system_id not an identifier -> 13122", Q,
     message(env={"sub_system_id": "sub#1"}), E.FIELD_VIOLATION),
    ("header vin not a string -> 13122", Q, message(env={"vin": 17}), E.FIELD_VIOLATION),
    ("device_id missing -> 1003", Q, message(env={"device_id": DROP}), E.DEVICE_ID_MISSING),
    ("device_id longer than 19 -> 13122", Q, message(env={"device_id": "d" * 20}),
     E.FIELD_VIOLATION),
    ("ecu_type missing -> 1004", Q, message(env={"ecu_type": DROP}), E.ECU_TYPE_MISSING),
    ("source_id missing -> 1005", Q, message(env={"source_id": DROP}), E.SOURCE_ID_MISSING),
    ("source_id blank -> 1005", Q, message(env={"source_id": " "}), E.SOURCE_ID_MISSING),
    ("source_id c2c-cloud on a device message -> 13122", Q,
     message(env={"source_id": "c2c-cloud"}), E.FIELD_VIOLATION),
    ("target_id missing -> 1006", Q, message(env={"target_id": DROP}), E.TARGET_ID_MISSING),
    ("message_type missing -> 1007", Q, message(env={"message_type": DROP}),
     E.MESSAGE_TYPE_MISSING),
    ("time missing -> 1008", Q, message(env={"time": DROP}), E.TIME_MISSING),
    ("time as a string -> 1008", Q, message(env={"time": str(NOW)}), E.TIME_MISSING),
    ("time as a float -> 1008", Q, message(env={"time": float(NOW)}), E.TIME_MISSING),
    ("time as a boolean -> 1008", Q, message(env={"time": True}), E.TIME_MISSING),
    ("time negative -> 13122", Q, message(env={"time": -1}), E.FIELD_VIOLATION),
    ("time beyond a 64-bit long -> 13122", Q, message(env={"time": 2**63}), E.FIELD_VIOLATION),
    ("ttl not an integer -> 13122", Q, message(env={"ttl": "60"}), E.FIELD_VIOLATION),
    ("ttl a boolean -> 13122", Q, message(env={"ttl": False}), E.FIELD_VIOLATION),
    ("ttl below -1 -> 13122", Q, message(env={"ttl": -2}), E.FIELD_VIOLATION),
    ("status missing -> 10001", Q, message(env={"status": DROP}), E.STATUS_MISSING),
    ("status blank -> 10001", Q, message(env={"status": ""}), E.STATUS_MISSING),
    ("property_bag missing -> 13114", Q, message(env={"property_bag": DROP}),
     E.PROPERTY_BAG_MISSING),
    ("property_bag not an object -> 13114", Q, message(env={"property_bag": [0]}),
     E.PROPERTY_BAG_MISSING),
    ("property_bag without body_encoding_type -> 13114", Q,
     message(env={"property_bag": {"other": 1}}), E.PROPERTY_BAG_MISSING),
    ("body_encoding_type null -> 13114", Q,
     message(env={"property_bag.body_encoding_type": None}), E.PROPERTY_BAG_MISSING),
    ("body_encoding_type a string -> 13127", Q,
     message(env={"property_bag.body_encoding_type": "0"}), E.BODY_ENCODING_NOT_INTEGER),
    ("body_encoding_type a boolean -> 13127", Q,
     message(env={"property_bag.body_encoding_type": True}), E.BODY_ENCODING_NOT_INTEGER),
    ("body_encoding_type a float -> 13127", Q,
     message(env={"property_bag.body_encoding_type": 1.0}), E.BODY_ENCODING_NOT_INTEGER),
    ("body_encoding_type 2 -> 13126", Q, message(env={"property_bag.body_encoding_type": 2}),
     E.BODY_ENCODING_UNSUPPORTED),
    ("body_encoding_type -1 -> 13126", Q, message(env={"property_bag.body_encoding_type": -1}),
     E.BODY_ENCODING_UNSUPPORTED),
    # expiry and message type
    ("message past time + ttl -> 10003", Q, message(env={"time": NOW - 61, "ttl": 60}),
     E.MESSAGE_EXPIRED),
    ("ttl 0 and a second late -> 10003", Q, message(env={"time": NOW - 1, "ttl": 0}),
     E.MESSAGE_EXPIRED),
    ("device provisioning on the query topic -> 13115", Q,
     message(env={"message_type": DEVICE_PROVISION}), E.WRONG_MESSAGE_TYPE),
    ("query on the device topic -> 13115", D, message(Q), E.WRONG_MESSAGE_TYPE),
    ("a response type on the query topic -> 13115", Q,
     message(env={"message_type": PROVISION_QUERY_RESPONSE}), E.WRONG_MESSAGE_TYPE),
    ("unknown message type -> 13115", Q, message(env={"message_type": "HELLO"}),
     E.WRONG_MESSAGE_TYPE),
    # body decoding
    ("body missing -> 10000", Q, message(env={"body": DROP}), E.BODY_MISSING),
    ("body null -> 10000", Q, message(env={"body": None}), E.BODY_MISSING),
    ("encoding 0 with a string body -> 10000", Q, message(env={"body": "e30="}), E.BODY_MISSING),
    ("encoding 0 with an array body -> 10000", Q, message(env={"body": [query_body()]}),
     E.BODY_MISSING),
    ("encoding 1 with an object body -> 10000", Q,
     message(env={"property_bag.body_encoding_type": 1}), E.BODY_MISSING),
    ("encoding 1 with a body that is not base64 -> 10000", Q,
     message(encoding=1, env={"body": "not base64!"}), E.BODY_MISSING),
    ("encoding 1 with unpadded base64 -> 10000", Q, message(encoding=1, env={"body": "e30"}),
     E.BODY_MISSING),
    ("encoding 1 with base64 split by a newline -> 10000", Q,
     message(encoding=1, env={"body": "e3\n0="}), E.BODY_MISSING),
    ("encoding 1 with base64 of something not JSON -> 10000", Q,
     message(encoding=1, env={"body": base64.b64encode(b"hello").decode()}), E.BODY_MISSING),
    ("encoding 1 with base64 of a JSON array -> 10000", Q,
     message(encoding=1, env={"body": base64.b64encode(b"[]").decode()}), E.BODY_MISSING),
    ("encoding 1 with base64 of non-UTF-8 -> 10000", Q,
     message(encoding=1, env={"body": base64.b64encode(b'{"a":"\xff"}').decode()}),
     E.BODY_MISSING),
    ("encoding 1 with base64 of deep nesting -> 10000", Q,
     message(encoding=1, env={"body": base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()}),
     E.BODY_MISSING),
    ("empty body -> 13118", Q, message(env={"body": {}}), E.BODY_EMPTY),
    ("empty base64 body -> 13118", Q, message(encoding=1, env={"body": "e30="}), E.BODY_EMPTY),
    # PROVISION_QUERY body (3.1)
    ("query without system_id -> 13129", Q, message(body={"system_id": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query without sub_system_id -> 13129", Q, message(body={"sub_system_id": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query without ecu_type -> 13129", Q, message(body={"ecu_type": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query without primary -> 13129", Q, message(body={"primary": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query without region_info -> 13129", Q, message(body={"region_info": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query without region_code -> 13129", Q, message(body={"region_info.region_code": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query without country_code -> 13129", Q,
     message(body={"region_info.country_code": DROP}), E.QUERY_FIELD_MISSING),
    ("query without vin -> 13101", Q, message(body={"vin": DROP}), E.QUERY_VIN_INVALID),
    ("query with a 16-character vin -> 13101", Q, message(body={"vin": VIN[:16]}),
     E.QUERY_VIN_INVALID),
    ("query with an O in the vin -> 13101", Q, message(body={"vin": "1HGCM82633A00435O"}),
     E.QUERY_VIN_INVALID),
    ("query with a lowercase vin -> 13101", Q, message(body={"vin": VIN.lower()}),
     E.QUERY_VIN_INVALID),
    ("query with a numeric vin -> 13101", Q, message(body={"vin": 12345678901234567}),
     E.QUERY_VIN_INVALID),
    ("query from a non-primary device -> 13122", Q, message(body={"primary": False}),
     E.FIELD_VIOLATION),
    ("query with primary as a string -> 13122", Q, message(body={"primary": "true"}),
     E.FIELD_VIOLATION),
    ("query with an unknown ECU type -> 13122", Q,
     message(env={"ecu_type": "TOASTER"}, body={"ecu_type": "TOASTER"}), E.FIELD_VIOLATION),
    ("query with a device id outside the alphabet -> 13122", Q,
     message(body={"deviceId": "TCU 1"}), E.FIELD_VIOLATION),
    ("query with a sub_system_id longer than 23 -> 13122", Q,
     message(env={"sub_system_id": DROP}, body={"sub_system_id": "s" * 24}), E.FIELD_VIOLATION),
    ("query with deviceId and device_id disagreeing -> 13122", Q,
     message(body={"device_id": IVI}), E.FIELD_VIOLATION),
    ("query with a region code of a wrong shape -> 13122", Q,
     message(body={"region_info.region_code": "n-a"}), E.FIELD_VIOLATION),
    ("query with a region code that upper-cases to a valid one only in Unicode -> 13122", Q,
     message(body={"region_info.region_code": "ßa"}), E.FIELD_VIOLATION),
    ("query with a region code starting with a digit -> 13122", Q,
     message(body={"region_info.region_code": "1a"}), E.FIELD_VIOLATION),
    ("query with a three-letter country code -> 13122", Q,
     message(body={"region_info.country_code": "USA"}), E.FIELD_VIOLATION),
    ("query with a numeric region code -> 13122", Q,
     message(body={"region_info.region_code": 1}), E.FIELD_VIOLATION),
    # DEVICE_PROVISION body (3.3)
    ("device provisioning without system_id -> 1001", D, message(D, body={"system_id": DROP}),
     E.SYSTEM_ID_MISSING),
    ("device provisioning without sub_system_id -> 13116", D,
     message(D, body={"sub_system_id": DROP}), E.SUB_SYSTEM_ID_MISSING),
    ("device provisioning without vin -> 6108", D, message(D, body={"vin": DROP}),
     E.VIN_INVALID),
    ("device provisioning with a Q in the vin -> 6108", D,
     message(D, body={"vin": "1HGCM82633A00435Q"}), E.VIN_INVALID),
    ("device provisioning with an 18-character vin -> 6108", D,
     message(D, body={"vin": VIN + "1"}), E.VIN_INVALID),
    ("device provisioning without vehicle_info -> 13117", D,
     message(D, body={"vehicle_info": DROP}), E.VEHICLE_INFO_MISSING),
    ("device provisioning with vehicle_info not an object -> 13117", D,
     message(D, body={"vehicle_info": "SUV"}), E.VEHICLE_INFO_MISSING),
    ("device provisioning with a device_id outside the alphabet -> 13122", D,
     message(D, body={"device_id": "TCU#1"}), E.FIELD_VIOLATION),
    ("device provisioning without any ecu_type -> 1004", D,
     message(D, body={"device_info.ecu_type": DROP}), E.ECU_TYPE_MISSING),
    ("device provisioning with an unknown ECU type -> 13122", D,
     message(D, env={"ecu_type": "TOASTER"}, body={"device_info.ecu_type": "TOASTER"}),
     E.FIELD_VIOLATION),
    ("device provisioning with two different ecu_types in the body -> 13122", D,
     message(D, body={"ecu_type": "IVI"}), E.FIELD_VIOLATION),
    ("device provisioning with device_info not an object -> 13122", D,
     message(D, body={"device_info": "TCU"}), E.FIELD_VIOLATION),
    ("device provisioning with primary as a string -> 13122", D,
     message(D, body={"device_info.primary": "yes"}), E.FIELD_VIOLATION),
    ("device provisioning with ecu_model a number -> 13122", D,
     message(D, body={"device_info.ecu_model": 100}), E.FIELD_VIOLATION),
    ("device provisioning without chipsets_count -> 13121", D,
     message(D, body={"chipsets_count": DROP}), E.CHIPSETS_COUNT_MISSING),
    ("device provisioning with chipsets_count a string -> 13122", D,
     message(D, body={"chipsets_count": "2"}), E.FIELD_VIOLATION),
    ("device provisioning with chipsets_count negative -> 13122", D,
     message(D, body={"chipsets_count": -1}), E.FIELD_VIOLATION),
    ("device provisioning with more chipsets than counted -> 11008", D,
     message(D, body={"chipsets_count": 1}), E.CHIPSETS_COUNT_MISMATCH),
    ("device provisioning with a count but no chipsets -> 11008", D,
     message(D, body={"chipsets": DROP}), E.CHIPSETS_COUNT_MISMATCH),
    ("device provisioning with chipsets not a list -> 13122", D,
     message(D, body={"chipsets": {"id": "chip-1"}}), E.FIELD_VIOLATION),
    ("device provisioning with a chipset that is not an object -> 13122", D,
     message(D, body={"chipsets.1": "chip-2"}), E.FIELD_VIOLATION),
    ("device provisioning with a chipset id a number -> 13122", D,
     message(D, body={"chipsets.1.id": 7}), E.FIELD_VIOLATION),
    ("device provisioning with a chipset id longer than 64 -> 13122", D,
     message(D, body={"chipsets.1.id": "c" * 65}), E.FIELD_VIOLATION),
    ("device provisioning with a program_sku_id a boolean -> 13122", D,
     message(D, body={"chipsets.0.program_sku_id": True}), E.FIELD_VIOLATION),
    ("device provisioning with a program_sku_id a float -> 13122", D,
     message(D, body={"chipsets.0.program_sku_id": 667.5}), E.FIELD_VIOLATION),
    ("device provisioning with a chipset id outside the alphabet -> 13122", D,
     message(D, body={"chipsets.1.id": "chip 2"}), E.FIELD_VIOLATION),
    ("device provisioning with two chipsets of one id -> 13122", D,
     message(D, body={"chipsets.1.id": "chip-1"}), E.FIELD_VIOLATION),
    ("device provisioning with a chipset version as a number -> 13122", D,
     message(D, body={"chipsets.0.version": 1}), E.FIELD_VIOLATION),
    ("device provisioning without region_info -> 13119", D,
     message(D, body={"region_info": DROP}), E.REGION_CODE_MISSING),
    ("device provisioning without region_code -> 13119", D,
     message(D, body={"region_info.region_code": DROP}), E.REGION_CODE_MISSING),
    ("device provisioning without country_code -> 13120", D,
     message(D, body={"region_info.country_code": DROP}), E.COUNTRY_CODE_MISSING),
    ("device provisioning with a country code with a digit -> 13122", D,
     message(D, body={"region_info.country_code": "u5"}), E.FIELD_VIOLATION),
    ("device provisioning with a non-ASCII country code -> 13122", D,
     message(D, body={"region_info.country_code": "ÇA"}), E.FIELD_VIOLATION),
    ("device provisioning with a three-letter lowercase country code -> 13122", D,
     message(D, body={"region_info.country_code": "can"}), E.FIELD_VIOLATION),
    ("device provisioning with SIMInfo a list -> 13122", D, message(D, body={"SIMInfo": []}),
     E.FIELD_VIOLATION),
    ("device provisioning with communication_channel an object -> 13122", D,
     message(D, body={"communication_channel": {}}), E.FIELD_VIOLATION),
    ("device provisioning with configuration a string -> 13122", D,
     message(D, body={"configuration": "x"}), E.FIELD_VIOLATION),
    ("device provisioning with privacyFlag a string -> 13122", D,
     message(D, body={"privacyFlag": "no"}), E.FIELD_VIOLATION),
    ("device provisioning with a body system_id outside the alphabet -> 13122", D,
     message(D, body={"system_id": "sys!"}), E.FIELD_VIOLATION),
    # header/body agreement
    ("query with another system_id in the header -> 13130", Q,
     message(env={"system_id": "c2c-sys-00000002"}), E.HEADER_BODY_MISMATCH),
    ("query with another sub_system_id in the header -> 13130", Q,
     message(env={"sub_system_id": "c2c-sub-2"}), E.HEADER_BODY_MISMATCH),
    ("query with another vin in the header -> 13130", Q,
     message(env={"vin": "1HGCM82633A004353"}), E.HEADER_BODY_MISMATCH),
    ("query with an invalid vin in the header -> 13130", Q, message(env={"vin": "not-a-vin"}),
     E.HEADER_BODY_MISMATCH),
    ("query with another device_id in the header -> 13130", Q, message(env={"device_id": IVI}),
     E.HEADER_BODY_MISMATCH),
    ("query with another ecu_type in the header -> 13130", Q, message(env={"ecu_type": "IVI"}),
     E.HEADER_BODY_MISMATCH),
    ("device provisioning with another device_id in the header -> 13130", D,
     message(D, env={"device_id": IVI}), E.HEADER_BODY_MISMATCH),
    ("device provisioning with another ecu_type in the header -> 13130", D,
     message(D, env={"ecu_type": "IVI"}), E.HEADER_BODY_MISMATCH),
    ("device provisioning with another vin in the header -> 13130", D,
     message(D, env={"vin": "1HGCM82633A004353"}), E.HEADER_BODY_MISMATCH),
    ("device provisioning with another system_id in the header -> 13130", D,
     message(D, env={"system_id": "c2c-sys-9"}), E.HEADER_BODY_MISMATCH),
]

# Two faults at once: the earlier check answers (docs/spec.md section 4 and the module docstring).
ORDER_CASES: list[tuple[str, str, bytes, ErrorCode]] = [
    ("size before JSON", Q, b"{" * 70_000, E.PAYLOAD_TOO_LARGE),
    ("JSON before envelope", Q, b'{"message_id": "m", }', E.NOT_JSON),
    ("message_id before version", Q, message(env={"message_id": DROP, "version": DROP}),
     E.MESSAGE_ID_MISSING),
    ("version before system_id", Q, message(env={"version": "v9", "system_id": DROP}),
     E.VERSION_UNSUPPORTED),
    ("system_id before device_id", Q, message(env={"system_id": DROP, "device_id": DROP}),
     E.SYSTEM_ID_MISSING),
    ("device_id before ecu_type", Q, message(env={"device_id": DROP, "ecu_type": DROP}),
     E.DEVICE_ID_MISSING),
    ("ecu_type before source_id", Q, message(env={"ecu_type": DROP, "source_id": DROP}),
     E.ECU_TYPE_MISSING),
    ("source_id value before target_id", Q,
     message(env={"source_id": "c2c-cloud", "target_id": DROP}), E.FIELD_VIOLATION),
    ("target_id before message_type", Q, message(env={"target_id": DROP, "message_type": DROP}),
     E.TARGET_ID_MISSING),
    ("message_type before time", Q, message(env={"message_type": DROP, "time": DROP}),
     E.MESSAGE_TYPE_MISSING),
    ("time before ttl", Q, message(env={"time": DROP, "ttl": "x"}), E.TIME_MISSING),
    ("ttl before status", Q, message(env={"ttl": "x", "status": DROP}), E.FIELD_VIOLATION),
    ("status before property_bag", Q, message(env={"status": DROP, "property_bag": DROP}),
     E.STATUS_MISSING),
    ("property_bag before expiry", Q,
     message(env={"property_bag": DROP, "time": NOW - 100, "ttl": 1}), E.PROPERTY_BAG_MISSING),
    ("body_encoding_type before expiry", Q,
     message(env={"property_bag.body_encoding_type": 5, "time": NOW - 100, "ttl": 1}),
     E.BODY_ENCODING_UNSUPPORTED),
    ("envelope before a body fault", Q, message(env={"status": DROP, "body": {}}),
     E.STATUS_MISSING),
    ("expiry before message type", Q,
     message(env={"time": NOW - 100, "ttl": 1, "message_type": "OTHER"}), E.MESSAGE_EXPIRED),
    ("message type before body decoding", Q,
     message(env={"message_type": "OTHER", "body": DROP}), E.WRONG_MESSAGE_TYPE),
    ("body decoding before body fields", Q, message(env={"body": "e30="}), E.BODY_MISSING),
    ("query sub_system_id before vin", Q, message(body={"sub_system_id": DROP, "vin": DROP}),
     E.QUERY_FIELD_MISSING),
    ("query vin before deviceId", Q, message(body={"vin": DROP, "deviceId": DROP}),
     E.QUERY_VIN_INVALID),
    ("query primary before region_info", Q,
     message(body={"primary": False, "region_info": DROP}), E.FIELD_VIOLATION),
    ("device sub_system_id before vin", D,
     message(D, body={"sub_system_id": DROP, "vin": DROP}), E.SUB_SYSTEM_ID_MISSING),
    ("device vin before vehicle_info", D, message(D, body={"vin": DROP, "vehicle_info": DROP}),
     E.VIN_INVALID),
    ("device vehicle_info before device_id", D,
     message(D, body={"vehicle_info": DROP, "device_id": DROP}), E.VEHICLE_INFO_MISSING),
    ("device chipsets_count before the chipsets", D,
     message(D, body={"chipsets_count": DROP, "chipsets.0.id": DROP}), E.CHIPSETS_COUNT_MISSING),
    ("device count mismatch before region_info", D,
     message(D, body={"chipsets_count": 5, "region_info": DROP}), E.CHIPSETS_COUNT_MISMATCH),
    ("device region_code before country_code", D,
     message(D, body={"region_info": {}}), E.REGION_CODE_MISSING),
    ("body fields before header/body agreement", Q,
     message(env={"device_id": IVI}, body={"primary": DROP}), E.QUERY_FIELD_MISSING),
    ("header/body agreement: system_id before device_id", Q,
     message(env={"system_id": "other", "device_id": IVI}), E.HEADER_BODY_MISMATCH),
]


@pytest.mark.parametrize(("rule", "kind", "raw", "code"), named(*CASES))
def test_rule(rule: str, kind: str, raw: bytes, code: ErrorCode) -> None:
    assert rejected(raw, kind).code == code


@pytest.mark.parametrize(("rule", "kind", "raw", "code"), named(*ORDER_CASES))
def test_earlier_check_answers(rule: str, kind: str, raw: bytes, code: ErrorCode) -> None:
    assert rejected(raw, kind).code == code


def test_every_code_the_codec_owns_has_a_case() -> None:
    owned = {
        1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1409, 1413, 6108, 10000, 10001, 10003,
        11008, 13101, 13113, 13114, 13115, 13116, 13117, 13118, 13119, 13120, 13121, 13122,
        13126, 13127, 13129, 13130,
    }  # fmt: skip
    assert owned <= {code for *_, code in CASES}


def test_details_name_the_field() -> None:
    assert rejected(message(env={"device_id": DROP})).detail == "device_id"
    assert rejected(message(D, body={"chipsets.1.id": "x y"}), D).detail.startswith(
        "body.chipsets[1].id"
    )
    rejection = rejected(message(body={"primary": False}))
    assert rejection.message == message_for(E.FIELD_VIOLATION, rejection.detail)


# --- valid messages of SPEC section 3 --------------------------------------------------------


@pytest.mark.parametrize("encoding", [0, 1])
def test_valid_query_parses(encoding: int) -> None:
    request = accepted(message(encoding=encoding))
    assert request.body == ProvisionQuery(
        system_id=SYSTEM,
        sub_system_id=SUB,
        vin=VIN,
        device_id=TCU,
        ecu_type="TCU",
        primary=True,
        region_code="NA",
        country_code="US",
    )
    envelope = request.envelope
    assert (envelope.message_id, envelope.correlation_id) == ("msg-0001", None)
    assert envelope.version == "v1"
    assert (envelope.system_id, envelope.sub_system_id, envelope.vin) == (SYSTEM, SUB, VIN)
    assert (envelope.device_id, envelope.ecu_type) == (TCU, "TCU")
    assert (envelope.source_id, envelope.target_id) == ("c2c-edge", "c2c-cloud")
    assert (envelope.message_type, envelope.time, envelope.ttl) == (Q, NOW - 10, -1)
    assert (envelope.status, envelope.body_encoding_type) == ("SUBMIT", encoding)
    assert envelope.property_bag == {"body_encoding_type": encoding}
    assert request.reply_to == valid_reply_to(encoding)


@pytest.mark.parametrize("encoding", [0, 1])
def test_valid_device_provision_parses(encoding: int) -> None:
    request = accepted(message(D, encoding=encoding), D)
    assert request.body == DeviceProvision(
        system_id=SYSTEM,
        sub_system_id=SUB,
        vin=VIN,
        device_id=TCU,
        ecu_type="TCU",
        primary=True,
        ecu_model="T100",
        ecu_make="Acme",
        vehicle_info={"class": "SUV", "style": "5D", "model": "X1", "year": "2025"},
        chipsets_count=2,
        chipsets=(
            Chipset("chip-1", "modem", "LTE", "ACTIVE", "1", "1.2.3", "B", "SKU-1"),
            Chipset("chip-2", None, None, None, None, None, None, None),
        ),
        region_code="NA",
        country_code="US",
        sim_info={"iccid": "8901"},
        communication_channel=["MQTT"],
        configuration={"telemetry": True},
        privacy_flag=False,
    )
    assert request.reply_to.body_encoding_type == encoding


@pytest.mark.parametrize(
    ("rule", "kind", "raw"),
    named(
        ("query with device_id for deviceId", Q,
         message(body={"deviceId": DROP, "device_id": TCU})),
        ("query with both spellings agreeing", Q, message(body={"device_id": TCU})),
        ("query with a lifecyclestate field", Q, message(body={"lifecyclestate": "X"})),
        ("device provisioning with lifecycyclestate (sic)", D, message(D)),
        ("device provisioning with lifecyclestate", D,
         message(D, body={"lifecycyclestate": DROP, "lifecyclestate": "PROVISIONED"})),
        ("device provisioning with deviceId", D,
         message(D, body={"device_id": DROP, "deviceId": TCU})),
        ("device provisioning with a top-level ecu_type", D,
         message(D, body={"device_info.ecu_type": DROP, "ecu_type": "TCU"})),
        ("device provisioning without chipsets when none are counted", D,
         message(D, body={"chipsets_count": 0, "chipsets": DROP})),
        ("header without vin and sub_system_id", Q,
         message(env={"vin": DROP, "sub_system_id": DROP})),
        ("header vin null", Q, message(env={"vin": None})),
        ("ttl absent", Q, message(env={"ttl": DROP})),
        ("ttl null", Q, message(env={"ttl": None})),
        ("ttl reaching exactly now", Q, message(env={"time": NOW - 60, "ttl": 60})),
        ("a correlation_id on the request", Q, message(env={"correlation_id": "abc"})),
        ("extra property_bag entries", Q, message(env={"property_bag.trace": "t-1"})),
        ("unknown extra fields", D, message(D, env={"extra": 1}, body={"extra": [1]})),
        ("a refrigerator", D,
         message(D, env={"ecu_type": "REFRIGERATOR"},
                 body={"device_info.ecu_type": "REFRIGERATOR"})),
    ),
)
def test_accepted_variant(rule: str, kind: str, raw: bytes) -> None:
    accepted(raw, kind)


def test_optional_device_fields_default() -> None:
    changes = {key: DROP for key in ("device_info", "SIMInfo", "communication_channel",
                                      "configuration", "privacyFlag", "lifecycyclestate")}
    changes["ecu_type"] = "TCU"
    body = accepted(message(D, body=changes), D).body
    assert isinstance(body, DeviceProvision)
    assert (body.primary, body.ecu_model, body.ecu_make) == (False, None, None)
    assert (body.sim_info, body.communication_channel, body.configuration) == ({}, [], {})
    assert body.privacy_flag is False


def test_reply_to_takes_vin_and_sub_system_from_the_body_when_the_header_lacks_them() -> None:
    request = accepted(message(env={"vin": DROP, "sub_system_id": DROP}))
    assert request.envelope.vin is None and request.envelope.sub_system_id is None
    assert (request.reply_to.vin, request.reply_to.sub_system_id) == (VIN, SUB)


def test_payload_of_exactly_the_limit_is_accepted() -> None:
    raw = message()
    assert isinstance(decode(raw, config=dataclasses.replace(CONFIG, max_payload_bytes=len(raw))),
                      Request)
    too_small = dataclasses.replace(CONFIG, max_payload_bytes=len(raw) - 1)
    assert decode(raw, config=too_small).code == E.PAYLOAD_TOO_LARGE  # type: ignore[union-attr]


def test_ecu_types_come_from_configuration() -> None:
    raw = message(env={"ecu_type": "GATEWAY"}, body={"ecu_type": "GATEWAY"})
    assert decode(raw).code == E.FIELD_VIOLATION  # type: ignore[union-attr]
    config = dataclasses.replace(CONFIG, ecu_states={**CONFIG.ecu_states, "GATEWAY": "ACTIVE"})
    assert isinstance(decode(raw, config=config), Request)


def test_unsupported_expected_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decode(message(), PROVISION_QUERY_RESPONSE)


def test_bytearray_memoryview_and_str_are_accepted_as_raw() -> None:
    raw = message()
    for variant in (bytearray(raw), memoryview(raw), raw.decode()):
        assert isinstance(decode(variant), Request)  # type: ignore[arg-type]
    assert decode(None).code == E.NOT_JSON  # type: ignore[arg-type, union-attr]


# --- wire compatibility: what deployed edge software sends (docs/spec.md 3.6) ---------------------

V2_CODES = {Q: 1, D: 4}


def message_v2(
    kind: str = Q, *, env: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
    encoding: int = 0, bag: str = "propertyBag",
) -> bytes:
    """A valid v2 message: integer message type, no vin, ecu_type or status in the header."""
    doc = json.loads(message(kind, body=body, encoding=encoding))
    for key in ("vin", "ecu_type", "status"):
        del doc[key]
    doc.update(version="v2", message_type=V2_CODES[kind])
    if bag == "propertyBag":
        del doc["property_bag"]
        doc["propertyBag"] = {"bodyEncodingType": encoding}
    apply(doc, env or {})
    return json.dumps(doc).encode()


def camel(raw: bytes) -> bytes:
    """The same message with its property bag spelt propertyBag/bodyEncodingType."""
    doc = json.loads(raw)
    encoding = doc.pop("property_bag")["body_encoding_type"]
    doc["propertyBag"] = {"bodyEncodingType": encoding}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("rule", "kind", "raw"),
    named(
        ("query with a blank body deviceId takes the envelope's", Q,
         message(body={"deviceId": ""})),
        ("query without any body device id takes the envelope's", Q,
         message(body={"deviceId": DROP})),
        ("device provisioning with a blank body device_id takes the envelope's", D,
         message(D, body={"device_id": ""})),
        ("device provisioning with a whitespace body device_id takes the envelope's", D,
         message(D, body={"device_id": "  "})),
        ("device provisioning without a body device id takes the envelope's", D,
         message(D, body={"device_id": DROP})),
        ("v2 query with a blank body device id", Q, message_v2(body={"deviceId": ""})),
    ),
)
def test_blank_body_device_id_is_the_envelopes(rule: str, kind: str, raw: bytes) -> None:
    request = accepted(raw, kind)
    assert request.body.device_id == request.envelope.device_id == TCU
    assert request.reply_to.device_id == TCU


def test_body_device_id_naming_another_device_still_disagrees() -> None:
    assert rejected(message(D, body={"device_id": IVI}), D).code == E.HEADER_BODY_MISMATCH
    assert rejected(message(body={"deviceId": IVI}), Q).code == E.HEADER_BODY_MISMATCH


@pytest.mark.parametrize(
    ("region", "country", "stored"),
    [
        ("na", "ca", ("NA", "CA")),
        ("Na", "Ca", ("NA", "CA")),
        ("eu", "de", ("EU", "DE")),
        ("NA", "us", ("NA", "US")),
        ("a1", "US", ("A1", "US")),
    ],
)
@pytest.mark.parametrize("kind", [Q, D])
def test_region_and_country_codes_are_case_insensitive_and_stored_upper_case(
    kind: str, region: str, country: str, stored: tuple[str, str]
) -> None:
    raw = message(kind, body={"region_info": {"region_code": region, "country_code": country}})
    body = accepted(raw, kind).body
    assert (body.region_code, body.country_code) == stored


@pytest.mark.parametrize("country", ["ß", "ı" + "t", "Ｕｓ", "u", ""])
def test_country_codes_that_only_unicode_would_upper_case_are_refused(country: str) -> None:
    raw = message(D, body={"region_info.country_code": country})
    code = E.COUNTRY_CODE_MISSING if not country else E.FIELD_VIOLATION
    assert rejected(raw, D).code == code


@pytest.mark.parametrize(
    ("sku", "stored"), [(667, "667"), ("667", "667"), (0, "0"), (-3, "-3"), ("SKU-1", "SKU-1"),
                        (None, None)],
)
def test_program_sku_id_number_or_string_is_stored_as_a_string(sku: Any, stored: Any) -> None:
    body = accepted(message(D, body={"chipsets.0.program_sku_id": sku}), D).body
    assert isinstance(body, DeviceProvision)
    assert body.chipsets[0].program_sku_id == stored


@pytest.mark.parametrize("blank", ["", "   ", None, DROP])
def test_chipset_without_an_id_yet_is_accepted_as_none(blank: Any) -> None:
    body = accepted(message(D, body={"chipsets.0.id": blank, "chipsets.1.id": blank}), D).body
    assert isinstance(body, DeviceProvision)
    assert [chip.id for chip in body.chipsets] == [None, None]
    assert body.chipsets[0].name == "modem"


def test_chipset_ids_that_are_given_must_still_be_unique() -> None:
    raw = message(D, body={"chipsets.0.id": "", "chipsets.1.id": "chip-1"})
    body = accepted(raw, D).body
    assert isinstance(body, DeviceProvision)
    assert [chip.id for chip in body.chipsets] == [None, "chip-1"]
    dup = message(D, body={"chipsets_count": 3, "chipsets.1.id": "chip-1"})
    doc = json.loads(dup)
    doc["body"]["chipsets"].append({"id": ""})
    assert rejected(json.dumps(doc).encode(), D).code == E.FIELD_VIOLATION


@pytest.mark.parametrize(
    ("rule", "kind", "raw"),
    named(
        ("status SUCCESS on a request", D, message(D, env={"status": "SUCCESS"})),
        ("ecu_make blank", D, message(D, body={"device_info.ecu_make": ""})),
        ("ttl absent", D, message(D, env={"ttl": DROP})),
        ("camelCase property bag", Q, camel(message())),
        ("camelCase property bag with a base64 body", D, camel(message(D, encoding=1))),
        ("both bag spellings, agreeing", Q,
         message(env={"propertyBag": {"body_encoding_type": 0}})),
        ("bodyEncodingType inside property_bag", Q,
         message(env={"property_bag": {"bodyEncodingType": 0}})),
        ("both encoding spellings, agreeing", Q,
         message(env={"property_bag.bodyEncodingType": 0})),
        ("v1 with an integer message type code", Q, message(env={"message_type": 1})),
    ),
)
def test_tolerated_variant(rule: str, kind: str, raw: bytes) -> None:
    accepted(raw, kind)


@pytest.mark.parametrize(
    ("rule", "raw", "code"),
    named(
        ("both bag spellings, disagreeing -> 13122",
         message(env={"propertyBag": {"body_encoding_type": 1}}), E.FIELD_VIOLATION),
        ("both encoding spellings, disagreeing -> 13122",
         message(env={"property_bag.bodyEncodingType": 1}), E.FIELD_VIOLATION),
        ("encoding spellings 0 and false -> 13122",
         message(env={"property_bag.bodyEncodingType": False}), E.FIELD_VIOLATION),
        ("camelCase bag without an encoding -> 13114",
         message(env={"property_bag": DROP, "propertyBag": {}}), E.PROPERTY_BAG_MISSING),
        ("camelCase bag not an object -> 13114",
         message(env={"property_bag": DROP, "propertyBag": "1"}), E.PROPERTY_BAG_MISSING),
        ("bodyEncodingType a string -> 13127",
         message(env={"property_bag": DROP, "propertyBag": {"bodyEncodingType": "1"}}),
         E.BODY_ENCODING_NOT_INTEGER),
        ("bodyEncodingType 2 -> 13126",
         message(env={"property_bag": DROP, "propertyBag": {"bodyEncodingType": 2}}),
         E.BODY_ENCODING_UNSUPPORTED),
    ),
)
def test_property_bag_spellings_refused(rule: str, raw: bytes, code: ErrorCode) -> None:
    assert rejected(raw).code == code


@pytest.mark.parametrize(
    ("sent", "seconds"),
    [
        (NOW - 10, NOW - 10),
        ((NOW - 10) * 1000, NOW - 10),
        ((NOW - 10) * 1000 + 999, NOW - 10),
        (10**11 - 1, 10**11 - 1),  # the largest value read as seconds
        (10**11, 10**8),  # the smallest read as milliseconds
        (0, 0),
    ],
)
def test_time_in_seconds_or_milliseconds_is_kept_in_seconds(sent: int, seconds: int) -> None:
    assert accepted(message(env={"time": sent})).envelope.time == seconds


def test_ttl_counts_seconds_whatever_the_unit_of_time() -> None:
    fresh = message(env={"time": (NOW - 60) * 1000, "ttl": 60})
    assert accepted(fresh).envelope.time == NOW - 60
    stale = message(env={"time": (NOW - 61) * 1000, "ttl": 60})
    assert rejected(stale).code == E.MESSAGE_EXPIRED


@pytest.mark.parametrize("kind", [Q, D])
@pytest.mark.parametrize("encoding", [0, 1])
@pytest.mark.parametrize("bag", ["propertyBag", "property_bag"])
def test_v2_message_parses_like_v1(kind: str, encoding: int, bag: str) -> None:
    v2 = accepted(message_v2(kind, encoding=encoding, bag=bag), kind)
    v1 = accepted(message(kind, encoding=encoding), kind)
    assert v2.body == v1.body
    envelope = v2.envelope
    assert (envelope.version, envelope.message_type) == ("v2", kind)
    assert (envelope.vin, envelope.ecu_type, envelope.status) == (None, None, None)
    assert envelope.bag_spelling == bag
    assert v2.reply_to == dataclasses.replace(v1.reply_to, version="v2", bag_spelling=bag)
    assert (v2.reply_to.vin, v2.reply_to.ecu_type) == (VIN, "TCU")  # from the body


@pytest.mark.parametrize(
    ("rule", "kind", "raw"),
    named(
        ("v2 with a vin, ecu_type and status in the header anyway", Q,
         message_v2(env={"vin": VIN, "ecu_type": "TCU", "status": "SUBMIT"})),
        ("v2 with the message type by name", D,
         message_v2(D, env={"message_type": DEVICE_PROVISION})),
        ("v2 with the snake-case bag", Q, message_v2(bag="property_bag")),
        ("v2 with time in milliseconds", Q, message_v2(env={"time": (NOW - 10) * 1000})),
        ("v2 with a blank status", Q, message_v2(env={"status": ""})),
    ),
)
def test_v2_variant(rule: str, kind: str, raw: bytes) -> None:
    accepted(raw, kind)


@pytest.mark.parametrize(
    ("rule", "kind", "raw", "code"),
    named(
        ("v2 PROVISION_QUERY_RESPONSE code on the query topic -> 13115", Q,
         message_v2(env={"message_type": 3}), E.WRONG_MESSAGE_TYPE),
        ("v2 DEVICE_PROVISION code on the query topic -> 13115", Q,
         message_v2(env={"message_type": 4}), E.WRONG_MESSAGE_TYPE),
        ("v2 PROVISION_QUERY code on the device topic -> 13115", D,
         message_v2(D, env={"message_type": 1}), E.WRONG_MESSAGE_TYPE),
        ("v2 unknown code -> 13115", Q, message_v2(env={"message_type": 301}),
         E.WRONG_MESSAGE_TYPE),
        ("v2 code 0 (INVALID) -> 13115", Q, message_v2(env={"message_type": 0}),
         E.WRONG_MESSAGE_TYPE),
        ("v2 huge code -> 13115", Q, message_v2(env={"message_type": 2**70}),
         E.WRONG_MESSAGE_TYPE),
        ("v2 code as a numeric string -> 13115", Q, message_v2(env={"message_type": "1"}),
         E.WRONG_MESSAGE_TYPE),
        ("v2 message type a boolean -> 13122", Q, message_v2(env={"message_type": True}),
         E.FIELD_VIOLATION),
        ("v2 message type a float -> 13122", Q, message_v2(env={"message_type": 1.0}),
         E.FIELD_VIOLATION),
        ("v2 message type missing -> 1007", Q, message_v2(env={"message_type": DROP}),
         E.MESSAGE_TYPE_MISSING),
        ("v2 device_id missing -> 1003", Q, message_v2(env={"device_id": DROP}),
         E.DEVICE_ID_MISSING),
        ("v2 query without a body ecu_type -> 13129", Q,
         message_v2(body={"ecu_type": DROP}), E.QUERY_FIELD_MISSING),
        ("v2 device provisioning without any ecu_type -> 1004", D,
         message_v2(D, body={"device_info.ecu_type": DROP}), E.ECU_TYPE_MISSING),
        ("v2 device provisioning with an unknown ECU type -> 13122", D,
         message_v2(D, body={"device_info.ecu_type": "TOASTER"}), E.FIELD_VIOLATION),
        ("v2 query with a bad vin -> 13101", Q, message_v2(body={"vin": "vin-100"}),
         E.QUERY_VIN_INVALID),
        ("v2 header ecu_type disagreeing with the body -> 13130", Q,
         message_v2(env={"ecu_type": "IVI"}), E.HEADER_BODY_MISMATCH),
        ("v2 header ecu_type outside the alphabet -> 13122", Q,
         message_v2(env={"ecu_type": "T C U"}), E.FIELD_VIOLATION),
        ("v2 status not a string -> 13122", Q, message_v2(env={"status": 1}),
         E.FIELD_VIOLATION),
        ("v2 chipsets count disagreeing -> 11008", D,
         message_v2(D, body={"chipsets_count": 3}), E.CHIPSETS_COUNT_MISMATCH),
        ("v1 still needs ecu_type in the header -> 1004", Q,
         message(env={"ecu_type": DROP}), E.ECU_TYPE_MISSING),
        ("v1 still needs status -> 10001", Q, message(env={"status": DROP}), E.STATUS_MISSING),
        ("v1 unknown integer code -> 13115", Q, message(env={"message_type": 2}),
         E.WRONG_MESSAGE_TYPE),
    ),
)
def test_v2_rule(rule: str, kind: str, raw: bytes, code: ErrorCode) -> None:
    assert rejected(raw, kind).code == code


def test_v2_can_be_switched_off_by_configuration() -> None:
    v1_only = dataclasses.replace(CONFIG, supported_versions=("v1",))
    result = decode(message_v2(), config=v1_only)
    assert isinstance(result, Rejection) and result.code == E.VERSION_UNSUPPORTED
    # answered in v2 and in the request's bag spelling all the same
    assert result.reply_to is not None
    assert (result.reply_to.version, result.reply_to.bag_spelling) == ("v2", "propertyBag")


@pytest.mark.parametrize(
    ("raw", "version", "bag", "encoding"),
    [
        (message(body={"primary": False}), "v1", "property_bag", 0),
        (camel(message(body={"primary": False}, encoding=1)), "v1", "propertyBag", 1),
        (message_v2(body={"primary": False}, encoding=1), "v2", "propertyBag", 1),
        (message_v2(body={"primary": False}, bag="property_bag"), "v2", "property_bag", 0),
        (message_v2(env={"message_type": 99}), "v2", "propertyBag", 0),
        (message(env={"version": "v9"}), "v1", "property_bag", 0),
    ],
)
def test_rejection_answers_in_the_requests_version_and_spelling(
    raw: bytes, version: str, bag: str, encoding: int
) -> None:
    reply_to = rejected(raw).reply_to
    assert reply_to is not None
    assert (reply_to.version, reply_to.bag_spelling) == (version, bag)
    assert reply_to.body_encoding_type == encoding
    assert (reply_to.vin, reply_to.ecu_type) == (VIN, "TCU")


# --- whom a rejection answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "raw"),
    named(
        ("payload too large", message(env={"pad": "x" * 70_000})),
        ("not JSON", b"garbage"),
        ("JSON but not an object", b"[]"),
        ("no device id anywhere", message(env={"device_id": DROP}, body={"deviceId": DROP})),
        ("device ids that are not identifiers",
         message(env={"device_id": "a b"}, body={"deviceId": "c d"})),
    ),
)
def test_unanswerable_rejection_has_no_reply_to(rule: str, raw: bytes) -> None:
    assert rejected(raw).reply_to is None


def test_rejection_reply_to_holds_what_is_known() -> None:
    rejection = rejected(message(body={"primary": False}))
    assert rejection.reply_to == valid_reply_to()


@pytest.mark.parametrize("encoding", [0, 1])
def test_rejection_without_header_device_answers_the_body_device(encoding: int) -> None:
    raw = message(encoding=encoding, env={"device_id": DROP, "vin": DROP, "system_id": DROP})
    rejection = rejected(raw)
    assert rejection.code == E.SYSTEM_ID_MISSING
    assert rejection.reply_to is not None
    assert (rejection.reply_to.device_id, rejection.reply_to.vin) == (TCU, VIN)
    assert (rejection.reply_to.system_id, rejection.reply_to.body_encoding_type) == (
        SYSTEM,
        encoding,
    )


def test_rejection_reply_to_never_echoes_invalid_values() -> None:
    raw = message(
        env={"message_id": "x" * 100, "system_id": 5, "vin": "bad", "ecu_type": "T C U",
             "property_bag.body_encoding_type": "1"},
        body={"vin": "also bad", "system_id": "s p", "ecu_type": []},
    )
    reply_to = rejected(raw).reply_to
    # sub_system_id and device_id were valid; the rest is left out
    assert reply_to == dataclasses.replace(valid_reply_to(), message_id=None, system_id=None,
                                           vin=None, ecu_type=None)


def test_rejection_with_unsupported_encoding_answers_with_encoding_0() -> None:
    reply_to = rejected(message(env={"property_bag.body_encoding_type": 7})).reply_to
    assert reply_to is not None and reply_to.body_encoding_type == 0


# --- identifier and VIN rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("vin", "valid"),
    [
        (VIN, True),
        ("WVWZZZ1JZXW000001", True),
        (VIN[:16], False),
        (VIN + "0", False),
        ("1HGCM82633A00435I", False),
        ("1HGCM82633A00435O", False),
        ("1HGCM82633A00435Q", False),
        (VIN.lower(), False),
        (" " + VIN[1:], False),
        ("1HGCM82633A00435\n", False),
        (None, False),
        (12345678901234567, False),
    ],
)
def test_vin_rule(vin: object, valid: bool) -> None:
    assert is_valid_vin(vin) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("c2c-sys-00000001", True),
        ("a.b_c-D9", True),
        ("x" * 23, True),
        ("x" * 24, False),
        ("", False),
        ("a b", False),
        ("a/b", False),
        ("é", False),
        ("١٢", False),  # non-ASCII digits
        ("abc\n", False),
        (None, False),
        (42, False),
    ],
)
def test_identifier_rule(value: object, valid: bool) -> None:
    assert is_valid_identifier(value, MAX_LEN["system_id"]) is valid


# --- section 6: who may do what (answered with 1401) -----------------------------------------

OPTIONAL = CONFIG
MANDATORY = dataclasses.replace(CONFIG, require_authenticated_header=True)


@pytest.mark.parametrize(
    ("rule", "header", "allowed", "config", "allowed_to_act"),
    named(
        ("query from the authenticated device is allowed", TCU, {TCU}, OPTIONAL, True),
        ("query naming another device -> 1401", IVI, {TCU}, OPTIONAL, False),
        ("secondary device through the primary's connection is allowed", TCU, {TCU, IVI},
         OPTIONAL, True),
        ("header naming a device of another vehicle -> 1401", "TCU-9", {TCU, IVI}, OPTIONAL,
         False),
        ("header absent where optional is allowed", None, {TCU}, OPTIONAL, True),
        ("header absent where mandatory -> 1401", None, {TCU}, MANDATORY, False),
        ("header present where mandatory is checked", TCU, {TCU}, MANDATORY, True),
        ("empty header -> 1401", "", {TCU}, OPTIONAL, False),
        ("header as raw bytes is decoded", TCU.encode(), {TCU}, OPTIONAL, True),
        ("header bytes naming another device -> 1401", IVI.encode(), {TCU}, OPTIONAL, False),
        ("header bytes not UTF-8 -> 1401", b"\xff\xfe", {TCU}, OPTIONAL, False),
        ("no allowed devices at all -> 1401", TCU, set(), OPTIONAL, False),
        ("header differing only in case -> 1401", TCU.lower(), {TCU}, OPTIONAL, False),
    ),
)
def test_check_sender(
    rule: str, header: str | bytes | None, allowed: set[str], config: Any, allowed_to_act: bool
) -> None:
    reason = check_sender(header, allowed_device_ids=allowed, config=config)
    if allowed_to_act:
        assert reason is None
    else:
        assert isinstance(reason, str) and reason
        assert config.authenticated_header in reason


def test_check_sender_refuses_a_str_as_the_allowed_collection() -> None:
    # "TCU-1" in "TCU-12" would be True: a plain string must never stand for the id set.
    with pytest.raises(TypeError):
        check_sender("TCU-1", allowed_device_ids="TCU-12", config=CONFIG)


def test_check_sender_reason_never_echoes_a_junk_header() -> None:
    reason = check_sender("evil\nlog line", allowed_device_ids={TCU}, config=CONFIG)
    assert reason is not None and "\n" not in reason


# --- the rule tables follow SPEC's order -------------------------------------------------------

# Field order of SPEC section 3's envelope table (the body is decoded later, step 6), of 3.1 and
# of 3.3. A nested field ranks as the object holding it; a DEVICE_PROVISION body may also carry
# ecu_type at its top level, read with device_info's.
SPEC_ENVELOPE = (
    "message_id", "correlation_id", "version", "system_id", "sub_system_id", "vin", "device_id",
    "ecu_type", "source_id", "target_id", "message_type", "time", "ttl", "status", "property_bag",
)
SPEC_QUERY = (
    "system_id", "sub_system_id", "vin", "device_id", "ecu_type", "primary", "region_info",
)
SPEC_DEVICE = (
    "system_id", "sub_system_id", "vin", "vehicle_info", "device_id", "device_info",
    "chipsets_count", "chipsets", "region_info", "SIMInfo", "communication_channel",
    "configuration", "privacyFlag",
)


def spec_fields(rules: tuple[Rule, ...], aliases: dict[str, str]) -> list[str]:
    """The SPEC field of each rule, in table order, runs of the same field counted once."""
    fields = [aliases.get(rule.key, rule.key.partition(".")[0]) for rule in rules]
    return [f for i, f in enumerate(fields) if i == 0 or fields[i - 1] != f]


@pytest.mark.parametrize(
    "rule, rules, aliases, spec",
    named(
        ("envelope table in SPEC 3 order", _ENVELOPE, {}, SPEC_ENVELOPE),
        ("query table in SPEC 3.1 order", _QUERY, {}, SPEC_QUERY),
        ("device table in SPEC 3.3 order", _DEVICE, {"ecu_type": "device_info"}, SPEC_DEVICE),
    ),
)
def test_rule_table_follows_the_spec_order(
    rule: str, rules: tuple[Rule, ...], aliases: dict[str, str], spec: tuple[str, ...]
) -> None:
    assert spec_fields(rules, aliases) == list(spec)


def test_envelope_table_answers_the_spec_missing_codes() -> None:
    missing = {rule.key.partition(".")[0]: rule.missing for rule in _ENVELOPE if rule.missing}
    assert missing == {
        "message_id": ErrorCode.MESSAGE_ID_MISSING,  # 1002
        "version": ErrorCode.VERSION_UNSUPPORTED,  # 1409
        "system_id": ErrorCode.SYSTEM_ID_MISSING,  # 1001
        "device_id": ErrorCode.DEVICE_ID_MISSING,  # 1003
        "ecu_type": ErrorCode.ECU_TYPE_MISSING,  # 1004
        "source_id": ErrorCode.SOURCE_ID_MISSING,  # 1005
        "target_id": ErrorCode.TARGET_ID_MISSING,  # 1006
        "message_type": ErrorCode.MESSAGE_TYPE_MISSING,  # 1007
        "time": ErrorCode.TIME_MISSING,  # 1008
        "status": ErrorCode.STATUS_MISSING,  # 10001
        "property_bag": ErrorCode.PROPERTY_BAG_MISSING,  # 13114
    }


def test_agreement_follows_the_spec_order() -> None:
    # SPEC 4 lists system_id, vin, device_id, ecu_type; sub_system_id is checked too (copied to
    # the response), in the envelope's order.
    spec = ["system_id", "vin", "device_id", "ecu_type"]
    assert [f for f in _AGREEMENT if f != "sub_system_id"] == spec
    assert list(_AGREEMENT) == [f for f in SPEC_ENVELOPE if f in _AGREEMENT]


OTHER_VIN = "1HGCM82633A004353"


@pytest.mark.parametrize(
    ("rule", "raw", "vin"),
    named(
        ("v1 query: the body's vin", message(), VIN),
        ("v2 query (no vin in the header): the body's vin", message_v2(), VIN),
        ("v2 device provisioning, base64 body: the body's vin", message_v2(D, encoding=1), VIN),
        ("camelCase property bag, base64 body", camel(message(D, encoding=1)), VIN),
        ("header and body disagree: the body's vin (validation answers 13130)",
         message(env={"vin": OTHER_VIN}), VIN),
        ("v1 body without a vin: the header's", message(body={"vin": DROP}), VIN),
        ("v1 body with an invalid vin: the header's", message(body={"vin": "not-a-vin"}), VIN),
        ("v2 body without a vin: none", message_v2(body={"vin": DROP}), None),
        ("body not base64: the header's", message(env={"body": "%%%",
                                                       "property_bag.body_encoding_type": 1}),
         VIN),
        ("not JSON", b"\xff\xfe{", None),
        ("a JSON array", b"[1, 2]", None),
        ("empty", b"", None),
        ("no value (a tombstone)", None, None),
        ("nesting too deep", b"[" * 100_000, None),
        ("a duplicate key", b'{"vin": "1HGCM82633A004352", "vin": "1HGCM82633A004353"}', None),
        ("over the size limit", message() + b" " * CONFIG.max_payload_bytes, None),
    ),
)
def test_routing_vin(rule: str, raw: bytes | None, vin: str | None) -> None:
    assert routing_vin(raw, max_payload_bytes=CONFIG.max_payload_bytes) == vin
