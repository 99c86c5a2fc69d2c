"""``vprov status`` and ``vprov replay`` against real workers and the real lifecycle topic."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PORT_BASE, PORTS, Flow, run_vprov
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    REPO,
    Bus,
    Fleet,
    WorkerProcess,
    wait_until,
)
from vprov.config import Config
from vprov.sim import fleet
from vprov.sim.simulate import Report, SimOptions, Simulator

GLOBAL_URL = f"http://127.0.0.1:{PORTS['global']}"
REGION_ARGS = ["--region-url", f"NA=http://127.0.0.1:{PORTS['NA']}",
               "--region-url", f"EU=http://127.0.0.1:{PORTS['EU']}"]
SECOND_GLOBAL_PORT = PORT_BASE + 150  # a second global worker, started by one test only
STATES = {"TCU": "PROVISIONED", "IVI": "PROVISIONED", "REFRIGERATOR": "ACTIVE"}


pytestmark = pytest.mark.usefixtures("broker_env")


@pytest.fixture(scope="module")
def provisioned(workers: dict[str, WorkerProcess], config: Config) -> Report:
    """A small clean fleet, every device provisioned, in NA and EU."""
    options = SimOptions(vehicles=4, devices=("TCU", "IVI", "REFRIGERATOR"), regions=("NA", "EU"),
                         timeout=90, global_url=GLOBAL_URL, seed=11)
    report = Simulator(config, options, progress_stream=io.StringIO()).run()
    assert report.ok, report.format_text()
    return report


def test_status_shows_the_vehicle_its_region_devices_and_events(
    provisioned: Report, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = provisioned.vehicles[0]
    vin = run.vehicle.vin
    code, out, _ = run_vprov(config_path, capsys, "status", vin, "--global-url", GLOBAL_URL,
                         *REGION_ARGS)
    assert code == 0
    assert f"vehicle {vin}: REGIONAL" in out
    assert f"home region     {run.region}  (gateway mqtts://" in out
    for device in run.vehicle.devices:
        line = next(line for line in out.splitlines() if device.device_id in line)
        assert line.split()[-1] == STATES[device.ecu_type], line
        assert ("primary" in line) == device.primary
    assert "lifecycle events (last 4 of 4)" in out
    assert "REGISTERED -> REGIONAL" in out
    assert out.count("REGIONAL -> PROVISIONED") == 2
    assert "REGIONAL -> ACTIVE" in out


def test_status_json_combines_both_records_and_the_events(
    provisioned: Report, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = provisioned.vehicles[1]
    code, out, _ = run_vprov(config_path, capsys, "status", run.vehicle.vin, "--json",
                             "--global-url", GLOBAL_URL, *REGION_ARGS)
    assert code == 0
    doc = json.loads(out)
    assert doc["global"]["state"] == "REGIONAL"
    assert doc["region"] == run.region == doc["regional"]["region"]
    assert {d: e["state"] for d, e in doc["regional"]["devices"].items()} == {
        d.device_id: STATES[d.ecu_type] for d in run.vehicle.devices}
    assert [e["sequence"] for e in doc["events"]] == [1, 2, 3, 4]
    assert doc["events"][0]["device_id"] is None
    assert "memo" not in doc["global"] and "memo" not in doc["regional"]


def test_status_of_an_unknown_vin_is_one_clear_line_and_exit_1(
    workers: dict[str, WorkerProcess], config_path: Path
) -> None:
    vin = fleet.make_vehicle(fleet.run_tag(f"unknown-{time.time_ns()}"), 1, "NA").vin
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "REDIS_URL": REDIS_URL}
    done = subprocess.run([sys.executable, "-m", "vprov.cli", "--config", str(config_path),
                           "status", vin, "--global-url", GLOBAL_URL],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"unknown VIN {vin}: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_status_names_the_url_and_the_fix_when_no_worker_answers(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:9"
    code, out, err = run_vprov(config_path, capsys, "status", "1HGCM82633A004352",
                               "--global-url", url)
    assert code == 3
    assert url in err and "make demo" in err
    assert out == ""


def test_replay_verify_passes_on_a_clean_run(
    provisioned: Report, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vins = [v.vehicle.vin for v in provisioned.vehicles]
    args = [arg for vin in vins for arg in ("--vin", vin)]
    code, out, err = run_vprov(config_path, capsys, "replay", *args, "--verify", "--global-url",
                           GLOBAL_URL, *REGION_ARGS)
    assert code == 0, out + err
    assert f"{len(vins)} vehicles, {4 * len(vins)} events" in out
    assert "verified: no problems" in out
    assert "PROBLEM" not in out
    for vin in vins:
        assert f"{vin}  (4 events)" in out


def lifecycle_event(vin: str, system_id: str, seq: int, state: str, previous: str,
                    device_id: str | None, partition: str) -> dict[str, Any]:
    return {"event_id": f"forged-{vin}-{seq}", "vin": vin, "system_id": system_id,
            "device_id": device_id, "partition": partition, "state": state,
            "previous_state": previous, "error_code": None, "cause_message_id": "forged",
            "sequence": seq, "occurred_at": int(time.time() * 1000)}


def test_replay_verify_reports_a_gap_and_a_state_the_table_does_not_have(
    flow: Flow, bus: Bus, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a real vehicle with only its primary provisioned: events #1 REGIONAL, #2 TCU PROVISIONED
    vehicle = fleet_.vehicle("NA", ("TCU", "IVI"))
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    assert flow.provision(vehicle, vehicle.primary).value["status"] == "SUCCESS"
    bus.wait(bus.catalogue.lifecycle, lambda r: r.key == vehicle.vin, count=2)
    secondary = vehicle.devices[1].device_id
    # forged: #4 (so #3 is missing) says the IVI failed, the regional table still has it REGIONAL
    topic = bus.catalogue.lifecycle
    forged = lifecycle_event(vehicle.vin, vehicle.system_id, 4, "PROV_FAIL", "REGIONAL",
                             secondary, "NA")
    bus.send(topic, vehicle.vin, bus.serde.encode("LifecycleEvent", forged, topic=topic))
    # and a VIN no worker knows, whose whole history is forged, with a hole in it
    ghost = fleet_.vehicle("NA")
    for seq, state, previous, device in ((1, "REGIONAL", "REGISTERED", None),
                                         (3, "PROVISIONED", "REGIONAL", ghost.primary.device_id)):
        record = lifecycle_event(ghost.vin, ghost.system_id, seq, state, previous, device, "NA")
        bus.send(topic, ghost.vin, bus.serde.encode("LifecycleEvent", record, topic=topic))
    bus.flush()

    code, out, err = run_vprov(config_path, capsys, "replay", "--vin", vehicle.vin, "--vin",
                           ghost.vin, "--verify", "--global-url", GLOBAL_URL, *REGION_ARGS)
    assert code == 1, out + err
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM")]
    assert f"PROBLEM {vehicle.vin}  gap: sequence 3 missing before #4" in problems
    assert (f"PROBLEM {vehicle.vin}  mismatch: device {secondary}: events end in PROV_FAIL, "
            "region NA table says REGIONAL") in problems
    assert f"PROBLEM {ghost.vin}  gap: sequence 2 missing before #3" in problems
    assert f"PROBLEM {ghost.vin}  missing: the global table has no record of the vehicle" \
        in problems
    assert f"PROBLEM {ghost.vin}  missing: region NA has no record of the vehicle" in problems
    assert len([p for p in problems if vehicle.vin in p]) == 2, problems
    assert "5 problems" in out

    code, out, _ = run_vprov(config_path, capsys, "replay", "--vin", vehicle.vin, "--json",
                         "--verify", "--global-url", GLOBAL_URL, *REGION_ARGS)
    assert code == 1
    doc = json.loads(out)
    assert [e["sequence"] for e in doc["histories"][vehicle.vin]] == [1, 2, 4]
    assert {p["kind"] for p in doc["problems"]} == {"gap", "mismatch"}


def test_status_is_answered_by_a_global_worker_that_does_not_own_the_key(
    workers: dict[str, WorkerProcess], provisioned: Report, config_path: Path,
    worker_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last in this file: a second global worker takes half the partitions while it runs."""
    first = workers["global"]
    second = WorkerProcess("global", SECOND_GLOBAL_PORT, worker_dir, config_path)
    try:
        second.start().wait_ready()
        first.wait_ready()

        def owners() -> dict[str, int] | None:
            found = {}
            for run in provisioned.vehicles:
                status, url = first.get(f"/router/vehicles/{run.vehicle.vin}/")
                if status != 200:
                    return None
                found[run.vehicle.vin] = int(str(url).rsplit(":", 1)[1].rstrip("/"))
            # both workers own partitions once the rebalance has settled
            return found if second.health() and second.health().get("ready") else None

        def settled() -> dict[str, int] | None:
            before = owners()
            time.sleep(1.0)
            return before if before and before == owners() else None

        owned = wait_until(settled, timeout=60, what="key owners settled")
        urls = {PORTS["global"]: GLOBAL_URL, SECOND_GLOBAL_PORT: second.url}
        asked = 0
        for run in provisioned.vehicles:
            owner = owned[run.vehicle.vin]
            other = next(port for port in urls if port != owner)
            code, out, err = run_vprov(config_path, capsys, "status", run.vehicle.vin, "--json",
                                   "--global-url", urls[other], *REGION_ARGS)
            assert code == 0, err
            doc = json.loads(out)
            assert doc["global_owner"].rstrip("/").endswith(f":{owner}")
            assert doc["global"]["vin"] == run.vehicle.vin
            assert doc["global"]["state"] == "REGIONAL"
            assert {e["state"] for e in doc["regional"]["devices"].values()} <= {
                "PROVISIONED", "ACTIVE"}
            asked += 1
        assert asked == len(provisioned.vehicles)
    finally:
        second.stop()
        first.wait_ready()
