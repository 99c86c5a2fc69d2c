"""Several workers per role, restarts and SIGKILL, each in a deployment of its own."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import PORT_BASE, Flow
from tests.integration.harness import Fleet, WorkerProcess, own_deployment, wait_until
from vprov.ops.workers import running, start_all
from vprov.sim import fleet

VEHICLES = 200


def answered(flow: Flow, sent: dict[str, str], topic: str, timeout: float = 120) -> dict:
    """The one answer to each request of ``sent`` (message id -> VIN); on a timeout, what the
    workers know of the vehicles still waiting, to tell where they stopped."""
    wanted = set(sent)
    try:
        records = flow.bus.wait_all(topic, lambda r: r.value.get("correlation_id"), wanted,
                                    timeout=timeout)
    except TimeoutError as exc:
        got = {r.value.get("correlation_id") for r in flow.bus.records(topic)}
        lines = [str(exc)]
        for message_id in sorted(wanted - got)[:5]:
            vin = sent[message_id]
            views = {name: proc.get(f"/vehicles/{vin}/") for name, proc in flow.workers.items()}
            lines.append(f"{message_id} {vin}: {views}")
        raise AssertionError("\n".join(lines)) from None
    # a request processed again after a crash may be answered twice: identically
    by_id: dict[str, list] = {}
    for rec in records:
        by_id.setdefault(rec.value["correlation_id"], []).append(rec.value)
    for message_id, answers in by_id.items():
        assert all(a == answers[0] for a in answers), (
            f"two different answers to {message_id}: {answers}")
    return {k: v[0] for k, v in by_id.items()}


def queries(flow: Flow, vehicles: list[fleet.SimVehicle]) -> dict[str, str]:
    return {flow.send_query(v): v.vin for v in vehicles}


@pytest.fixture
def scaled(tmp_path: Path) -> Iterator[tuple[Flow, dict[str, WorkerProcess], Path]]:
    path, _, bus = own_deployment(tmp_path, "vscale")
    procs = {
        "global": WorkerProcess("global", PORT_BASE + 100, tmp_path, path),
        "global2": WorkerProcess("global", PORT_BASE + 101, tmp_path, path),
        "NA": WorkerProcess("regional", PORT_BASE + 102, tmp_path, path, region="NA"),
        "NA2": WorkerProcess("regional", PORT_BASE + 103, tmp_path, path, region="NA"),
    }
    try:
        with running(procs):
            yield Flow(bus, procs), procs, path
    finally:
        bus.close()


def test_two_workers_per_role_bring_200_vehicles_to_regional_and_survive_a_restart(
    scaled: tuple[Flow, dict[str, WorkerProcess], Path],
) -> None:
    flow, procs, _ = scaled
    fleet_ = Fleet(tag=fleet.run_tag(str(uuid.uuid4())))
    vehicles = [fleet_.vehicle("NA") for _ in range(VEHICLES)]
    flow.register(*vehicles)
    first = answered(flow, queries(flow, vehicles), flow.cat.query_response)
    assert Counter(a["status"] for a in first.values()) == {"SUCCESS": VEHICLES}
    # the bus reads each topic on its own: an answer can reach it before its lifecycle event
    flow.bus.wait_all(flow.cat.lifecycle, lambda r: r.key, {v.vin for v in vehicles},
                      timeout=60)
    events = flow.histories({v.vin for v in vehicles})
    assert all([e["state"] for e in events[v.vin]] == ["REGIONAL"] for v in vehicles)

    # stop one worker of each role and start it again: state survives, new queries answered
    procs["global"].stop()
    procs["NA"].stop()
    start_all(procs["global"], procs["NA"])
    again = answered(flow, queries(flow, vehicles), flow.cat.query_response)
    assert all(a["status"] == "SUCCESS" for a in again.values())
    endpoint = flow.bus.config.regions["NA"].gateway_endpoint
    assert {a["body"]["iot_gateway_endpoint"] for a in again.values()} == {endpoint}
    newcomers = [fleet_.vehicle("NA") for _ in range(20)]
    flow.register(*newcomers)
    fresh = answered(flow, queries(flow, newcomers), flow.cat.query_response)
    assert all(a["status"] == "SUCCESS" for a in fresh.values())
    # no vehicle went through the flow twice
    events = flow.histories({v.vin for v in vehicles})
    assert all(len(events[v.vin]) == 1 for v in vehicles)
    # both global workers answer for every vehicle (the table view routes to the owner)
    for vehicle in vehicles[:20]:
        for name in ("global", "global2"):
            status, entry = procs[name].get(f"/vehicles/{vehicle.vin}/")
            assert (status, entry["state"]) == (200, "REGIONAL")

    # a peer killed: until the group notices, its keys answer 503 with a reason (clients
    # retry), never a server error; afterwards the survivor answers for every key
    procs["global2"].kill()
    views = [procs["global"].get(f"/vehicles/{v.vin}/") for v in vehicles[:20]]
    assert {status for status, _ in views} == {200, 503}, views
    for status, body in views:
        if status == 503:
            assert "cannot be reached" in body["error"] and "retry" in body["error"], body
    wait_until(lambda: all(procs["global"].get(f"/vehicles/{v.vin}/")[0] == 200
                           for v in vehicles[:20]), timeout=90, what="survivor owns every key")


@pytest.fixture
def crashable(tmp_path: Path) -> Iterator[tuple[Flow, dict[str, WorkerProcess]]]:
    path, _, bus = own_deployment(tmp_path, "vcrash")
    procs = {
        "global": WorkerProcess("global", PORT_BASE + 110, tmp_path, path),
        "NA": WorkerProcess("regional", PORT_BASE + 111, tmp_path, path, region="NA"),
    }
    try:
        with running(procs):
            yield Flow(bus, procs), procs
    finally:
        bus.close()


def test_regional_worker_killed_mid_run_loses_and_duplicates_nothing(
    crashable: tuple[Flow, dict[str, WorkerProcess]],
) -> None:
    flow, procs = crashable
    fleet_ = Fleet(tag=fleet.run_tag(str(uuid.uuid4())))
    vehicles = [fleet_.vehicle("NA") for _ in range(VEHICLES)]
    flow.register(*vehicles)
    answered(flow, queries(flow, vehicles), flow.cat.query_response)

    request_ids: dict[str, str] = {}
    for vehicle in vehicles:
        for device in vehicle.devices:  # primary first
            message_id = str(uuid.uuid4())
            raw = fleet.device_provision(vehicle, device, message_id, int(time.time()))
            request_ids[message_id] = vehicle.vin
            flow.bus.send(flow.cat.device("NA"), vehicle.vin, raw)
    flow.bus.flush()
    topic = flow.cat.device_response("NA")
    wanted = set(request_ids)
    flow.bus.wait(topic, lambda r: r.value.get("correlation_id") in wanted,
                  count=len(wanted) // 4)
    procs["NA"].kill()  # SIGKILL in the middle of the run
    procs["NA"].start().wait_ready(timeout=120)
    answers = answered(flow, request_ids, topic, timeout=180)
    assert Counter(a["status"] for a in answers.values()) == {"SUCCESS": len(request_ids)}

    # the bus reads each topic on its own: the events of the last answers may still be on
    # their way to it, so wait for every one (a lost one times out)
    vins = {v.vin for v in vehicles}
    flow.bus.wait_all(flow.cat.lifecycle, lambda r: (r.key, r.value.get("device_id")),
                      {(v.vin, d) for v in vehicles
                       for d in (None, *(dev.device_id for dev in v.devices))}, timeout=60)
    onboarding = flow.bus.wait_all(flow.cat.onboarding("NA"),
                                   lambda r: r.value.get("cause_message_id"), wanted, timeout=60)
    events = flow.histories(vins)
    for vehicle in vehicles:
        history = events[vehicle.vin]
        assert [(e["device_id"], e["state"]) for e in history] == [
            (None, "REGIONAL"),
            (vehicle.devices[0].device_id, "PROVISIONED"),
            (vehicle.devices[1].device_id, "PROVISIONED"),
        ], vehicle.vin
        assert [e["sequence"] for e in history] == [1, 2, 3]
    # one request per device, however often a request processed again repeated it
    assert len({o.value["request_id"] for o in onboarding}) == 2 * VEHICLES
    for vehicle in vehicles[::10]:
        status, entry = procs["NA"].get(f"/vehicles/{vehicle.vin}/")
        assert {d["state"] for d in entry["devices"].values()} == {"PROVISIONED"}
