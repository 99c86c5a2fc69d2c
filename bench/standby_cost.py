"""What standby tables cost: two workers per role, the same paced fleet, with one standby per
table partition and with none.

Each run has a deployment of its own (two global and two NA workers), registers its vehicles,
then drives them at ``rate`` vehicles/s through both flows. It reports the workers' CPU per
vehicle (all four processes, the fleet only: registration and start-up excluded) and the
changelog records Faust's recovery applied per vehicle (``changelog_records_applied`` in
``/health``: what the standbys read, besides the start's restore).

    .venv/bin/python -m bench.standby_cost --vehicles 2000 --rate 40
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.deploy import REPO, Broker, add_stack_arguments, worker_env, write_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import WorkerProcess, start_all
from vprov.sim import fleet
from vprov.sim.fleet_driver import FleetDriver


@dataclass
class StandbyRun:
    standbys: int
    vehicles: int
    completed: int
    cpu_ms_per_vehicle: float  # the four workers, while the fleet ran
    changelog_records_per_vehicle: float  # applied by Faust's recovery, while the fleet ran


def applied(workers: list[WorkerProcess]) -> int:
    return sum((w.health() or {}).get("changelog_records_applied", 0) for w in workers)


def cpu(workers: list[WorkerProcess]) -> float:
    return sum(sum(w.cpu_split()) for w in workers)


def indexed(global_workers: list[WorkerProcess], vehicles: list[fleet.SimVehicle],
            until: float) -> None:
    """Until every vehicle's system is indexed on the global worker that holds its partition
    (each serves its own partitions' views)."""
    for vehicle in vehicles:
        while not any(
                isinstance(body := w.get(f"/systems/{vehicle.system_id}/")[1], dict)
                and len(body.get("devices") or ()) == len(vehicle.devices)
                for w in global_workers):
            if time.monotonic() > until:
                raise RuntimeError(f"system {vehicle.system_id} not indexed in time")
            time.sleep(0.05)


def one_run(bootstrap: str, redis_url: str, workdir: Path, standbys: int, vehicles: int,
            rate: float, port: int) -> StandbyRun:
    prefix = f"sc{uuid.uuid4().hex[:6]}"
    path = workdir / f"{prefix}.toml"
    config = write_config(path, prefix, bootstrap, redis_url, ("NA",))
    ensure_topics(config, Catalogue(config).all())
    env = worker_env(VPROV_STANDBY_REPLICAS=str(standbys))
    workers = [WorkerProcess(role, port + i, path, workdir / f"data-{prefix}",
                             workdir / f"{prefix}-{i}.log", region, env, cwd=REPO)
               for i, (role, region) in enumerate([("global", None), ("regional", "NA")] * 2)]
    tag = fleet.run_tag(prefix)
    driver = FleetDriver(config, tag, progress_stream=io.StringIO())
    try:
        start_all(*workers, timeout=300)
        made = [fleet.make_vehicle(tag, i, "NA") for i in range(vehicles)]
        driver.register(made)
        indexed(workers[::2], made, time.monotonic() + 300)
        time.sleep(3)  # the standbys caught up with the registrations
        cpu0, applied0 = cpu(workers), applied(workers)
        trips = driver.plan(made)
        driver.drive(trips, rate=rate, grace=120)
        time.sleep(3)  # what the standbys read is applied within a second
        spent, read = cpu(workers) - cpu0, applied(workers) - applied0
        completed = sum(1 for t in trips if t.ok)
    finally:
        driver.close()
        for worker in workers:
            worker.stop()
        Broker(bootstrap).delete_run(prefix, [Catalogue(config).global_app_id,
                                              Catalogue(config).regional_app_id("NA")])
    return StandbyRun(standbys, vehicles, completed, round(1000 * spent / max(completed, 1), 2),
                      round(read / max(completed, 1), 2))


def run_standby_cost(bootstrap: str, redis_url: str, workdir: Path, vehicles: int,
                     rate: float, port: int) -> list[StandbyRun]:
    workdir.mkdir(parents=True, exist_ok=True)
    runs = []
    for standbys in (1, 0):
        print(f"standby cost: {vehicles} vehicles at {rate:g}/s, two workers per role, "
              f"{standbys} standby", file=sys.stderr)
        runs.append(one_run(bootstrap, redis_url, workdir, standbys, vehicles, rate, port))
        print(f"standby cost: {asdict(runs[-1])}", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stack_arguments(p)
    p.add_argument("--vehicles", type=int, default=1200)
    p.add_argument("--rate", type=float, default=40.0)
    p.add_argument("--port", type=int, default=19080)
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "standby"))
    args = p.parse_args(argv)
    runs = run_standby_cost(args.bootstrap, args.redis_url, Path(args.out), args.vehicles,
                            args.rate, args.port)
    print(json.dumps([asdict(r) for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
