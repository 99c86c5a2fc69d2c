"""The conformance corpus (tests/conformance): every published shape is accepted, normalised, and
answered in the request's own dialect (docs/spec.md 3.6, docs/wire-format.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flowkit import Flow, events, replies, vehicle

from tests.conformance import corpus
from vprov.config import load
from vprov.core.envelope import (
    DEVICE_PROVISION,
    DEVICE_PROVISION_RESPONSE,
    PROVISION_QUERY,
    PROVISION_QUERY_RESPONSE,
    DeviceProvision,
    ProvisionQuery,
    Request,
    build_response,
    device_response_body,
    parse_response,
    query_response_body,
)
from vprov.flows.validation import decode_request

CONFIG = load(env={})
NOW = 1_700_000_000
PUBLISHED_TIME = 1620891851  # seconds; the ms fixture sends it times 1000
FIXTURE_DEVICE = "TCU0000000000000001"
PAGES = "2192163/gp docs/messagestructure/"

# name -> (version, bag spelling, body encoding) the answer must use
DIALECTS: dict[str, tuple[str, str, int]] = {
    "device_provision_published": ("v1", "property_bag", 1),
    "device_provision_camelcase": ("v1", "propertyBag", 1),
    "device_provision_time_ms": ("v1", "property_bag", 1),
    "device_provision_no_ttl": ("v1", "property_bag", 1),
    "device_provision_v2": ("v2", "propertyBag", 1),
    "device_provision_encoding0": ("v1", "property_bag", 0),
    "provision_query": ("v1", "property_bag", 1),
    "provision_query_v2": ("v2", "propertyBag", 1),
}
VEHICLE = {
    "vin": "WVWZZZ1JZXW000001",
    "system_id": "c2c-sys-4711",
    "sub_system_id": "c2c-sub-4711",
    "device_id": "IVI-4711",
    "ecu_type": "IVI",
}


def kind(name: str) -> str:
    return corpus.index()[name]["message_type"]


def decoded(raw: bytes, name: str) -> Request:
    result = decode_request(raw, expected_type=kind(name), config=CONFIG, now=NOW)
    assert isinstance(result, Request), f"{name}: {result}"
    return result


def test_every_fixture_is_indexed_and_cites_its_source() -> None:
    files = {path.stem for path in Path(corpus.HERE).glob("*.json")} - {"index"}
    assert files == set(corpus.names()) == set(DIALECTS)
    for name, entry in corpus.index().items():
        assert entry["message_type"] in (PROVISION_QUERY, DEVICE_PROVISION)
        assert PAGES in entry.get("envelope_source", entry["source"]), name
        if entry["published"]:
            assert entry["source"] == PAGES + "deviceprovisioning.md", name
        json.loads(corpus.raw(name))  # valid JSON, no comments left


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_fixture_as_stored_is_accepted_and_normalised(name: str) -> None:
    request = decoded(corpus.raw(name), name)
    body = request.body
    assert (body.region_code, body.country_code) == ("NA", "CA")  # "ca" on the wire
    assert body.device_id == request.envelope.device_id == FIXTURE_DEVICE
    assert request.envelope.time == PUBLISHED_TIME
    assert request.envelope.ttl == -1
    assert request.envelope.message_type == kind(name)
    assert (request.reply_to.vin, request.reply_to.ecu_type) == ("1G1FB1RS0M0000001", "TCU")
    if isinstance(body, DeviceProvision):
        assert body.chipsets_count == 2
        assert [chip.id for chip in body.chipsets] == [None, None]
        assert [chip.program_sku_id for chip in body.chipsets] == ["667", "667"]
        assert [chip.state for chip in body.chipsets] == ["UNREGISTERED"] * 2
        assert body.ecu_make == ""
        assert body.primary is True
    else:
        assert isinstance(body, ProvisionQuery) and body.primary is True


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_fixture_is_answered_in_the_requests_dialect(name: str) -> None:
    version, bag, encoding = DIALECTS[name]
    reply_to = decoded(corpus.raw(name), name).reply_to
    assert (reply_to.version, reply_to.bag_spelling, reply_to.body_encoding_type) == (
        version, bag, encoding)
    if kind(name) == DEVICE_PROVISION:
        response_type, body = DEVICE_PROVISION_RESPONSE, device_response_body("PROVISIONED")
    else:
        response_type, body = PROVISION_QUERY_RESPONSE, query_response_body("mqtts://x", "P")
    answer = parse_response(
        build_response(reply_to, message_type=response_type, message_id="a", now=NOW, body=body)
    )
    other = "propertyBag" if bag == "property_bag" else "property_bag"
    assert bag in answer and other not in answer
    assert answer["version"] == version
    assert answer["body"] == body
    assert answer["correlation_id"] == reply_to.message_id
    if version == "v2":
        assert answer["message_type"] == {DEVICE_PROVISION_RESPONSE: 6,
                                          PROVISION_QUERY_RESPONSE: 3}[response_type]
        assert not {"vin", "ecu_type", "status"} & set(answer)
    else:
        assert answer["message_type"] == response_type
        assert (answer["status"], answer["vin"]) == ("SUCCESS", "1G1FB1RS0M0000001")


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_loaded_fixture_carries_the_vehicles_identifiers(name: str) -> None:
    raw = corpus.load(name, **VEHICLE, region_code="EU", message_id="m-1", time=NOW)
    request = decoded(raw, name)
    body: Any = request.body
    assert (body.vin, body.system_id, body.sub_system_id) == (
        VEHICLE["vin"], VEHICLE["system_id"], VEHICLE["sub_system_id"])
    assert (body.device_id, body.ecu_type) == (VEHICLE["device_id"], "IVI")
    assert (body.region_code, body.country_code) == ("EU", "CA")
    assert request.envelope.message_id == "m-1"
    assert request.envelope.time == NOW
    assert request.reply_to.version == DIALECTS[name][0]
    stored = json.loads(corpus.raw(name))
    sent = json.loads(raw)
    assert set(sent) == set(stored)  # the fixture's shape is kept: no header field added
    assert ("vin" in sent) == (DIALECTS[name][0] == "v1")


def test_load_keeps_the_blank_body_device_id_and_takes_overrides() -> None:
    raw = corpus.load("device_provision_encoding0", **VEHICLE, country_code="de", primary=False)
    body = json.loads(raw)["body"]
    assert body["device_id"] == ""
    assert body["region_info"] == {"region_code": "NA", "country_code": "de"}
    assert body["device_info"]["primary"] is False
    assert decoded(raw, "device_provision_encoding0").body.country_code == "DE"


def test_load_refuses_an_unknown_fixture() -> None:
    with pytest.raises(KeyError):
        corpus.load("no_such_fixture", **VEHICLE)


# --- through the flows (flowkit runs the real handlers and the Avro serde) -------------------


def sim_load(name: str, sim: Any, message_id: str) -> bytes:
    primary = sim.primary
    return corpus.load(name, vin=sim.vin, system_id=sim.system_id,
                       sub_system_id=sim.sub_system_id, device_id=primary.device_id,
                       ecu_type=primary.ecu_type, message_id=message_id)


@pytest.mark.parametrize("name", corpus.names(PROVISION_QUERY))
def test_query_fixture_homes_the_vehicle(name: str) -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    out = flow.query(sim_load(name, sim, "q-1"), key=sim.vin.encode(),
                     authenticated=sim.primary.device_id)
    [answer] = replies(out)
    assert answer["version"] == DIALECTS[name][0]
    assert answer["body"]["lifecyclestate"] == "PROVISION_PENDING_REGIONAL"
    assert (flow.vehicles[sim.vin]["state"], flow.vehicles[sim.vin]["country_code"]) == (
        "REGIONAL", "CA")


@pytest.mark.parametrize("name", corpus.names(DEVICE_PROVISION))
def test_device_fixture_provisions_the_primary(name: str) -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    out = flow.provision(sim_load(name, sim, "p-1"), "NA", key=sim.vin.encode(),
                         authenticated=sim.primary.device_id)
    [answer] = replies(out)
    version, bag, _ = DIALECTS[name]
    assert (answer["version"], bag in answer) == (version, True)
    assert answer["body"] == {"lifecycyclestate": "PROVISIONED"}
    assert answer["device_id"] == sim.primary.device_id
    [onboarding] = events(out, "ChipsetOnboardingRequest")
    assert [(c["id"], c["program_sku_id"]) for c in onboarding["chipsets"]] == [("", "667")] * 2
