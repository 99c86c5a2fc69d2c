"""``vprov status`` names the stage of real vehicles on real workers: one waiting for a region no
worker serves (with a dead letter of its own), one whose device waits for its registration."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import ports
from tests.integration.conftest import PORT_BASE, SILENT_REGION, Flow, run_vprov
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    Bus,
    Fleet,
    WorkerProcess,
    isolated_config,
    wait_until,
)
from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import running

WEB_PORTS = {"global": PORT_BASE + 146, "NA": PORT_BASE + 147}
# long enough that no deadline passes while the test looks
WAIT_SECONDS = 600

pytestmark = pytest.mark.usefixtures("broker_env")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Path, Config, dict[str, WorkerProcess]]]:
    """A global and an NA worker of their own; no worker serves the silent region."""
    tmp = tmp_path_factory.mktemp("stage")
    path = isolated_config(
        tmp / "vprov.toml", f"s{uuid.uuid4().hex[:6]}",
        regions={SILENT_REGION: {"gateway_endpoint": "mqtts://zz.iot.vprov.example:8883",
                                 "countries": []}},
        rehome_timeout_seconds=WAIT_SECONDS, join_wait_seconds=WAIT_SECONDS)
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    ensure_topics(BOOTSTRAP, Catalogue(config).all(), timeout=20)
    workers = {"global": WorkerProcess("global", WEB_PORTS["global"], tmp, path),
               "NA": WorkerProcess("regional", WEB_PORTS["NA"], tmp, path, region="NA")}
    with running(workers):
        yield path, config, workers


@pytest.fixture
def flow(deployment: tuple[Path, Config, dict[str, WorkerProcess]]) -> Iterator[Flow]:
    _, config, workers = deployment
    cat = Catalogue(config)
    bus = Bus(config, [cat.query_response, cat.deadletter, cat.device_response("NA"),
                       cat.lifecycle])
    yield Flow(bus, workers)
    bus.close()


def status(deployment: tuple[Path, Config, dict[str, WorkerProcess]],
           capsys: pytest.CaptureFixture[str], vin: str, *args: str) -> tuple[int, str, str]:
    path, _, workers = deployment
    silent = f"http://127.0.0.1:{ports.closed_port()}"  # what a region without a worker is
    return run_vprov(path, capsys, "status", vin, "--global-url", workers["global"].url,
                     "--region-url", f"NA={workers['NA'].url}",
                     "--region-url", f"{SILENT_REGION}={silent}", *args)


def global_entry(flow: Flow, vin: str) -> dict[str, Any] | None:
    code, entry = flow.workers["global"].get(f"/vehicles/{vin}/")
    return entry if code == 200 else None


def test_a_vehicle_waiting_for_a_silent_region_names_it_the_deadline_and_its_dead_letter(
    deployment: tuple[Path, Config, dict[str, WorkerProcess]], flow: Flow, fleet_: Fleet,
    capsys: pytest.CaptureFixture[str]
) -> None:
    vehicle = fleet_.vehicle(region=SILENT_REGION)
    flow.register(vehicle)
    flow.send_query(vehicle)  # its region never answers: the query waits
    flow.bus.send(flow.cat.query, vehicle.vin, b"{not json")  # cannot be answered
    flow.bus.flush()
    [letter] = flow.bus.wait(flow.cat.deadletter, lambda r: r.key == vehicle.vin)
    letter_id = letter.value["dead_letter_id"]
    pending = wait_until(lambda: (global_entry(flow, vehicle.vin) or {}).get("pending"),
                         timeout=30, what="the query pending on the silent region")

    code, out, err = status(deployment, capsys, vehicle.vin)
    assert code == 0, err
    assert "  stage           REHOME\n" in out
    assert f"  waits for       region {SILENT_REGION} to confirm the vehicle's registration" \
        in out
    assert "  deadline        " in out and "(in 9 min" in out
    assert "1 waiting query is answered 13105" in out
    assert f"seen            region {SILENT_REGION}: cannot reach the {SILENT_REGION} worker" \
        in out
    assert f"--role regional --region {SILENT_REGION}`" in out
    assert f"      $ vprov deadletter show --id {letter_id}" in out

    code, out, err = status(deployment, capsys, vehicle.vin, "--json")
    assert code == 0, err
    stage = json.loads(out)["stage"]
    assert stage["name"] == "REHOME"
    assert stage["deadline_ms"] == pending["deadline_ms"]
    assert stage["deadline_ms"] - stage["since_ms"] == WAIT_SECONDS * 1000
    assert stage["overdue"] is False
    assert stage["seen"][0].startswith(f"region {SILENT_REGION}: cannot reach")
    assert [d["dead_letter_id"] for d in stage["dead_letters"]] == [letter_id]
    assert stage["dead_letters"][0]["error_code"] == 13113

    # the command status suggests works as printed
    show = stage["dead_letters"][0]["commands"][0].split()
    code, out, _ = run_vprov(deployment[0], capsys, *show[1:])
    assert code == 0 and f"dead letter {letter_id}" in out


def test_a_device_held_for_its_registration_is_the_stage(
    deployment: tuple[Path, Config, dict[str, WorkerProcess]], flow: Flow, fleet_: Fleet,
    capsys: pytest.CaptureFixture[str]
) -> None:
    vehicle = fleet_.vehicle("NA")
    tcu, ivi = vehicle.devices
    flow.register(dataclasses.replace(vehicle, devices=(tcu,)))  # the IVI is not registered
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    assert flow.provision(vehicle, tcu).value["status"] == "SUCCESS"
    flow.send_provision(vehicle, ivi, headers={"authenticated-device-id": ivi.device_id})
    wait_until(lambda: (flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")[1] or {})
               .get("held_requests") == 1, timeout=30, what="the IVI's request held")

    code, out, err = status(deployment, capsys, vehicle.vin, "--json")
    assert code == 0, err
    stage = json.loads(out)["stage"]
    assert stage["name"] == "JOIN"
    # the regional worker's view names who waits and until when
    assert stage["held_unlisted"] == 0
    assert [h["device_id"] for h in stage["held"]] == [ivi.device_id]
    assert stage["next"][0].startswith(f"register {ivi.device_id} under system "
                                       f"{vehicle.system_id}")
