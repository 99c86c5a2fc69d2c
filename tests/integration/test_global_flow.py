"""PROVISION_QUERY on the global side, against real workers (docs/spec.md section 2.1)."""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.integration.conftest import SILENT_REGION, Flow, error_code
from tests.integration.harness import Fleet, wait_until
from vprov.identity import identity_key


def test_happy_path_answers_with_the_regional_endpoint(
    flow: Flow, fleet_: Fleet, redis_client: redis.Redis
) -> None:
    vehicle = fleet_.vehicle("NA", ("TCU", "IVI", "REFRIGERATOR"))
    flow.register(vehicle)
    assert redis_client.exists(identity_key("global", vehicle.primary.device_id))
    message_id = flow.send_query(vehicle)
    answer = flow.answer(message_id)

    assert answer.value["status"] == "SUCCESS"
    assert answer.value["correlation_id"] == message_id
    assert answer.value["body"]["iot_gateway_endpoint"] == flow.bus.config.regions["NA"] \
        .gateway_endpoint
    assert answer.value["body"]["lifecyclestate"] == "PROVISION_PENDING_REGIONAL"
    assert answer.value["vin"] == vehicle.vin
    assert answer.value["device_id"] == vehicle.primary.device_id

    events = flow.lifecycle(vehicle.vin)
    assert [(e.value["state"], e.value["previous_state"]) for e in events] == [
        ("REGIONAL", "REGISTERED")]
    assert events[0].value["partition"] == "global"

    status, regional = flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")
    assert status == 200
    assert regional["system_id"] == vehicle.system_id
    assert set(regional["devices"]) == {d.device_id for d in vehicle.devices}
    assert all(d["state"] == "REGIONAL" for d in regional["devices"].values())
    assert redis_client.hget(identity_key("NA", vehicle.primary.device_id), "vin") \
        == vehicle.vin.encode()

    status, glob = flow.workers["global"].get(f"/vehicles/{vehicle.vin}/")
    assert status == 200
    assert (glob["state"], glob["region"], glob["system_id"]) == ("REGIONAL", "NA",
                                                                  vehicle.system_id)


def test_base64_body_is_answered_in_base64(flow: Flow, fleet_: Fleet) -> None:
    vehicle = fleet_.vehicle("EU")
    flow.register(vehicle)
    answer = flow.query(vehicle, body_encoding_type=1)
    assert answer.value["status"] == "SUCCESS"
    assert answer.value["property_bag"]["body_encoding_type"] == 1
    assert answer.value["body"]["iot_gateway_endpoint"].startswith("mqtts://eu.")


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("system not registered", 13103),
        ("device not registered", 13111),
        ("device under another system", 13108),
        ("non-primary device", 13122),
        ("unknown region", 6100),
        ("authenticated header names another device", 1401),
    ],
)
def test_failure_classes_answer_with_their_code(
    flow: Flow, fleet_: Fleet, case: str, code: int
) -> None:
    vehicle = fleet_.vehicle("NA")
    other = fleet_.vehicle("NA")
    kwargs: dict[str, object] = {}
    if case != "system not registered":
        flow.register(vehicle)
    if case == "device not registered":
        kwargs["deviceId"] = "dnotregistered01"
        # the header names the same device, so only the registration check can fail
        vehicle = vehicle.__class__(**{**vehicle.__dict__, "devices": (
            vehicle.primary.__class__(**{**vehicle.primary.__dict__,
                                         "device_id": "dnotregistered01"}),
            *vehicle.devices[1:])})
    elif case == "device under another system":
        flow.register(other)
        vehicle = vehicle.__class__(**{**vehicle.__dict__, "devices": (other.primary,
                                                                       *vehicle.devices[1:])})
    elif case == "non-primary device":
        secondary = vehicle.devices[1]
        vehicle = vehicle.__class__(**{**vehicle.__dict__, "devices": (
            secondary.__class__(**{**secondary.__dict__, "primary": True,
                                   "ecu_type": "IVI"}),)})
    elif case == "unknown region":
        kwargs["region"] = "XX"
    elif case == "authenticated header names another device":
        kwargs["headers"] = {"authenticated-device-id": vehicle.devices[1].device_id}
    message_id = flow.send_query(vehicle, **kwargs)  # type: ignore[arg-type]
    answer = flow.answer(message_id)
    assert answer.value["status"] == "FAIL"
    assert error_code(answer) == code, answer.value["property_bag"]
    assert answer.value["body"]["lifecyclestate"] == "QRY_FAIL"
    if code == 6100:
        states = [e.value["state"] for e in flow.lifecycle(vehicle.vin)]
        assert states == ["QRY_FAIL"]


def test_vin_bound_to_another_system_is_refused_also_in_a_race(flow: Flow, fleet_: Fleet) -> None:
    first = fleet_.vehicle("NA")
    second_system = fleet_.vehicle("NA")
    rival = second_system.__class__(**{**second_system.__dict__, "vin": first.vin})
    flow.register(first, second_system)
    # both queries are in flight together: exactly one system wins the VIN
    a = flow.send_query(first)
    b = flow.send_query(rival)
    answers = [flow.answer(a), flow.answer(b)]
    codes = sorted(error_code(x) or 0 for x in answers)
    assert codes == [0, 13128]
    # and later queries from the loser keep failing; either may win, their hops to the two
    # systems' partitions run side by side
    loser, winner = (rival, first) if error_code(answers[1]) == 13128 else (first, rival)
    assert error_code(flow.query(loser)) == 13128
    assert flow.query(winner).value["status"] == "SUCCESS"


def test_region_that_never_answers_fails_with_13105_and_is_undone(
    flow: Flow, fleet_: Fleet
) -> None:
    vehicle = fleet_.vehicle(SILENT_REGION)
    flow.register(vehicle)
    message_id = flow.send_query(vehicle)
    answer = flow.answer(message_id, timeout=60)
    assert error_code(answer) == 13105
    assert answer.value["body"]["lifecyclestate"] == "QRY_FAIL"
    states = [e.value["state"] for e in flow.lifecycle(vehicle.vin)]
    assert states == ["QRY_FAIL"]
    requests = flow.bus.wait(flow.cat.rehome(SILENT_REGION),
                             lambda r: r.key == vehicle.vin, count=2)
    assert [r.value["action"] for r in requests] == ["REGISTER", "CANCEL"]
    assert requests[0].value["request_id"] == requests[1].value["request_id"]


def test_late_registration_in_the_region_is_undone(
    flow: Flow, fleet_: Fleet, redis_client: redis.Redis
) -> None:
    """The region confirms after the global side gave up: it must not keep the vehicle."""
    vehicle = fleet_.vehicle(SILENT_REGION)
    flow.register(vehicle)
    answer = flow.answer(flow.send_query(vehicle), timeout=60)
    assert error_code(answer) == 13105
    request = flow.bus.wait(flow.cat.rehome(SILENT_REGION), lambda r: r.key == vehicle.vin)[0]
    # play a slow region: confirm the request now, long after the deadline
    late = {**{k: request.value[k] for k in ("request_id", "vin", "system_id", "region")},
            "outcome": "REGISTERED", "gateway_endpoint": "mqtts://zz", "error_code": None,
            "error_message": None, "completed_at": 0}
    topic = flow.cat.rehome_result
    flow.bus.send(topic, vehicle.vin, flow.bus.serde.encode("RehomeResult", late, topic=topic))
    flow.bus.flush()
    cancels = flow.bus.wait(flow.cat.rehome(SILENT_REGION),
                            lambda r: r.key == vehicle.vin and r.value["action"] == "CANCEL",
                            count=2)
    assert {c.value["request_id"] for c in cancels} == {request.value["request_id"]}
    status, glob = flow.workers["global"].get(f"/vehicles/{vehicle.vin}/")
    assert glob["state"] == "QRY_FAIL"


def test_cancel_removes_the_regional_registration(
    flow: Flow, fleet_: Fleet, redis_client: redis.Redis
) -> None:
    """The NA worker undoes a registration when the global side tells it to."""
    vehicle = fleet_.vehicle("NA")
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    request = flow.bus.wait(flow.cat.rehome_result, lambda r: r.key == vehicle.vin)[0]
    cancel = {
        "request_id": request.value["request_id"], "action": "CANCEL", "vin": vehicle.vin,
        "system_id": vehicle.system_id, "sub_system_id": vehicle.sub_system_id, "region": "NA",
        "country_code": "US", "primary_device_id": vehicle.primary.device_id, "devices": [],
        "cause_message_id": "test", "sequence": 1, "requested_at": 0, "deadline_at": 0,
    }
    topic = flow.cat.rehome("NA")
    flow.bus.send(topic, vehicle.vin, flow.bus.serde.encode("RehomeRequest", cancel, topic=topic))
    flow.bus.flush()
    # the region sends its CANCELLED result after it wrote the table and ran the effects
    flow.bus.wait(flow.cat.rehome_result, lambda r: r.key == vehicle.vin
                  and r.value["outcome"] == "CANCELLED")
    assert flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")[0] == 404
    assert not redis_client.exists(identity_key("NA", vehicle.primary.device_id))


def test_duplicate_and_repeated_queries(flow: Flow, fleet_: Fleet) -> None:
    vehicle = fleet_.vehicle("NA")
    flow.register(vehicle)
    message_id = flow.send_query(vehicle)
    first = flow.answer(message_id)
    # exact duplicate: the original answer again
    flow.send_query(vehicle, message_id=message_id)
    again = flow.answer(message_id, count=2)
    assert again.value == first.value
    # a new query for a REGIONAL vehicle: same regional details, no new work
    repeat = flow.query(vehicle, message_id=str(uuid.uuid4()))
    assert repeat.value["status"] == "SUCCESS"
    assert repeat.value["body"] == first.value["body"]
    events = flow.bus.settle(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, seconds=2)
    assert len({e.value["event_id"] for e in events}) == 1
    requests = flow.bus.records(flow.cat.rehome_result, lambda r: r.key == vehicle.vin)
    assert len({r.value["request_id"] for r in requests}) == 1


def test_a_rehome_deadline_pending_across_a_global_worker_crash_still_fails_the_query(
    flow: Flow, fleet_: Fleet
) -> None:
    """Deadlines live in memory: the restarted worker finds the pending rehome in its
    recovered vehicles table and still answers 13105 when the deadline has passed."""
    vehicle = fleet_.vehicle(SILENT_REGION)
    flow.register(vehicle)
    message_id = flow.send_query(vehicle)
    glob = flow.workers["global"]
    wait_until(lambda: (glob.get(f"/vehicles/{vehicle.vin}/")[1] or {}).get("pending"),
               timeout=30)
    glob.kill()
    glob.start().wait_ready()
    answer = flow.answer(message_id, timeout=90)
    assert error_code(answer) == 13105
    assert answer.value["body"]["lifecyclestate"] == "QRY_FAIL"
