"""Any producer's partitioner and any record key get the same answers (docs/spec.md 3.7).

Registrations, queries and device requests are produced by librdkafka with three partitioners:
murmur2 (the Java clients' rule, which the tables follow), librdkafka's default CRC32
(``consistent_random``) and random. The outcomes must be the same for all three, including the
refusals that depend on state (1401 for a spoofed sender, 13123 for a device of another
vehicle): a record on the wrong partition would otherwise find no state and be answered 13123.

The requests are then keyed as a gateway that forwards them may key them: by the sending device's
id, or not at all, in envelope v1 and v2 (whose header has no VIN). They are routed by the VIN
their body names and answered as if they had been keyed by it.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from tests.integration.conftest import Flow, error_code
from tests.integration.harness import BOOTSTRAP, Fleet, WorkerProcess, wait_until
from vprov.core import envelope
from vprov.kafka.clients import admin_client, producer
from vprov.kafka.partitioning import owner
from vprov.ops.registration_file import to_record
from vprov.sim import fleet

VEHICLES = 6


def forwarded(workers: dict[str, WorkerProcess]) -> int:
    return sum((w.health() or {}).get("forwarded", 0) for w in workers.values())


def run_fleet(flow: Flow, fleet_: Fleet, partitioner: str, *, key_by: str = "vin",
              version: str = envelope.VERSION) -> list[tuple[Any, ...]]:
    """One small fleet end to end with every input produced by ``partitioner``; returns each
    answer as (what, status, error code, lifecycle state), in a fixed order. The requests are
    written in envelope ``version`` and keyed by ``key_by``: "vin", "device" (the sending
    device's id) or "none"."""
    out = producer(BOOTSTRAP, partitioner=partitioner)
    cat = flow.cat
    vehicles = [fleet_.vehicle("NA") for _ in range(VEHICLES)]

    def send(topic: str, key: str | None, value: bytes,
             headers: dict[str, str] | None = None) -> None:
        out.produce(topic, key=key.encode() if key is not None else None, value=value,
                    headers=list(headers.items()) if headers else None)
        out.poll(0)

    def request_key(vehicle: fleet.SimVehicle, device: fleet.SimDevice) -> str | None:
        return {"vin": vehicle.vin, "device": device.device_id, "none": None}[key_by]

    for vehicle in vehicles:
        for reg in fleet.registrations(vehicle):
            send(cat.registrations, reg["device_id"],
                 flow.bus.serde.encode("DeviceRegistration", to_record(reg),
                                       topic=cat.registrations))
    out.flush(30)
    glob = flow.workers["global"]
    for vehicle in vehicles:
        wait_until(lambda v=vehicle: (glob.get(f"/systems/{v.system_id}/")[1] or {})
                   .get("devices") is not None
                   and len(glob.get(f"/systems/{v.system_id}/")[1]["devices"]) == len(v.devices),
                   what=f"system {vehicle.system_id} indexed")

    now = int(time.time())
    asked: list[tuple[str, str, str]] = []  # (what, message id, response topic)
    for index, vehicle in enumerate(vehicles):
        message_id = str(uuid.uuid4())
        send(cat.query, request_key(vehicle, vehicle.primary),
             fleet.query(vehicle, message_id, now, version=version))
        asked.append((f"query {index}", message_id, cat.query_response))
    # a query whose authenticated sender is the vehicle's other device: 1401, nothing changes
    spoof = str(uuid.uuid4())
    send(cat.query, request_key(vehicles[0], vehicles[0].primary),
         fleet.query(vehicles[0], spoof, now, version=version),
         {"authenticated-device-id": vehicles[0].devices[1].device_id})
    out.flush(30)
    answers = [flow.answer(mid, topic) for _, mid, topic in asked]
    answers.append(flow.answer(spoof, cat.query_response))
    asked.append(("spoofed query", spoof, cat.query_response))

    device_topic = cat.device_response("NA")
    provisions: list[tuple[str, str, str]] = []
    for index, vehicle in enumerate(vehicles):
        for device in vehicle.devices:
            message_id = str(uuid.uuid4())
            send(cat.device("NA"), request_key(vehicle, device),
                 fleet.device_provision(vehicle, device, message_id, now, version=version))
            provisions.append((f"device {index}/{device.ecu_type}", message_id, device_topic))
    # a device the vehicle does not have (registered nowhere): not part of it, 13123
    stranger = str(uuid.uuid4())
    unknown = dataclasses.replace(vehicles[2].devices[1], device_id=f"x{uuid.uuid4().hex[:12]}")
    send(cat.device("NA"), request_key(vehicles[2], unknown),
         fleet.device_provision(vehicles[2], unknown, stranger, now, version=version))
    provisions.append(("device of another vehicle", stranger, device_topic))
    # a device request whose authenticated sender belongs to another vehicle: 1401
    intruder = str(uuid.uuid4())
    send(cat.device("NA"), request_key(vehicles[3], vehicles[3].devices[1]),
         fleet.device_provision(vehicles[3], vehicles[3].devices[1], intruder, now,
                                version=version),
         {"authenticated-device-id": vehicles[4].devices[0].device_id})
    provisions.append(("spoofed device", intruder, device_topic))
    out.flush(30)
    answers += [flow.answer(mid, topic) for _, mid, topic in provisions]
    asked += provisions

    def lifecycle_state(answer: Any) -> str:
        body = answer.value["body"]
        return body.get("lifecyclestate") or body.get("lifecycyclestate")

    def status(answer: Any) -> str:
        # a v2 answer has no status in its header: its outcome is the error code
        assert answer.value["version"] == version
        return answer.value.get("status") or ("FAIL" if error_code(answer) else "SUCCESS")

    return [(what, status(a), error_code(a), lifecycle_state(a))
            for (what, _, _), a in zip(asked, answers, strict=True)]


def expected_outcomes() -> list[tuple[Any, ...]]:
    return ([(f"query {i}", "SUCCESS", None, "PROVISION_PENDING_REGIONAL")
             for i in range(VEHICLES)]
            + [("spoofed query", "FAIL", 1401, "QRY_FAIL")]
            + [(f"device {i}/{ecu}", "SUCCESS", None, "PROVISIONED")
               for i in range(VEHICLES) for ecu in ("TCU", "IVI")]
            + [("device of another vehicle", "FAIL", 13123, "PROV_FAIL"),
               ("spoofed device", "FAIL", 1401, "PROV_FAIL")])


def test_three_partitioners_get_identical_answers(flow: Flow) -> None:
    outcomes = {}
    moved = {}
    for partitioner in ("murmur2_random", "consistent_random", "random"):
        fleet_ = Fleet(tag=fleet.run_tag(f"{partitioner}-{uuid.uuid4()}"))
        before = forwarded(flow.workers)
        outcomes[partitioner] = run_fleet(flow, fleet_, partitioner)
        moved[partitioner] = forwarded(flow.workers) - before

    expected = expected_outcomes()
    for partitioner, got in outcomes.items():
        assert got == expected, partitioner
    # murmur2 lands every record on its owner; the others really took the forwarding path
    assert moved["murmur2_random"] == 0
    assert moved["consistent_random"] > 0
    assert moved["random"] > 0


@pytest.mark.parametrize("version", [envelope.VERSION, envelope.VERSION_2])
@pytest.mark.parametrize("key_by", ["device", "none"])
def test_requests_keyed_by_device_or_unkeyed_are_routed_by_their_vin(
        flow: Flow, key_by: str, version: str) -> None:
    """A request keyed by its device id, or not keyed, is routed by the VIN its body names and
    answered exactly as one keyed by that VIN: no 13130, and the state-dependent refusals still
    find the vehicle's state (librdkafka's default partitioner places the records)."""
    fleet_ = Fleet(tag=fleet.run_tag(f"{key_by}-{version}-{uuid.uuid4()}"))
    before = forwarded(flow.workers)
    got = run_fleet(flow, fleet_, "consistent_random", key_by=key_by, version=version)
    assert got == expected_outcomes()
    # every request but the ones keyed by their VIN is forwarded once, re-keyed: 6 queries + 1
    # spoof, 12 devices + 2 refusals; a registration keyed by its device id on its owner is not
    assert forwarded(flow.workers) - before >= VEHICLES * 3 + 3


def test_owner_matches_librdkafka_murmur2(flow: Flow) -> None:
    """The processor's rule for the owning partition is the one a murmur2 producer follows."""
    partitions = flow.bus.config.partitions
    topic = f"{flow.cat.global_app_id}.placement-probe-{uuid.uuid4().hex[:8]}"
    admin = admin_client(BOOTSTRAP)
    admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                  replication_factor=1)])[topic].result(30)
    try:
        placed = probe_placement(topic)
    finally:
        admin.delete_topics([topic])
    assert {key: owner(key, partitions) for key in placed} == placed
    assert len(set(placed.values())) == partitions  # the keys spread: the test can fail


def probe_placement(topic: str) -> dict[bytes, int]:
    out = producer(BOOTSTRAP, partitioner="murmur2_random")
    placed: dict[bytes, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        placed[msg.key()] = msg.partition()

    keys = [f"{fleet.run_tag(str(uuid.uuid4()))}-{i}".encode() for i in range(200)]
    for key in keys:
        out.produce(topic, key=key, value=b"", on_delivery=delivered)
    out.flush(30)
    assert len(placed) == len(keys)
    return placed
