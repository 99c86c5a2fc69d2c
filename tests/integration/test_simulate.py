"""``vprov simulate`` against real workers: a fleet provisions end to end, invalid messages get
their error answers, repeated requests get the same answer again."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import PORTS, SILENT_REGION
from tests.integration.harness import BOOTSTRAP, REDIS_URL, REPO, WorkerProcess
from vprov.config import Config
from vprov.sim.simulate import INVALID_KINDS, SimOptions, Simulator

GLOBAL_URL = f"http://127.0.0.1:{PORTS['global']}"


def run_cli(config_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "REDIS_URL": REDIS_URL}
    return subprocess.run(
        [sys.executable, "-m", "vprov.cli", "--config", str(config_path), "simulate",
         "--global-url", GLOBAL_URL, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_fleet_with_invalid_and_repeated_messages_provisions_completely(
    workers: dict[str, WorkerProcess], config: Config
) -> None:
    options = SimOptions(vehicles=20, regions=("NA", "EU"), invalid=0.2, duplicates=0.2,
                         shuffle=True, timeout=90, global_url=GLOBAL_URL, seed=7)
    report = Simulator(config, options, progress_stream=io.StringIO()).run()
    text = report.format_text()

    assert len(report.done) == 20, text
    assert report.failed == [], text
    # 20 vehicles x 0.2: one invalid message of each kind, each answered with its own code
    assert report.invalid_sent == dict.fromkeys(INVALID_KINDS, 1), text
    assert report.invalid_ok == report.invalid_sent, report.invalid_problems
    # 20 x (query + 2 devices) x 0.2 requests sent twice, answered identically
    assert report.duplicates_sent == 12
    assert report.duplicates_identical == 12, report.duplicate_problems
    assert report.ok, text
    assert {v.region for v in report.vehicles} == {"NA", "EU"}
    assert len(report.latencies["query"]) == 20
    assert len(report.latencies["device"]) == 40
    assert len(report.latencies["vehicle"]) == 20
    status, entry = workers["EU"].get(f"/vehicles/{report.vehicles[1].vehicle.vin}/")
    assert status == 200
    assert {d["state"] for d in entry["devices"].values()} == {"PROVISIONED"}


def test_cli_prints_the_summary_and_exits_0(
    workers: dict[str, WorkerProcess], config_path: Path, config: Config, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    done = run_cli(config_path, "--vehicles", "3", "--regions", "NA,EU", "--devices",
                   "TCU,IVI,REFRIGERATOR", "--duplicates", "0.3", "--json", str(report_path),
                   "--seed", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for label in ("vehicles done                    3", "vehicles failed                  0",
                  # 3 vehicles x (query + 3 devices) x 0.3 = 3.6 -> 4 requests sent twice
                  "duplicates answered identically  4/4", "throughput", "query -> answer",
                  "device -> answer", "vehicle first -> last", "where to look next",
                  "vprov status ", "vprov replay --vin ",
                  f"lifecycle topic: {config.topics.lifecycle}"):
        assert label in out, out
    assert "provisioning" in done.stderr  # the progress bar
    report = json.loads(report_path.read_text())
    assert (report["ok"], report["vehicles_done"], report["vehicles_failed"]) == (True, 3, 0)
    assert report["latency_ms"]["device"]["count"] == 9
    # the queries sent in the first seconds, reported apart from the rest: all 3 of them here
    phases = report["query_latency_ms_by_phase"]
    assert (phases["first"]["count"], phases["after"]["count"]) == (3, 0)
    assert phases["first"]["max"] == report["latency_ms"]["query"]["max"]
    assert "  first 10 s" in out
    assert report["sample_vin"] in out
    # the machine's cores while the vehicles ran, so a slow answer on full cores says so
    cpu = report["machine_cpu"]
    assert 0 < cpu["busy_cores"] <= cpu["cores"] == os.cpu_count()
    line = re.search(r"machine CPU meanwhile +([\d.]+) of (\d+) cores busy", out)
    assert line is not None, out
    assert abs(float(line[1]) - cpu["busy_cores"]) <= 0.006 and int(line[2]) == cpu["cores"]


def test_cli_exits_nonzero_and_names_the_code_when_vehicles_fail(
    workers: dict[str, WorkerProcess], config_path: Path
) -> None:
    # no worker serves the silent region: the global side gives up on the rehome (13105)
    done = run_cli(config_path, "--vehicles", "2", "--regions", SILENT_REGION, "--timeout", "45")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "vehicles failed                  2" in done.stdout
    assert "13105" in done.stdout
    assert "result: FAILED" in done.stdout
