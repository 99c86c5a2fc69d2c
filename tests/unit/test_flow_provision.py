"""DEVICE_PROVISION in a region (docs/spec.md 2.2, 4, 5, 6) after the vehicle was rehomed there."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from flowkit import (
    CONFIG,
    Flow,
    error_code,
    event_outputs,
    events,
    lifecycle,
    only_reply,
    replies,
    reply_texts,
    stranger,
    vehicle,
)

from vprov.core import envelope
from vprov.core.outputs import Effect
from vprov.sim import fleet
from vprov.sim.fleet import SimDevice, SimVehicle

NA = "NA"


def send(flow: Flow, sim: SimVehicle, device: int | SimDevice, message_id: str,
         region: str = NA, authenticated: str | None = None, **overrides: Any) -> list[Any]:
    dev = sim.devices[device] if isinstance(device, int) else device
    raw = fleet.device_provision(sim, dev, message_id, flow.now_s, **overrides)
    return flow.provision(raw, region, authenticated=authenticated)


def homed(ecu_types: tuple[str, ...] = ("TCU", "IVI"), config: Any = CONFIG
          ) -> tuple[Flow, SimVehicle]:
    flow, sim = Flow(config), vehicle(ecu_types=ecu_types)
    flow.homed(sim)
    return flow, sim


def entry(flow: Flow, sim: SimVehicle, region: str = NA) -> dict[str, Any]:
    return flow.regional[region][sim.vin]


def device_state(flow: Flow, sim: SimVehicle, index: int) -> str:
    return entry(flow, sim)["devices"][sim.devices[index].device_id]["state"]


# --- the primary -------------------------------------------------------------------------------


def test_primary_provisioned_emits_event_answer_and_onboarding_in_that_order() -> None:
    flow, sim = homed()
    out = send(flow, sim, 0, "p-1")
    assert [(o.kind, o.topic) for o in out] == [
        ("event", flow.topics.lifecycle),
        ("reply", flow.topics.device_response(NA)),
        ("event", flow.topics.onboarding(NA)),
    ]


def test_primary_provisioned_event_moves_regional_to_provisioned() -> None:
    flow, sim = homed()
    [event] = lifecycle(send(flow, sim, 0, "p-1"))
    assert (event["state"], event["previous_state"]) == ("PROVISIONED", "REGIONAL")
    assert (event["device_id"], event["partition"]) == (sim.primary.device_id, NA)
    assert (event["cause_message_id"], event["error_code"]) == ("p-1", None)
    assert event["vin"] == sim.vin


def test_primary_provisioned_answer_uses_the_wire_spelling_lifecycyclestate() -> None:
    flow, sim = homed()
    answer = only_reply(send(flow, sim, 0, "p-1"))
    assert answer["status"] == "SUCCESS"
    assert answer["message_type"] == envelope.DEVICE_PROVISION_RESPONSE
    assert answer["correlation_id"] == "p-1"
    assert answer["body"] == {"lifecycyclestate": "PROVISIONED"}
    assert (answer["vin"], answer["device_id"], answer["ecu_type"]) == (
        sim.vin, sim.primary.device_id, "TCU")


def test_primary_provisioned_hands_its_chipsets_to_onboarding() -> None:
    flow, sim = homed()
    [request] = events(send(flow, sim, 0, "p-1"), "ChipsetOnboardingRequest")
    assert request["chipsets"] == [dict(c) for c in sim.primary.chipsets]
    assert (request["device_id"], request["ecu_type"], request["region"]) == (
        sim.primary.device_id, "TCU", NA)
    assert request["cause_message_id"] == "p-1"


def test_primary_provisioned_deletes_its_global_identity() -> None:
    flow, sim = homed()
    send(flow, sim, 0, "p-1")
    assert flow.effects[-1] == Effect("delete_identity", "global", sim.primary.device_id)
    assert entry(flow, sim)["global_identity_deleted"] is True
    assert ("global", sim.primary.device_id) not in flow.identities
    assert (NA, sim.primary.device_id) in flow.identities


def test_global_identity_is_kept_when_configured() -> None:
    flow, sim = homed(config=dataclasses.replace(CONFIG, delete_global_identity=False))
    effects_before = len(flow.effects)
    send(flow, sim, 0, "p-1")
    assert flow.effects[effects_before:] == []
    assert entry(flow, sim)["global_identity_deleted"] is False
    assert ("global", sim.primary.device_id) in flow.identities


def test_provisioning_stores_the_device_details() -> None:
    flow, sim = homed()
    send(flow, sim, 0, "p-1")
    stored = entry(flow, sim)
    details = stored["devices"][sim.primary.device_id]["details"]
    assert details["chipsets"] == [dict(c) for c in sim.primary.chipsets]
    assert details["sim_info"] == {"iccid": "8901" + sim.primary.fingerprint[:15]}
    assert details["provisioned_by"] == "p-1"
    assert stored["vehicle_info"]["model"] == "V1"


ECU_TARGETS = [
    pytest.param("IVI", "PROVISIONED", id="IVI → PROVISIONED"),
    pytest.param("ADAS", "PROVISIONED", id="ADAS → PROVISIONED"),
    pytest.param("REFRIGERATOR", "ACTIVE", id="REFRIGERATOR → ACTIVE"),
]


@pytest.mark.parametrize(("ecu_type", "target"), ECU_TARGETS)
def test_secondary_reaches_its_ecu_types_configured_state(ecu_type: str, target: str) -> None:
    flow, sim = homed(("TCU", ecu_type))
    send(flow, sim, 0, "p-1")
    out = send(flow, sim, 1, "p-2")
    assert only_reply(out)["body"] == {"lifecycyclestate": target}
    [event] = lifecycle(out)
    assert (event["state"], event["previous_state"]) == (target, "REGIONAL")
    assert device_state(flow, sim, 1) == target


def test_refrigerator_primary_becomes_active() -> None:
    flow, sim = homed(("REFRIGERATOR",))
    out = send(flow, sim, 0, "p-1")
    assert only_reply(out)["body"] == {"lifecycyclestate": "ACTIVE"}
    assert lifecycle(out)[0]["state"] == "ACTIVE"
    assert device_state(flow, sim, 0) == "ACTIVE"


def test_sequence_numbers_continue_from_the_rehome_request() -> None:
    flow, sim = homed(("TCU", "IVI", "ADAS"))
    assert entry(flow, sim)["sequence"] == 1
    sequences = [lifecycle(send(flow, sim, i, f"p-{i}"))[0]["sequence"] for i in range(3)]
    assert sequences == [2, 3, 4]


def test_sequence_continues_after_a_query_retry() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.query(fleet.query(sim, "q-1", flow.now_s, region="ZZ"))  # QRY_FAIL, sequence 1
    flow.query(fleet.query(sim, "q-2", flow.now_s))  # REGIONAL, sequence 2
    assert lifecycle(send(flow, sim, 0, "p-1"))[0]["sequence"] == 3


# --- secondaries before the primary ------------------------------------------------------------


def test_secondary_before_primary_is_held_without_an_answer() -> None:
    flow, sim = homed()
    out = send(flow, sim, 1, "p-2")
    assert out == []
    held = entry(flow, sim)["held"]
    assert [h["message_id"] for h in held] == ["p-2"]
    assert device_state(flow, sim, 1) == "REGIONAL"


def test_primary_decision_answers_held_secondaries_in_order() -> None:
    flow, sim = homed(("TCU", "IVI", "ADAS"))
    send(flow, sim, 1, "p-ivi")
    send(flow, sim, 2, "p-adas")
    out = send(flow, sim, 0, "p-tcu")
    assert [a["correlation_id"] for a in replies(out)] == ["p-tcu", "p-ivi", "p-adas"]
    assert {a["status"] for a in replies(out)} == {"SUCCESS"}
    assert [e["device_id"] for e in lifecycle(out)] == [d.device_id for d in sim.devices]
    assert [e["sequence"] for e in lifecycle(out)] == [2, 3, 4]
    onboarding = events(out, "ChipsetOnboardingRequest")
    assert [o["device_id"] for o in onboarding] == [d.device_id for d in sim.devices]
    assert entry(flow, sim)["held"] == []
    assert {device_state(flow, sim, i) for i in range(3)} == {"PROVISIONED"}


def test_held_secondary_records_follow_the_primary_records() -> None:
    flow, sim = homed()
    send(flow, sim, 1, "p-2")
    out = send(flow, sim, 0, "p-1")
    devices = [o.value.get("device_id") if o.kind == "event" else replies([o])[0]["device_id"]
               for o in out]
    primary, secondary = sim.devices[0].device_id, sim.devices[1].device_id
    assert devices == [primary] * 3 + [secondary] * 3


def test_duplicate_held_request_is_held_once_and_answered_once() -> None:
    flow, sim = homed()
    send(flow, sim, 1, "p-2")
    assert send(flow, sim, 1, "p-2") == []
    assert len(entry(flow, sim)["held"]) == 1
    out = send(flow, sim, 0, "p-1")
    assert [a["correlation_id"] for a in replies(out)] == ["p-1", "p-2"]


def test_held_bound_exceeded_is_5000_with_a_prov_fail_event() -> None:
    flow, sim = homed(("TCU", "IVI", "ADAS"),
                      config=dataclasses.replace(CONFIG, max_held_requests=1))
    send(flow, sim, 1, "p-ivi")
    out = send(flow, sim, 2, "p-adas")
    answer = only_reply(out)
    assert (error_code(answer), answer["status"]) == (5000, "FAIL")
    assert answer["body"] == {"lifecycyclestate": "PROV_FAIL"}
    [event] = lifecycle(out)
    assert (event["state"], event["previous_state"]) == ("PROV_FAIL", "REGIONAL")
    assert (event["device_id"], event["error_code"]) == (sim.devices[2].device_id, 5000)
    assert device_state(flow, sim, 2) == "PROV_FAIL"
    assert [h["message_id"] for h in entry(flow, sim)["held"]] == ["p-ivi"]


def test_device_in_prov_fail_provisions_after_the_primary() -> None:
    flow, sim = homed(("TCU", "IVI", "ADAS"),
                      config=dataclasses.replace(CONFIG, max_held_requests=1))
    send(flow, sim, 1, "p-ivi")
    send(flow, sim, 2, "p-adas")
    send(flow, sim, 0, "p-tcu")
    out = send(flow, sim, 2, "p-adas-2")
    [event] = lifecycle(out)
    assert (event["previous_state"], event["state"]) == ("PROV_FAIL", "PROVISIONED")
    assert only_reply(out)["status"] == "SUCCESS"


# --- duplicates and repeats --------------------------------------------------------------------


def test_exact_duplicate_after_provisioning_gets_the_same_answer_bytes() -> None:
    flow, sim = homed()
    first = send(flow, sim, 0, "p-1")
    before = flow.snapshot()
    flow.advance(300)
    again = send(flow, sim, 0, "p-1")
    assert reply_texts(again) == reply_texts(first)
    assert again == first  # the same records, the same event ids
    assert flow.snapshot() == before


def test_exact_duplicate_of_a_released_held_request_gets_the_same_answer() -> None:
    flow, sim = homed()
    send(flow, sim, 1, "p-2")
    released = send(flow, sim, 0, "p-1")
    flow.advance(60)
    again = send(flow, sim, 1, "p-2")
    assert reply_texts(again) == [t for t in reply_texts(released) if '"correlation_id":"p-2"' in t]


def test_the_primary_s_request_read_again_sends_what_the_released_requests_produced() -> None:
    # A crash after the decision reached the local store, before any of its records reached
    # Kafka: the primary's request is read again (its offset was not committed), the held
    # request's offset was committed long before. Everything the step produced is sent again.
    flow, sim = homed()
    send(flow, sim, 1, "p-2")
    first = send(flow, sim, 0, "p-1")
    before = flow.snapshot()
    flow.advance(5)
    again = send(flow, sim, 0, "p-1")
    assert again == first  # the IVI's answer and event too, with the same ids
    assert [a["correlation_id"] for a in replies(again)] == ["p-1", "p-2"]
    assert flow.snapshot() == before


def test_new_message_for_a_provisioned_device_is_13124_and_changes_nothing() -> None:
    flow, sim = homed()
    send(flow, sim, 0, "p-1")
    before = flow.snapshot()
    out = send(flow, sim, 0, "p-again")
    answer = only_reply(out)
    assert error_code(answer) == 13124
    assert answer["body"] == {"lifecycyclestate": "PROV_FAIL"}
    assert lifecycle(out) == []
    # only the answer is remembered, so that a duplicate gets it again
    after = flow.snapshot()
    memo = after["regional"]["NA"][sim.vin].pop("memo")
    before["regional"]["NA"][sim.vin].pop("memo")
    assert list(memo)[-1] == "p-again"
    assert after == before


# --- refusals ----------------------------------------------------------------------------------


def _not_rehomed_here(flow: Flow, sim: SimVehicle) -> list[Any]:
    return send(flow, sim, 0, "p-1", region="EU")


def _other_system(flow: Flow, sim: SimVehicle) -> list[Any]:
    claimant = dataclasses.replace(sim, system_id="sys-other0001", sub_system_id="sub-other0001")
    return send(flow, claimant, 0, "p-1")


def _outsider_header(flow: Flow, sim: SimVehicle) -> list[Any]:
    return send(flow, sim, 0, "p-1", authenticated="doutsider00001")


def _empty_header(flow: Flow, sim: SimVehicle) -> list[Any]:
    return send(flow, sim, 0, "p-1", authenticated="")


def _other_ecu_type(flow: Flow, sim: SimVehicle) -> list[Any]:
    claimant = dataclasses.replace(
        sim, devices=(sim.devices[0], dataclasses.replace(sim.devices[1], ecu_type="ADAS")))
    return send(flow, claimant, 1, "p-1")


def _key_differs(flow: Flow, sim: SimVehicle) -> list[Any]:
    raw = fleet.device_provision(sim, sim.primary, "p-1", flow.now_s)
    return flow.provision(raw, NA, key=vehicle(9).vin.encode())


REFUSALS: list[Any] = [
    pytest.param(_not_rehomed_here, 13123, id="vehicle not rehomed in this region → 13123"),
    pytest.param(_other_system, 13128, id="system differs from the vehicle's → 13128"),
    pytest.param(_outsider_header, 1401,
                 id="authenticated header not a device of the vehicle → 1401"),
    pytest.param(_empty_header, 1401, id="empty authenticated header → 1401"),
    pytest.param(_other_ecu_type, 13122, id="ECU type differs from the registration → 13122"),
    pytest.param(_key_differs, 13130, id="record key differs from the body vin → 13130"),
]


@pytest.mark.parametrize(("attempt", "code"), REFUSALS)
def test_refused_provisioning_is_answered_and_changes_nothing(attempt: Any, code: int) -> None:
    flow, sim = homed()
    before = flow.snapshot()
    before_effects = len(flow.effects)
    out = attempt(flow, sim)
    answer = only_reply(out)
    assert error_code(answer) == code
    assert (answer["status"], answer["correlation_id"]) == ("FAIL", "p-1")
    assert answer["body"] == {"lifecycyclestate": "PROV_FAIL"}
    assert [o for o in out if o.kind != "reply"] == []
    assert flow.snapshot() == before
    assert len(flow.effects) == before_effects


def test_a_device_not_part_of_the_vehicle_waits_for_a_join_then_gets_13123() -> None:
    # its registration may still join the vehicle (SPEC 2.1): held, not refused at once
    flow, sim = homed()
    before = flow.snapshot()
    assert send(flow, sim, stranger(sim), "p-1") == []
    flow.advance(CONFIG.join_wait_seconds - 1)
    assert flow.expire_holds(NA, sim.vin) == []  # not yet
    flow.advance(1)
    out = flow.expire_holds(NA, sim.vin)
    answer = only_reply(out)
    assert error_code(answer) == 13123
    assert (answer["status"], answer["correlation_id"]) == ("FAIL", "p-1")
    assert [o for o in out if o.kind != "reply"] == []
    after = flow.snapshot()
    for snap in (before, after):  # nothing changed but the answer's memo
        snap["regional"][NA][sim.vin].pop("memo")
    assert after == before


def test_secondary_through_the_primarys_connection_is_allowed() -> None:
    flow, sim = homed()
    held = send(flow, sim, 1, "p-2", authenticated=sim.primary.device_id)
    assert held == []  # held, not refused
    out = send(flow, sim, 0, "p-1", authenticated=sim.primary.device_id)
    assert [a["status"] for a in replies(out)] == ["SUCCESS", "SUCCESS"]


def test_secondary_through_the_primarys_connection_after_the_primary_is_allowed() -> None:
    flow, sim = homed()
    send(flow, sim, 0, "p-1", authenticated=sim.primary.device_id)
    out = send(flow, sim, 1, "p-2", authenticated=sim.primary.device_id)
    assert only_reply(out)["status"] == "SUCCESS"


def test_missing_header_when_the_deployment_requires_it_is_1401() -> None:
    flow, sim = homed(config=dataclasses.replace(CONFIG, require_authenticated_header=True))
    assert error_code(only_reply(send(flow, sim, 0, "p-1"))) == 1401
    assert device_state(flow, sim, 0) == "REGIONAL"


def test_exact_duplicate_sent_by_a_device_outside_the_vehicle_is_1401() -> None:
    flow, sim = homed()
    send(flow, sim, 0, "p-1", authenticated=sim.primary.device_id)
    out = send(flow, sim, 0, "p-1", authenticated="doutsider00001")
    assert error_code(only_reply(out)) == 1401


def _expired(flow: Flow, sim: SimVehicle) -> bytes:
    raw = fleet.device_provision(sim, sim.primary, "p-1", flow.now_s)
    flow.advance(10)
    return raw.replace(b'"ttl":-1', b'"ttl":5')


def _json_edit(raw: bytes, edit: Any) -> bytes:
    doc = json.loads(raw)
    edit(doc)
    return json.dumps(doc).encode()


def _message(flow: Flow, sim: SimVehicle, **overrides: Any) -> bytes:
    return fleet.device_provision(sim, sim.primary, "p-1", flow.now_s, **overrides)


INVALID: list[Any] = [
    pytest.param(lambda f, s: _message(f, s, chipsets_count=5), 11008,
                 id="chipsets_count differs from the list → 11008"),
    pytest.param(lambda f, s: _message(f, s, chipsets_count=None), 13121,
                 id="chipsets_count missing → 13121"),
    pytest.param(lambda f, s: _message(f, s, vehicle_info=None), 13117,
                 id="vehicle_info missing → 13117"),
    pytest.param(lambda f, s: _message(f, s, region_info={"country_code": "US"}), 13119,
                 id="region_code missing → 13119"),
    pytest.param(lambda f, s: _message(f, s, region_info={"region_code": "NA"}), 13120,
                 id="country_code missing → 13120"),
    pytest.param(lambda f, s: _message(f, s, sub_system_id=None), 13116,
                 id="sub_system_id missing → 13116"),
    pytest.param(lambda f, s: _message(f, s, vin="1VTESTA000000000I"), 6108,
                 id="body vin with I → 6108"),
    pytest.param(lambda f, s: _message(f, s, privacyFlag="no"), 13122,
                 id="privacyFlag not a boolean → 13122"),
    pytest.param(lambda f, s: fleet.query(s, "p-1", f.now_s), 13115,
                 id="PROVISION_QUERY on the device topic → 13115"),
    pytest.param(_expired, 10003, id="ttl expired → 10003"),
    pytest.param(lambda f, s: _json_edit(_message(f, s), lambda d: d.pop("status")), 10001,
                 id="status missing → 10001"),
    pytest.param(lambda f, s: _json_edit(_message(f, s), lambda d: d.pop("body")), 10000,
                 id="body missing → 10000"),
    pytest.param(lambda f, s: _json_edit(_message(f, s), lambda d: d.update(body={})), 13118,
                 id="body empty → 13118"),
]


@pytest.mark.parametrize(("build", "code"), INVALID)
def test_invalid_message_is_answered_with_its_code_and_changes_nothing(build: Any,
                                                                        code: int) -> None:
    flow, sim = homed()
    raw = build(flow, sim)
    before = flow.snapshot()
    out = flow.provision(raw, NA, key=sim.vin.encode())
    answer = only_reply(out)
    assert error_code(answer) == code
    assert answer["correlation_id"] == "p-1"
    assert [o for o in out if o.kind != "reply"] == []
    assert flow.snapshot() == before


def test_base64_body_is_provisioned_and_answered_in_base64() -> None:
    flow, sim = homed()
    out = send(flow, sim, 0, "p-1", body_encoding_type=1)
    answer = only_reply(out)
    assert answer["property_bag"]["body_encoding_type"] == 1
    assert answer["body"] == {"lifecycyclestate": "PROVISIONED"}
    assert isinstance(json.loads(out[1].value)["body"], str)


DEAD: list[Any] = [
    pytest.param(b"\x00\x01 not json", 13113, id="not JSON"),
    pytest.param(b"[1, 2, 3]", 13113, id="JSON but not an object"),
    pytest.param(None, 1003, id="no device id anywhere"),
]


@pytest.mark.parametrize(("raw", "code"), DEAD)
def test_message_without_a_usable_device_id_goes_to_the_dead_letter_topic(
    raw: bytes | None, code: int
) -> None:
    flow, sim = homed()
    if raw is None:
        raw = _json_edit(_message(flow, sim), lambda d: (d.pop("device_id"),
                                                          d["body"].pop("device_id")))
    before = flow.snapshot()
    topic = flow.topics.device(NA)
    flow.provision(raw, NA, key=sim.vin.encode())  # offset 0
    out = flow.provision(raw, NA, key=sim.vin.encode())  # offset 1
    assert replies(out) == []
    [letter] = event_outputs(out, "DeadLetter")
    assert letter.topic == flow.topics.deadletter
    assert letter.value["error_code"] == code
    assert (letter.value["source_topic"], letter.value["source_partition"],
            letter.value["source_offset"]) == (topic, 0, 1)
    assert (letter.value["payload"], letter.value["key"]) == (raw, sim.vin.encode())
    assert flow.snapshot() == before


def test_cancel_after_a_device_was_provisioned_keeps_the_vehicle() -> None:
    flow, sim = homed()
    send(flow, sim, 0, "p-1")
    request_id = entry(flow, sim)["request_id"]
    before = flow.snapshot()
    cancel = [o for o in flow.sent if o.record == "RehomeRequest"][0]
    cancel = dataclasses.replace(cancel, value={**cancel.value, "action": "CANCEL",
                                                "request_id": request_id, "devices": []})
    assert flow.deliver(cancel) == []
    assert flow.snapshot() == before


# --- wire compatibility (docs/spec.md 3.6): the published sample's shape and envelope v2 ----------


def published_shape(sim: SimVehicle, index: int) -> dict[str, Any]:
    """Body overrides giving the published DEVICE_PROVISION sample's quirks."""
    device = sim.devices[index]
    chipsets = [{**chip, "id": "", "state": "UNREGISTERED", "program_sku_id": 667}
                for chip in device.chipsets]
    return {
        "device_id": "",
        "device_info": {"ecu_model": "base-a", "ecu_make": "", "ecu_type": device.ecu_type,
                        "primary": device.primary},
        "chipsets": chipsets,
        "region_info": {"region_code": "na", "country_code": sim.country.lower()},
    }


def test_published_sample_shape_provisions_and_onboards_chipsets_without_ids() -> None:
    flow, sim = homed()
    out = send(flow, sim, 0, "p-1", **published_shape(sim, 0))
    answer = only_reply(out)
    assert answer["status"] == "SUCCESS"
    assert answer["device_id"] == sim.primary.device_id  # the envelope's
    # Through the Avro serde: the schema's non-null chipset id carries "" for "not yet".
    [request] = events(out, "ChipsetOnboardingRequest")
    assert [c["id"] for c in request["chipsets"]] == ["", ""]
    assert {c["program_sku_id"] for c in request["chipsets"]} == {"667"}
    details = entry(flow, sim)["devices"][sim.primary.device_id]["details"]
    assert [c["id"] for c in details["chipsets"]] == [None, None]
    assert details["ecu_make"] == ""


@pytest.mark.parametrize("bag", ["propertyBag", "property_bag"])
def test_v2_request_is_answered_in_v2_with_its_bag_spelling(bag: str) -> None:
    flow, sim = homed()
    raw = fleet.device_provision(sim, sim.primary, "p-1", flow.now_s * 1000, version="v2",
                                 bag_spelling=bag, body_encoding_type=1)
    out = flow.provision(raw, NA, key=sim.vin.encode())
    [answer] = [envelope.parse_response(o.value.encode()) for o in out if o.kind == "reply"]
    assert (answer["version"], answer["message_type"]) == ("v2", 6)
    assert not {"vin", "ecu_type", "status"} & set(answer)
    other = "property_bag" if bag == "propertyBag" else "propertyBag"
    assert bag in answer and other not in answer
    assert answer["body"] == {"lifecycyclestate": "PROVISIONED"}
    assert device_state(flow, sim, 0) == "PROVISIONED"


def test_v2_failure_is_answered_in_v2_with_the_code_in_the_bag() -> None:
    flow, sim = homed()
    raw = fleet.device_provision(sim, sim.primary, "p-1", flow.now_s, version="v2",
                                 bag_spelling="propertyBag", chipsets_count=5)
    out = flow.provision(raw, NA, key=sim.vin.encode())
    [answer] = [envelope.parse_response(o.value.encode()) for o in out if o.kind == "reply"]
    assert (answer["version"], answer["message_type"]) == ("v2", 6)
    assert answer["propertyBag"]["errorCode"] == 11008
    assert answer["body"] == {"lifecycyclestate": "PROV_FAIL"}


def test_held_v2_secondary_is_answered_in_v2_when_the_primary_succeeds() -> None:
    flow, sim = homed()
    raw = fleet.device_provision(sim, sim.devices[1], "p-2", flow.now_s, version="v2",
                                 bag_spelling="propertyBag")
    assert flow.provision(raw, NA, key=sim.vin.encode()) == []
    out = send(flow, sim, 0, "p-1")
    answers = {a["correlation_id"]: a for a in replies(out)}
    assert (answers["p-1"]["version"], answers["p-2"]["version"]) == ("v1", "v2")
    assert answers["p-2"]["message_type"] == 6 and "propertyBag" in answers["p-2"]
