"""No registered device ends up "not part of vehicle" (SPEC 2.1, last paragraph), on the real
workers: late registrations join the vehicle and its region; a device moved to another system
leaves it."""

from __future__ import annotations

import dataclasses
import time
import uuid

from tests.integration.conftest import JOIN_WAIT_SECONDS, Flow, error_code
from tests.integration.harness import Fleet
from vprov.kafka.partitioning import owner
from vprov.ops.lifecycle_events import dedupe
from vprov.ops.registration_file import to_record
from vprov.sim import fleet

# Registrations queued in front of a late one on its partition: the index takes seconds to
# reach it, while the query is bound in a fraction of that.
BACKLOG = 3000


def events_of(flow: Flow, vin: str, count: int) -> list[dict]:
    """The vehicle's first ``count`` distinct lifecycle events. Delivery is at least once: a
    worker that retries a step after a rebalance sends its events again under the same
    ``event_id``, and subscribers drop the repeats (docs/architecture.md), as this does."""
    wanted = count
    while True:
        records = flow.bus.wait(flow.cat.lifecycle, lambda r: r.key == vin, count=wanted)
        unique, repeats = dedupe(r.value for r in records)
        if len(unique) >= count:
            return unique[:count]
        wanted = count + repeats


def register_device(flow: Flow, vehicle: fleet.SimVehicle, index: int) -> None:
    reg = fleet.registrations(vehicle)[index]
    topic = flow.cat.registrations
    flow.bus.send(topic, reg["device_id"],
                  flow.bus.serde.encode("DeviceRegistration", to_record(reg), topic=topic))
    flow.bus.flush()


def regional_with_primary_only(flow: Flow, fleet_: Fleet) -> fleet.SimVehicle:
    """A two-device vehicle of which only the primary is registered, queried: REGIONAL."""
    vehicle = fleet_.vehicle("NA")
    flow.register(dataclasses.replace(vehicle, devices=(vehicle.primary,)))
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    return vehicle


def test_a_device_registered_after_its_vehicle_is_regional_provisions(
        flow: Flow, fleet_: Fleet) -> None:
    vehicle = regional_with_primary_only(flow, fleet_)
    tcu, ivi = vehicle.devices
    events_of(flow, vehicle.vin, 1)

    register_device(flow, vehicle, 1)
    joined = events_of(flow, vehicle.vin, 2)[1]
    assert (joined["device_id"], joined["state"], joined["previous_state"], joined["partition"]) \
        == (ivi.device_id, "REGIONAL", None, "NA")

    answers = [flow.provision(vehicle, device) for device in (tcu, ivi)]
    assert [a.value["status"] for a in answers] == ["SUCCESS", "SUCCESS"]
    status, entry = flow.workers["global"].get(f"/vehicles/{vehicle.vin}/")
    assert status == 200
    assert {d["device_id"] for d in entry["devices"]} == {tcu.device_id, ivi.device_id}


def test_a_device_indexed_after_the_query_provisions(flow: Flow, fleet_: Fleet) -> None:
    """Registered before the query, but its index record waits behind a backlog on its
    partition: the query binds the vehicle without it, and the device joins at the bind."""
    vehicle = fleet_.vehicle("NA")
    tcu, ivi = vehicle.devices
    flow.register(dataclasses.replace(vehicle, devices=(tcu,)))

    partitions = flow.bus.config.partitions
    target = owner(ivi.device_id.encode(), partitions)
    topic = flow.cat.registrations
    filler = 0
    queued = 0
    while queued < BACKLOG:  # other devices of other systems, on the IVI's partition
        filler += 1
        device_id = f"b{uuid.uuid4().hex[:12]}"
        if owner(device_id.encode(), partitions) != target:
            continue
        reg = {"system_id": f"sys-backlog-{filler}", "sub_system_id": "sub-backlog",
               "device_id": device_id, "ecu_type": "IVI", "primary": False,
               "certificate_fingerprint": "0" * 40}
        flow.bus.send(topic, device_id,
                      flow.bus.serde.encode("DeviceRegistration", to_record(reg), topic=topic))
        queued += 1
    register_device(flow, vehicle, 1)
    answer = flow.query(vehicle)
    assert answer.value["status"] == "SUCCESS"

    # The join event proves the device came late; then it provisions like the others.
    events = events_of(flow, vehicle.vin, 2)
    assert [(e["device_id"], e["previous_state"], e["state"]) for e in events] == \
        [(None, "REGISTERED", "REGIONAL"), (ivi.device_id, None, "REGIONAL")]
    answers = [flow.provision(vehicle, device) for device in (tcu, ivi)]
    assert [a.value["status"] for a in answers] == ["SUCCESS", "SUCCESS"]


def test_a_device_moved_to_another_system_leaves_its_old_vehicle(
        flow: Flow, fleet_: Fleet) -> None:
    old, new = fleet_.vehicle("NA"), fleet_.vehicle("NA")
    flow.register(old, new)
    assert flow.query(old).value["status"] == "SUCCESS"
    assert flow.query(new).value["status"] == "SUCCESS"
    moving = old.devices[1]
    assert flow.provision(old, old.devices[0]).value["status"] == "SUCCESS"
    assert flow.provision(old, moving).value["status"] == "SUCCESS"

    moved = dataclasses.replace(new, devices=(*new.devices,
                                              dataclasses.replace(moving, primary=False)))
    register_device(flow, moved, 2)

    left = events_of(flow, old.vin, 4)[3]
    assert (left["device_id"], left["previous_state"], left["state"]) == \
        (moving.device_id, "PROVISIONED", "REMOVED")
    joined = events_of(flow, new.vin, 2)[1]
    assert (joined["device_id"], joined["previous_state"], joined["state"]) == \
        (moving.device_id, None, "REGIONAL")
    # relayed by the old vehicle's primary: not part of that vehicle any more (it waits for a
    # join that does not come, then gets 13123)
    refused = flow.provision(old, moving, headers={"authenticated-device-id":
                                                   old.devices[0].device_id})
    assert error_code(refused) == 13123
    assert flow.provision(new, new.devices[0]).value["status"] == "SUCCESS"
    assert flow.provision(moved, moving).value["status"] == "SUCCESS"


def test_a_request_that_comes_before_its_registration_is_held_until_the_join(
        flow: Flow, fleet_: Fleet) -> None:
    vehicle = regional_with_primary_only(flow, fleet_)
    tcu, ivi = vehicle.devices
    assert flow.provision(vehicle, tcu).value["status"] == "SUCCESS"
    early = flow.send_provision(vehicle, ivi, headers={"authenticated-device-id": ivi.device_id})
    held = flow.bus.settle(flow.cat.device_response("NA"),
                           lambda r: r.value.get("correlation_id") == early, seconds=1)
    assert held == []
    register_device(flow, vehicle, 1)
    answer = flow.answer(early, flow.cat.device_response("NA"))
    assert answer.value["status"] == "SUCCESS"
    events = events_of(flow, vehicle.vin, 4)
    assert [(e["device_id"], e["previous_state"], e["state"]) for e in events[2:]] == \
        [(ivi.device_id, None, "REGIONAL"), (ivi.device_id, "REGIONAL", "PROVISIONED")]


def test_a_device_that_never_joins_is_answered_13123_when_the_hold_expires(
        flow: Flow, fleet_: Fleet) -> None:
    vehicle = regional_with_primary_only(flow, fleet_)
    tcu, ivi = vehicle.devices
    sent = time.monotonic()
    answer = flow.provision(vehicle, ivi, headers={"authenticated-device-id": ivi.device_id})
    waited = time.monotonic() - sent
    assert error_code(answer) == 13123
    assert "not part of vehicle" in answer.value["property_bag"]["error_message"]
    assert waited >= JOIN_WAIT_SECONDS - 0.5  # held, not refused at once
