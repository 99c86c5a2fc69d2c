"""``vprov deadletter``: a dead letter the workers wrote is listed and shown; one redriven once
its cause is fixed provisions the device, and a second redrive is answered identically."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Flow, run_vprov
from tests.integration.harness import Fleet
from vprov.core.ids import derive_id
from vprov.sim import fleet

pytestmark = pytest.mark.usefixtures("broker_env")


def test_a_dead_letter_of_the_workers_is_listed_and_shown(
        flow: Flow, config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topic = flow.cat.device("NA")
    marker = f"not json {uuid.uuid4()}".encode()
    flow.bus.send(topic, "1HGCM82633A004352", marker)
    flow.bus.flush()
    [letter] = flow.bus.wait(flow.cat.deadletter, lambda r: r.value["payload"] == marker)
    letter_id = letter.value["dead_letter_id"]

    code, out, _ = run_vprov(config_path, capsys, "deadletter", "list", "--code", "13113",
                         "--source-topic", topic)
    assert code == 0
    [row] = [line for line in out.splitlines() if line.startswith(letter_id)]
    assert "13113" in row and f"{topic}:" in row and "key=1HGCM82633A004352" in row
    code, out, _ = run_vprov(config_path, capsys, "deadletter", "show", "--id", letter_id)
    assert code == 0
    assert f"dead letter {letter_id}" in out and marker.decode() in out


def test_a_redriven_request_provisions_the_device_once(
        flow: Flow, fleet_: Fleet, config_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    vehicle = fleet_.vehicle("NA")
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    device = vehicle.primary
    message_id = str(uuid.uuid4())
    request = fleet.device_provision(vehicle, device, message_id, int(time.time()))
    # As a worker writes it when it fails on an input for a reason since fixed (code 9000).
    topic = flow.cat.device("NA")
    letter_id = derive_id("deadletter", f"{topic}:0:{uuid.uuid4()}")
    dead = {"dead_letter_id": letter_id, "source_topic": topic, "source_partition": 0,
            "source_offset": 0, "key": vehicle.vin.encode(), "payload": request,
            "error_code": 9000, "error_message": "internal error: a bug, since fixed",
            "received_at": int(time.time() * 1000)}
    flow.bus.send(flow.cat.deadletter, vehicle.vin,
                  flow.bus.serde.encode("DeadLetter", dead, topic=flow.cat.deadletter))
    flow.bus.flush()
    flow.bus.wait(flow.cat.deadletter, lambda r: r.value["dead_letter_id"] == letter_id)

    code, out, _ = run_vprov(config_path, capsys, "deadletter", "redrive", "--id", letter_id,
                         "--dry-run")
    assert code == 0 and f"would redrive {letter_id} -> {topic}" in out
    answers = flow.cat.device_response("NA")
    assert flow.bus.settle(answers, lambda r: r.value.get("correlation_id") == message_id,
                           seconds=2) == []

    code, out, _ = run_vprov(config_path, capsys, "deadletter", "redrive", "--id", letter_id)
    assert code == 0 and f"redrive {letter_id} -> {topic}" in out
    first = flow.answer(message_id, answers)
    assert first.value["status"] == "SUCCESS"
    assert first.value["body"]["lifecycyclestate"] == "PROVISIONED"

    # redriven again: the same answer, no second provisioning
    assert run_vprov(config_path, capsys, "deadletter", "redrive", "--id", letter_id)[0] == 0
    again = flow.answer(message_id, answers, count=2)
    assert again.value == first.value
    events = flow.bus.settle(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, seconds=2)
    # the repeat re-sends the remembered event, recognisable by its id (SPEC 5)
    unique = {e.value["event_id"]: e.value["state"] for e in events}
    assert sorted(unique.values()) == ["PROVISIONED", "REGIONAL"]


def test_an_internal_command_of_an_unknown_kind_is_dead_lettered_and_the_worker_goes_on(
        flow: Flow, fleet_: Fleet) -> None:
    vehicle = fleet_.vehicle("NA")
    commands = {flow.cat.vehicle_commands: f'{{"kind":"reboot","id":"{uuid.uuid4()}"}}',
                flow.cat.regional_commands("NA"): f'{{"kind":"shrug","id":"{uuid.uuid4()}"}}'}
    for topic, value in commands.items():
        flow.bus.send(topic, vehicle.vin, value.encode())
    flow.bus.flush()
    for topic, value in commands.items():
        [letter] = flow.bus.wait(flow.cat.deadletter,
                                 lambda r, value=value: r.value["payload"] == value.encode())
        assert (letter.value["source_topic"], letter.value["error_code"]) == (topic, 9000)
        assert "unknown" in letter.value["error_message"]
    # the partitions moved on: the same vehicle is then rehomed through both workers
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
