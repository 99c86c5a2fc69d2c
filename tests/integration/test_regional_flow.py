"""DEVICE_PROVISION in a region, against real workers (docs/spec.md section 2.2)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from tests.integration.conftest import Flow, error_code
from tests.integration.harness import BOOTSTRAP, Fleet, wait_until
from vprov.identity import identity_key
from vprov.kafka.clients import admin_client
from vprov.sim import fleet


def rehomed(flow: Flow, fleet_: Fleet, region: str = "NA",
            ecu_types: tuple[str, ...] = ("TCU", "IVI")) -> fleet.SimVehicle:
    vehicle = fleet_.vehicle(region, ecu_types)
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    return vehicle


def test_vehicle_with_three_devices_goes_through_both_flows(
    flow: Flow, fleet_: Fleet, redis_client: redis.Redis
) -> None:
    vehicle = rehomed(flow, fleet_, "NA", ("TCU", "IVI", "REFRIGERATOR"))
    answers = [flow.provision(vehicle, device) for device in vehicle.devices]

    assert [a.value["status"] for a in answers] == ["SUCCESS"] * 3
    assert [a.value["body"]["lifecycyclestate"] for a in answers] == [
        "PROVISIONED", "PROVISIONED", "ACTIVE"]
    assert [a.value["device_id"] for a in answers] == [d.device_id for d in vehicle.devices]

    events = flow.bus.wait(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, count=4)
    assert [(e.value["device_id"], e.value["state"], e.value["previous_state"])
            for e in events] == [
        (None, "REGIONAL", "REGISTERED"),
        (vehicle.devices[0].device_id, "PROVISIONED", "REGIONAL"),
        (vehicle.devices[1].device_id, "PROVISIONED", "REGIONAL"),
        (vehicle.devices[2].device_id, "ACTIVE", "REGIONAL"),
    ]
    assert [e.value["sequence"] for e in events] == [1, 2, 3, 4]

    onboarding = flow.bus.wait(flow.cat.onboarding("NA"), lambda r: r.key == vehicle.vin,
                               count=3)
    assert sorted(o.value["device_id"] for o in onboarding) == sorted(
        d.device_id for d in vehicle.devices)
    assert all(len(o.value["chipsets"]) == 2 for o in onboarding)

    assert not redis_client.exists(identity_key("global", vehicle.primary.device_id))
    assert redis_client.exists(identity_key("NA", vehicle.primary.device_id))
    status, entry = flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")
    assert status == 200
    assert entry["global_identity_deleted"] is True
    assert entry["vehicle_info"]["model"] == "V1"
    assert entry["devices"][vehicle.devices[1].device_id]["details"]["chipsets"][0]["id"]


def test_secondary_before_primary_is_held_then_answered(flow: Flow, fleet_: Fleet) -> None:
    vehicle = rehomed(flow, fleet_)
    primary, secondary = vehicle.devices
    early = flow.send_provision(vehicle, secondary)
    held = flow.bus.settle(flow.cat.device_response("NA"),
                           lambda r: r.value.get("correlation_id") == early, seconds=2)
    assert held == []
    status, entry = flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")
    assert entry["held_requests"] == 1
    first = flow.send_provision(vehicle, primary)
    assert flow.answer(first, flow.cat.device_response("NA")).value["status"] == "SUCCESS"
    late = flow.answer(early, flow.cat.device_response("NA"))
    assert late.value["status"] == "SUCCESS"
    events = flow.bus.wait(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, count=3)
    assert [e.value["device_id"] for e in events[1:]] == [primary.device_id,
                                                         secondary.device_id]


def test_duplicates_and_already_provisioned(flow: Flow, fleet_: Fleet) -> None:
    vehicle = rehomed(flow, fleet_)
    message_id = str(uuid.uuid4())
    first = flow.provision(vehicle, vehicle.primary, message_id=message_id)
    flow.send_provision(vehicle, vehicle.primary, message_id=message_id)
    again = flow.answer(message_id, flow.cat.device_response("NA"), count=2)
    assert again.value == first.value
    fresh = flow.provision(vehicle, vehicle.primary)
    assert error_code(fresh) == 13124
    assert fresh.value["body"]["lifecycyclestate"] == "PROV_FAIL"
    events = flow.bus.settle(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, seconds=2)
    assert len({e.value["event_id"] for e in events}) == 2
    onboarding = flow.bus.records(flow.cat.onboarding("NA"), lambda r: r.key == vehicle.vin)
    assert len({o.value["request_id"] for o in onboarding}) == 1


@pytest.mark.parametrize(
    ("case", "overrides", "code"),
    [
        ("sub-system missing", {"sub_system_id": None}, 13116),
        ("vehicle info missing", {"vehicle_info": None}, 13117),
        ("region code missing", {"region_info": {"country_code": "US"}}, 13119),
        ("country code missing", {"region_info": {"region_code": "NA"}}, 13120),
        ("chipsets count missing", {"chipsets_count": None}, 13121),
        ("chipsets count mismatch", {"chipsets_count": 5}, 11008),
        ("identifier with bad characters", {"sub_system_id": "sub;DROP TABLE"}, 13122),
        ("header and body disagree", {"system_id": "sys-someoneelse"}, 13130),
    ],
)
def test_invalid_requests_answer_with_their_code_and_change_nothing(
    flow: Flow, fleet_: Fleet, case: str, overrides: dict, code: int
) -> None:
    vehicle = rehomed(flow, fleet_)
    body_overrides = {k: v for k, v in overrides.items() if v is not None}
    removed = [k for k, v in overrides.items() if v is None]
    raw = fleet.device_provision(vehicle, vehicle.primary, "m", 0, **body_overrides)
    doc = json.loads(raw)
    for name in removed:
        doc["body"].pop(name, None)
    message_id = str(uuid.uuid4())
    doc["message_id"] = message_id
    doc["time"] = int(time.time())
    flow.bus.send(flow.cat.device("NA"), vehicle.vin, json.dumps(doc).encode())
    flow.bus.flush()
    answer = flow.answer(message_id, flow.cat.device_response("NA"))
    assert error_code(answer) == code, answer.value["property_bag"]
    status, entry = flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")
    assert all(d["state"] == "REGIONAL" for d in entry["devices"].values())


def test_state_checks(flow: Flow, fleet_: Fleet) -> None:
    vehicle = rehomed(flow, fleet_)
    stranger = fleet_.vehicle("NA")  # registered nowhere, never rehomed
    assert error_code(flow.provision(stranger, stranger.primary)) == 13123

    # a device that is not part of the vehicle
    outsider = fleet.SimDevice("doutsider000001", "IVI", False, "ff")
    assert error_code(flow.provision(vehicle, outsider)) == 13123

    # another system claiming this VIN
    thief = stranger.__class__(**{**stranger.__dict__, "vin": vehicle.vin})
    assert error_code(flow.provision(thief, thief.primary)) == 13128

    # the header names a device of another vehicle: refused; the primary's connection: allowed
    answer = flow.provision(vehicle, vehicle.primary,
                            headers={"authenticated-device-id": stranger.primary.device_id})
    assert error_code(answer) == 1401
    answer = flow.provision(vehicle, vehicle.primary,
                            headers={"authenticated-device-id": vehicle.primary.device_id})
    assert answer.value["status"] == "SUCCESS"
    answer = flow.provision(vehicle, vehicle.devices[1],
                            headers={"authenticated-device-id": vehicle.primary.device_id})
    assert answer.value["status"] == "SUCCESS"


def test_unanswerable_message_goes_to_the_dead_letter_topic(flow: Flow, fleet_: Fleet) -> None:
    vin = fleet_.vehicle("NA").vin
    flow.bus.send(flow.cat.device("NA"), vin, b"\x00\xffnot json at all")
    flow.bus.flush()
    letter = flow.bus.wait(flow.cat.deadletter, lambda r: r.key == vin)[0].value
    assert letter["error_code"] == 13113
    assert letter["payload"] == b"\x00\xffnot json at all"
    assert letter["source_topic"] == flow.cat.device("NA")
    assert letter["source_offset"] >= 0


def test_region_isolation(flow: Flow, fleet_: Fleet) -> None:
    """An EU vehicle asked about in NA is not found there; the NA group reads only NA topics."""
    vehicle = rehomed(flow, fleet_, "EU")
    answer = flow.provision(vehicle, vehicle.primary, region="NA")
    assert error_code(answer) == 13123
    admin = admin_client(BOOTSTRAP)
    group = flow.cat.regional_app_id("NA")

    def topics_of_group() -> set[str]:
        described = admin.describe_consumer_groups([group])[group].result(20)
        return {tp.topic for m in described.members for tp in m.assignment.topic_partitions}

    topics = wait_until(topics_of_group, what="NA consumer group assignment")
    assert topics, "the NA worker has no assignment"
    assert all("NA" in t for t in topics), topics
    assert not any(t.endswith(".EU") or "-EU" in t for t in topics)
