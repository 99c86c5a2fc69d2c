"""Restore benchmark: a global worker with an empty disk and a large state in its changelogs.

A synthetic state of ``vehicles`` vehicles, shaped like the entries the flows write (two
registrations, a system and a REGIONAL vehicle with its remembered answer: four changelog
records a vehicle), is written straight into a deployment's changelog topics with librdkafka.
Then a global worker starts on an empty disk, once with the bulk restore
(streams/repairs/bulk_restore.py) and once, on a smaller state, with Faust's own recovery only; each
reports the seconds from process start to ready and the changelog records per second.

    .venv/bin/python -m bench.restore --vehicles 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.deploy import REPO, Broker, add_stack_arguments, worker_env, write_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import WorkerProcess
from vprov.sim.synthetic_state import RECORDS_PER_VEHICLE, write_state


@dataclass
class RestoreRun:
    """One empty-disk start of a global worker."""

    mode: str  # "bulk" or "faust"
    vehicles: int
    records: int
    ready_seconds: float  # process start to ready
    records_per_second: float  # changelog records over ready_seconds
    bulk_seconds: float | None  # the bulk load alone, as the worker reports it
    cpu_seconds: float
    peak_rss: int = 0  # the worker's, from its start until ready (bytes)


@dataclass
class RestoreReport:
    write_records_per_second: float
    runs: list[RestoreRun]


def start_empty(config_path: Path, workdir: Path, port: int, mode: str, vehicles: int,
                timeout: float) -> RestoreRun:
    data = workdir / f"data-{mode}"
    shutil.rmtree(data, ignore_errors=True)
    env = worker_env(VPROV_BULK_RESTORE="true" if mode == "bulk" else "false")
    worker = WorkerProcess("global", port, config_path, data, workdir / f"worker-{mode}.log",
                           env=env, cwd=REPO)
    began = time.monotonic()
    worker.start()
    samples = [0]
    try:
        worker.wait_ready(timeout, tick=lambda: samples.append(worker.rss()))
        ready = time.monotonic() - began
        health = worker.health() or {}
        cpu = sum(worker.cpu_split())
    finally:
        worker.stop()
    bulk = health.get("bulk_restore") or {}
    records = vehicles * RECORDS_PER_VEHICLE
    return RestoreRun(mode, vehicles, records, round(ready, 2), round(records / ready),
                      round(bulk["seconds"], 2) if bulk.get("seconds") else None,
                      round(cpu, 1), max(samples))


def run_restore(bootstrap: str, redis_url: str, workdir: Path, vehicles: int,
                faust_vehicles: int, port: int) -> RestoreReport:
    """The bulk restore on ``vehicles`` vehicles, Faust's recovery on ``faust_vehicles`` (0:
    not run); each deployment of its own, removed afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    write_rate = 0.0
    for mode, count in (("bulk", vehicles), ("faust", faust_vehicles)):
        if count <= 0:
            continue
        prefix = f"rb{uuid.uuid4().hex[:6]}"
        path = workdir / f"{prefix}.toml"
        config = write_config(path, prefix, bootstrap, redis_url, ("NA",))
        ensure_topics(config, Catalogue(config).all())
        broker = Broker(bootstrap)
        try:
            rate = write_state(config, count, prefix)
            write_rate = write_rate or rate
            print(f"restore bench: {count} vehicles ({count * RECORDS_PER_VEHICLE} records) "
                  f"written at {rate:.0f} records/s; starting an empty-disk worker ({mode})",
                  file=sys.stderr)
            run = start_empty(path, workdir, port, mode, count, timeout=1800)
            print(f"restore bench: {mode}: ready after {run.ready_seconds} s, "
                  f"{run.records_per_second} records/s", file=sys.stderr)
            runs.append(run)
        finally:
            broker.delete_run(prefix, [Catalogue(config).global_app_id])
    return RestoreReport(round(write_rate), runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stack_arguments(p)
    p.add_argument("--vehicles", type=int, default=1_000_000)
    p.add_argument("--faust-vehicles", type=int, default=25_000,
                   help="state for the run with Faust's own recovery (0: none)")
    p.add_argument("--port", type=int, default=19070)
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "restore"))
    args = p.parse_args(argv)
    report = run_restore(args.bootstrap, args.redis_url, Path(args.out), args.vehicles,
                         args.faust_vehicles, args.port)
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
