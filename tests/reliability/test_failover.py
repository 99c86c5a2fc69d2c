"""Two workers per role, and one of them lost or restarted while a fleet is in flight: the other
takes its partitions over from its standby tables (docs/operations.md, "Failover"). Each
scenario checks the suite's invariants and reports the longest wait for an answer per flow."""

from __future__ import annotations

import time

from tests.integration.conftest import Flow
from tests.integration.harness import WorkerProcess
from tests.reliability.conftest import Deployment, Sizes, input_partitions, wait_settled
from tests.reliability.driver import FleetDriver, check_invariants
from tests.reliability.test_reliability import FINISH_TIMEOUT, assert_clean, when
from vprov.ops.workers import start_all
from vprov.sim.synthetic_state import RECORDS_PER_VEHICLE, write_state

# the state a replaced worker restores (synthetic entries in the changelogs, on top of the
# fleet's own)
EMPTY_DISK_STATE_VEHICLES = 20_000


def pairs(dep: Deployment) -> tuple[list[WorkerProcess], list[WorkerProcess], dict[str, int]]:
    """Two global and two NA workers, ready and settled on their partitions, and how many input
    partitions each role has (read from the first worker, alone in its group at first)."""
    glob = [dep.worker("global")]
    na = [dep.worker("regional", "NA")]
    start_all(*glob, *na)
    totals = {"global": input_partitions(glob[0]), "NA": input_partitions(na[0])}
    glob.append(dep.worker("global"))
    na.append(dep.worker("regional", "NA"))
    start_all(glob[1], na[1])
    wait_settled(glob, totals["global"])
    wait_settled(na, totals["NA"])
    return glob, na, totals


def driving(dep: Deployment, sizes: Sizes, glob: WorkerProcess, na: WorkerProcess
            ) -> tuple[Flow, FleetDriver]:
    """A fleet of ``sizes.vehicles`` registered, and driven at ``sizes.rate`` from now on."""
    vehicles = dep.fleet(sizes.vehicles)
    flow = dep.flow(glob, na)
    flow.register(*vehicles)
    return flow, FleetDriver(flow, vehicles, sizes.rate).start()


def longest(driver: FleetDriver) -> dict[str, float]:
    return {f"longest_{kind}_answer_seconds": round(seconds, 2)
            for kind, seconds in sorted(driver.longest.items())}


def test_one_of_two_workers_per_role_sigkilled(deployment: Deployment, sizes: Sizes) -> None:
    """A global and an NA worker SIGKILLed at a third of the run and not restarted: their
    partitions move to the survivors, whose standbys hold the tables already."""
    dep = deployment
    glob, na, totals = pairs(dep)
    flow, driver = driving(dep, sizes, glob[0], na[0])
    when(driver, 0.33)
    killed_at = time.monotonic()
    glob[1].kill()
    na[1].kill()
    wait_settled(glob[:1], totals["global"])
    wait_settled(na[:1], totals["NA"])
    moved = time.monotonic() - killed_at
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({"workers_per_role": 2, "killed": 2,
                        "partitions_moved_seconds": round(moved, 2), **longest(driver),
                        "run_seconds": round(driver.seconds, 1)})
    assert_clean(dep, check_invariants(flow, driver), glob[0], na[0])


def test_rolling_restart_of_every_worker(deployment: Deployment, sizes: Sizes) -> None:
    """Each of the four workers stopped (SIGTERM) and started again, one at a time, each once
    the group has settled again, while the fleet goes on."""
    dep = deployment
    glob, na, totals = pairs(dep)
    flow, driver = driving(dep, sizes, glob[0], na[0])
    when(driver, 0.1)
    back: list[float] = []
    for worker, role, total in ([(w, glob, totals["global"]) for w in glob]
                                + [(w, na, totals["NA"]) for w in na]):
        worker.stop()
        began = time.monotonic()
        worker.start().wait_ready(180)
        back.append(time.monotonic() - began)
        wait_settled(role, total)
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({"workers_per_role": 2, "restarts": len(back),
                        "ready_after_start_seconds_max": round(max(back), 2),
                        **longest(driver), "run_seconds": round(driver.seconds, 1)})
    assert_clean(dep, check_invariants(flow, driver), glob[0], na[0])


def test_a_worker_replaced_by_one_with_an_empty_disk(deployment: Deployment,
                                                     sizes: Sizes) -> None:
    """The global worker SIGKILLed mid-run and replaced by one on another machine, whose disk
    is empty: it restores 20,000 vehicles of state and more (bulk, streams/repairs/bulk_restore.py)
    before it answers again. Figures: its time to ready and the longest answers."""
    dep = deployment
    write_state(dep.config, EMPTY_DISK_STATE_VEHICLES, f"e{dep.config.app_prefix}")
    glob = dep.worker("global")
    na = dep.worker("regional", "NA")
    start_all(glob, na)
    _, driver = driving(dep, sizes, glob, na)
    when(driver, 0.33)
    glob.kill()
    replacement = dep.worker("global")  # another web port: another, empty, state directory
    began = time.monotonic()
    replacement.start().wait_ready(300)
    ready = time.monotonic() - began
    restored = (replacement.health() or {}).get("bulk_restore") or {}
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({
        "state_vehicles": EMPTY_DISK_STATE_VEHICLES,
        "state_records": EMPTY_DISK_STATE_VEHICLES * RECORDS_PER_VEHICLE,
        "ready_seconds": round(ready, 2), "bulk_restored_records": restored.get("records"),
        "bulk_restore_seconds": round(restored.get("seconds") or 0.0, 2),
        **longest(driver), "run_seconds": round(driver.seconds, 1)})
    assert restored.get("records", 0) >= EMPTY_DISK_STATE_VEHICLES * RECORDS_PER_VEHICLE
    flow = dep.flow(replacement, na)
    assert_clean(dep, check_invariants(flow, driver), replacement, na)
