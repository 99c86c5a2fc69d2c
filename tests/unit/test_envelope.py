"""The envelope encoders: responses per docs/spec.md section 3.5, requests, and parse_response."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from vprov.config import load
from vprov.core.codes import ErrorCode, message_for
from vprov.core.envelope import (
    DEVICE_PROVISION,
    DEVICE_PROVISION_RESPONSE,
    PROVISION_QUERY,
    PROVISION_QUERY_RESPONSE,
    Rejection,
    ReplyTo,
    Request,
    build_request,
    build_response,
    device_response_body,
    parse_response,
    query_response_body,
)
from vprov.flows.common import reply_to_dict, reply_to_from
from vprov.flows.validation import decode_request

NOW = 1_700_000_123
VIN = "1HGCM82633A004352"
ENDPOINT = "mqtts://na.iot.vprov.example:8883"


def reply_to(encoding: int = 0) -> ReplyTo:
    return ReplyTo(
        message_id="req-42",
        system_id="c2c-sys-00000001",
        sub_system_id="c2c-sub-00000001",
        vin=VIN,
        device_id="TCU-0000000001",
        ecu_type="TCU",
        body_encoding_type=encoding,
    )


def query_success(encoding: int = 0) -> bytes:
    return build_response(
        reply_to(encoding),
        message_type=PROVISION_QUERY_RESPONSE,
        message_id="resp-1",
        now=NOW,
        body=query_response_body(ENDPOINT, "PROVISION_PENDING_REGIONAL"),
    )


def device_failure(encoding: int = 0) -> bytes:
    return build_response(
        reply_to(encoding),
        message_type=DEVICE_PROVISION_RESPONSE,
        message_id="resp-2",
        now=NOW,
        body=device_response_body("PROV_FAIL"),
        error=(ErrorCode.DEVICE_NOT_IN_REGION, message_for(ErrorCode.DEVICE_NOT_IN_REGION)),
    )


def test_success_response_carries_every_field_of_section_3_5() -> None:
    assert json.loads(query_success()) == {
        "message_id": "resp-1",
        "correlation_id": "req-42",
        "version": "v1",
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "vin": VIN,
        "device_id": "TCU-0000000001",
        "ecu_type": "TCU",
        "source_id": "c2c-cloud",
        "target_id": "c2c-edge",
        "message_type": PROVISION_QUERY_RESPONSE,
        "time": NOW,
        "ttl": -1,
        "status": "SUCCESS",
        "property_bag": {"body_encoding_type": 0},
        "body": {
            "iot_gateway_endpoint": ENDPOINT,
            "smqendpoint": "",
            "otaendoint": "",
            "lifecyclestate": "PROVISION_PENDING_REGIONAL",
        },
    }


def test_failure_response_has_status_fail_and_error_code_and_message() -> None:
    doc = json.loads(device_failure())
    assert doc["status"] == "FAIL"
    assert doc["message_type"] == DEVICE_PROVISION_RESPONSE
    assert doc["property_bag"] == {
        "body_encoding_type": 0,
        "error_code": 13123,
        "error_message": "device not found in this region",
    }
    assert type(doc["property_bag"]["error_code"]) is int
    assert doc["body"] == {"lifecycyclestate": "PROV_FAIL"}


def test_error_code_given_as_a_plain_int_is_emitted_as_an_int() -> None:
    raw = build_response(
        reply_to(), message_type=PROVISION_QUERY_RESPONSE, message_id="r", now=NOW,
        body=query_response_body("", "QRY_FAIL"), error=(13103, "system id is not registered"),
    )
    assert b'"error_code":13103' in raw


def test_encoding_1_sends_the_body_as_base64_of_compact_json() -> None:
    doc = json.loads(query_success(encoding=1))
    assert doc["property_bag"] == {"body_encoding_type": 1}
    assert isinstance(doc["body"], str)
    inner = base64.b64decode(doc["body"], validate=True)
    assert b" " not in inner
    assert json.loads(inner) == query_response_body(ENDPOINT, "PROVISION_PENDING_REGIONAL")


def test_failure_with_encoding_1_keeps_the_error_in_the_property_bag() -> None:
    doc = parse_response(device_failure(encoding=1))
    assert doc["property_bag"]["body_encoding_type"] == 1
    assert doc["property_bag"]["error_code"] == 13123
    assert doc["body"] == {"lifecycyclestate": "PROV_FAIL"}


def test_misspelt_wire_names_are_emitted_exactly() -> None:
    query = query_success()
    assert b'"otaendoint":""' in query
    assert b'"smqendpoint":""' in query
    assert b'"lifecyclestate":"PROVISION_PENDING_REGIONAL"' in query
    assert b'"lifecycyclestate":"PROV_FAIL"' in device_failure()
    assert query_response_body("e", "QRY_FAIL") == {
        "iot_gateway_endpoint": "e",
        "smqendpoint": "",
        "otaendoint": "",
        "lifecyclestate": "QRY_FAIL",
    }
    assert device_response_body("ACTIVE") == {"lifecycyclestate": "ACTIVE"}


@pytest.mark.parametrize("raw", [query_success(), device_failure(), query_success(1)])
def test_output_is_compact_json_with_sorted_keys(raw: bytes) -> None:
    doc = json.loads(raw)
    assert raw == json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    raw.decode("ascii")


def test_same_inputs_give_the_same_bytes() -> None:
    assert query_success() == query_success()
    assert device_failure(1) == device_failure(1)


def test_key_order_of_the_given_body_does_not_change_the_bytes() -> None:
    body = {"a": 1, "b": {"y": 2, "x": 3}}
    reordered = {"b": {"x": 3, "y": 2}, "a": 1}
    for encoding in (0, 1):
        first, second = (
            build_response(reply_to(encoding), message_type="T", message_id="m", now=NOW, body=b)
            for b in (body, reordered)
        )
        assert first == second


def test_non_ascii_error_message_is_valid_utf8_and_round_trips() -> None:
    text = "field violation: ecu_type 'Ümlaut'"
    raw = build_response(
        reply_to(), message_type=DEVICE_PROVISION_RESPONSE, message_id="m", now=NOW,
        body=device_response_body("PROV_FAIL"), error=(13122, text),
    )
    assert parse_response(raw)["property_bag"]["error_message"] == text


def test_answer_to_a_rejected_request_with_unknown_fields_uses_null() -> None:
    partial = ReplyTo(
        message_id=None, system_id=None, sub_system_id=None, vin=None, device_id="TCU-1",
        ecu_type=None, body_encoding_type=0,
    )
    doc = json.loads(
        build_response(
            partial, message_type=PROVISION_QUERY_RESPONSE, message_id="m", now=NOW,
            body=query_response_body("", "QRY_FAIL"), error=(13113, "message is not valid JSON"),
        )
    )
    assert doc["correlation_id"] is None and doc["vin"] is None
    assert doc["device_id"] == "TCU-1"


def test_unsupported_body_encoding_is_refused() -> None:
    with pytest.raises(ValueError):
        build_response(
            reply_to(encoding=2), message_type="T", message_id="m", now=NOW, body={"a": 1}
        )


def test_rejection_message_names_code_text_and_detail() -> None:
    rejection = Rejection(code=ErrorCode.FIELD_VIOLATION, detail="device_id", reply_to=None)
    assert rejection.message == "field violation: device_id"


# --- parse_response --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [0, 1])
def test_parse_response_round_trip(encoding: int) -> None:
    doc = parse_response(query_success(encoding))
    assert doc["body"] == query_response_body(ENDPOINT, "PROVISION_PENDING_REGIONAL")
    assert doc["correlation_id"] == "req-42"
    assert doc["property_bag"]["body_encoding_type"] == encoding


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b"not json",
        b'{"property_bag":{"body_encoding_type":1},"body":"!!"}',
        b'{"property_bag":{"body_encoding_type":1},"body":{"a":1}}',
        b'{"property_bag":{"body_encoding_type":0},"body":"e30="}',
        b'{"property_bag":{"body_encoding_type":0}}',
    ],
)
def test_parse_response_refuses_malformed_input(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_response(raw)


# --- build_request ---------------------------------------------------------------------------


def test_build_request_is_what_an_edge_device_sends() -> None:
    body = {"system_id": "c2c-sys-00000001", "vin": VIN}
    doc = json.loads(
        build_request(
            message_type=PROVISION_QUERY, message_id="m-1", system_id="c2c-sys-00000001",
            sub_system_id="c2c-sub-00000001", vin=VIN, device_id="TCU-1", ecu_type="TCU",
            body=body, now=NOW,
        )
    )
    assert doc == {
        "message_id": "m-1",
        "version": "v1",
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "vin": VIN,
        "device_id": "TCU-1",
        "ecu_type": "TCU",
        "source_id": "c2c-edge",
        "target_id": "c2c-cloud",
        "message_type": PROVISION_QUERY,
        "time": NOW,
        "ttl": -1,
        "status": "SUBMIT",
        "property_bag": {"body_encoding_type": 0},
        "body": body,
    }


@pytest.mark.parametrize("encoding", [0, 1])
def test_built_request_decodes_and_its_answer_correlates(encoding: int) -> None:
    body = {
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "vin": VIN,
        "device_id": "IVI-1",
        "vehicle_info": {"model": "X"},
        "device_info": {"ecu_type": "IVI", "primary": False},
        "chipsets_count": 0,
        "chipsets": [],
        "region_info": {"region_code": "EU", "country_code": "DE"},
    }
    raw = build_request(
        message_type=DEVICE_PROVISION, message_id="m-7", system_id="c2c-sys-00000001",
        sub_system_id="c2c-sub-00000001", vin=VIN, device_id="IVI-1", ecu_type="IVI", body=body,
        now=NOW, ttl=30, body_encoding_type=encoding,
    )
    request = decode_request(raw, expected_type=DEVICE_PROVISION, config=load(env={}), now=NOW)
    assert isinstance(request, Request)
    assert request.envelope.ttl == 30
    answer = parse_response(
        build_response(
            request.reply_to, message_type=DEVICE_PROVISION_RESPONSE, message_id="a-7",
            now=NOW + 1, body=device_response_body("PROVISIONED"),
        )
    )
    assert answer["correlation_id"] == "m-7"
    assert (answer["device_id"], answer["ecu_type"], answer["vin"]) == ("IVI-1", "IVI", VIN)
    assert answer["property_bag"]["body_encoding_type"] == encoding
    assert answer["body"] == {"lifecycyclestate": "PROVISIONED"}


# --- the request's dialect: version and property bag spelling (docs/spec.md 3.6) -----------------


def dialect(version: str = "v1", bag: str = "property_bag", encoding: int = 0) -> ReplyTo:
    return dataclasses.replace(reply_to(encoding), version=version, bag_spelling=bag)


def test_reply_to_stored_before_the_dialect_fields_still_loads() -> None:
    old = {
        "message_id": "req-42", "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001", "vin": VIN, "device_id": "TCU-0000000001",
        "ecu_type": "TCU", "body_encoding_type": 1,
    }  # fmt: skip
    loaded = reply_to_from(old)
    assert (loaded.version, loaded.bag_spelling) == ("v1", "property_bag")
    v2 = dialect("v2", "propertyBag")
    assert reply_to_from(reply_to_dict(v2)) == v2


@pytest.mark.parametrize(
    ("message_type", "code", "body"),
    [
        (PROVISION_QUERY_RESPONSE, 3, query_response_body(ENDPOINT, "PROVISION_PENDING_REGIONAL")),
        (DEVICE_PROVISION_RESPONSE, 6, device_response_body("PROVISIONED")),
    ],
)
def test_v2_answer_has_an_integer_type_and_no_vin_ecu_type_or_status(
    message_type: str, code: int, body: dict
) -> None:
    raw = build_response(
        dialect("v2", "propertyBag"), message_type=message_type, message_id="resp-1", now=NOW,
        body=body,
    )
    assert json.loads(raw) == {
        "message_id": "resp-1",
        "correlation_id": "req-42",
        "version": "v2",
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "device_id": "TCU-0000000001",
        "source_id": "c2c-cloud",
        "target_id": "c2c-edge",
        "message_type": code,
        "time": NOW,
        "ttl": -1,
        "propertyBag": {"bodyEncodingType": 0},
        "body": body,
    }


def test_v2_failure_carries_the_outcome_in_the_bag_and_the_body() -> None:
    raw = build_response(
        dialect("v2", "propertyBag", encoding=1), message_type=DEVICE_PROVISION_RESPONSE,
        message_id="resp-2", now=NOW, body=device_response_body("PROV_FAIL"),
        error=(13123, "device not found in this region"),
    )
    doc = parse_response(raw)
    assert "status" not in doc and "vin" not in doc and "ecu_type" not in doc
    assert doc["propertyBag"] == {
        "bodyEncodingType": 1,
        "errorCode": 13123,
        "errorMessage": "device not found in this region",
    }
    assert doc["body"] == {"lifecycyclestate": "PROV_FAIL"}


def test_v1_answer_with_the_camel_case_bag() -> None:
    raw = build_response(
        dialect("v1", "propertyBag"), message_type=PROVISION_QUERY_RESPONSE, message_id="r",
        now=NOW, body=query_response_body("", "QRY_FAIL"), error=(13103, "not registered"),
    )
    doc = json.loads(raw)
    assert "property_bag" not in doc
    assert doc["propertyBag"] == {
        "bodyEncodingType": 0, "errorCode": 13103, "errorMessage": "not registered"
    }
    assert (doc["version"], doc["message_type"], doc["status"]) == (
        "v1", PROVISION_QUERY_RESPONSE, "FAIL"
    )
    assert (doc["vin"], doc["ecu_type"]) == (VIN, "TCU")


@pytest.mark.parametrize(
    ("changes", "message_type"),
    [
        ({"version": "v3"}, PROVISION_QUERY_RESPONSE),
        ({"bag_spelling": "PropertyBag"}, PROVISION_QUERY_RESPONSE),
        ({"version": "v2"}, "SOMETHING_ELSE"),
    ],
)
def test_an_answer_in_an_unknown_dialect_is_refused(changes: dict, message_type: str) -> None:
    with pytest.raises(ValueError):
        build_response(
            dataclasses.replace(reply_to(), **changes), message_type=message_type,
            message_id="m", now=NOW, body={},
        )


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("bag", ["property_bag", "propertyBag"])
@pytest.mark.parametrize("encoding", [0, 1])
def test_parse_response_reads_both_versions_and_spellings(
    version: str, bag: str, encoding: int
) -> None:
    raw = build_response(
        dialect(version, bag, encoding), message_type=PROVISION_QUERY_RESPONSE, message_id="m",
        now=NOW, body=query_response_body("", "QRY_FAIL"), error=(13103, "not registered"),
    )
    doc = parse_response(raw)
    assert doc["body"] == query_response_body("", "QRY_FAIL")
    assert bag in doc
    normal = parse_response(raw, normalise=True)
    assert normal["property_bag"] == {
        "body_encoding_type": encoding, "error_code": 13103, "error_message": "not registered"
    }
    assert "propertyBag" not in normal
    assert normal["message_type"] == PROVISION_QUERY_RESPONSE
    assert normal["body"] == doc["body"]


@pytest.mark.parametrize("encoding", [0, 1])
@pytest.mark.parametrize("bag", ["property_bag", "propertyBag"])
def test_built_v2_request_decodes_and_is_answered_in_v2(encoding: int, bag: str) -> None:
    body = {
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "vin": VIN,
        "deviceId": "TCU-1",
        "ecu_type": "TCU",
        "primary": True,
        "region_info": {"region_code": "na", "country_code": "us"},
    }
    raw = build_request(
        message_type=PROVISION_QUERY, message_id="m-9", system_id="c2c-sys-00000001",
        sub_system_id="c2c-sub-00000001", vin=VIN, device_id="TCU-1", ecu_type="TCU", body=body,
        now=NOW * 1000, body_encoding_type=encoding, version="v2", bag_spelling=bag,
    )
    sent = json.loads(raw)
    assert (sent["version"], sent["message_type"]) == ("v2", 1)
    assert not {"vin", "ecu_type", "status"} & set(sent)
    assert sent[bag] == {"body_encoding_type" if bag == "property_bag" else "bodyEncodingType":
                         encoding}
    request = decode_request(raw, expected_type=PROVISION_QUERY, config=load(env={}), now=NOW)
    assert isinstance(request, Request)
    assert request.envelope.time == NOW
    assert (request.body.region_code, request.body.country_code) == ("NA", "US")
    answer = parse_response(
        build_response(
            request.reply_to, message_type=PROVISION_QUERY_RESPONSE, message_id="a-9", now=NOW,
            body=query_response_body(ENDPOINT, "PROVISION_PENDING_REGIONAL"),
        )
    )
    assert (answer["version"], answer["message_type"], answer["correlation_id"]) == ("v2", 3, "m-9")
    assert bag in answer and "vin" not in answer


def test_build_request_writes_an_integer_type_as_given() -> None:
    raw = build_request(
        message_type=301, message_id="m", system_id="s", sub_system_id="u", vin=VIN,
        device_id="d", ecu_type="TCU", body={"a": 1}, now=NOW, version="v2",
    )
    assert json.loads(raw)["message_type"] == 301
