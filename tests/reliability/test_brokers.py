"""Three brokers, replication factor 3, min.insync.replicas 2: a broker lost, restarted or
upgraded while a fleet is in flight loses nothing and stalls little (docs/operations.md,
"Three brokers"). Each scenario checks the suite's invariants, that nothing was dead-lettered and
no worker restarted, and reports the longest wait for a first answer per kind of request.

The scenarios need the suite's stack to have three brokers (`make reliability BROKERS=3`, `make
test BROKERS=3`). The quick variant, one broker SIGKILLed, runs on every stack: on a
single-broker one it starts a three-broker cluster of its own (tests/reliability/brokers.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from tests.integration.harness import (
    REPO,
    WorkerProcess,
    broker_count,
    isolated_config,
    wait_until,
)
from tests.reliability.brokers import Brokers, private_brokers, start_private, suite_brokers
from tests.reliability.conftest import Deployment, Sizes, open_deployment
from tests.reliability.driver import FleetDriver, TimedDriver, check_invariants
from tests.reliability.test_reliability import FINISH_TIMEOUT, assert_clean, up
from vprov import config as config_module
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import admin_client

# Targets of the longest wait for a first answer (reported, see assert_no_harm_beyond_delay).
SIGKILL_LONGEST_SECONDS = 10.0
ROLLING_LONGEST_SECONDS = 5.0
QUICK_VEHICLES = 400  # 10 s of the fleet at 40 vehicles/s: the kill and its stall land inside
# The long scenarios offer half the suite's rate for longer: restarting a broker takes from 5 s to
# half a minute on a busy machine, and each harm must land while the fleet is in flight.
LONG_RATE = 20.0


@pytest.fixture(scope="module")
def suite_cluster() -> Brokers:
    """The suite's stack, when it has three brokers; the scenarios are skipped otherwise."""
    count = broker_count()
    if count != 3:
        pytest.skip(f"the suite's stack has {count} broker{'s' if count > 1 else ''}: the "
                    "three-broker scenarios run with `make reliability BROKERS=3` or `make test "
                    "BROKERS=3` (test_one_broker_sigkilled_quick runs on any stack)")
    return suite_brokers()


@pytest.fixture(scope="module")
def any_cluster() -> Iterator[Brokers]:
    """The suite's stack when it has three brokers, else a private three-broker cluster."""
    if broker_count() == 3:
        yield suite_brokers()
        return
    cluster = private_brokers()
    seconds = start_private(cluster)
    print(f"\nprivate three-broker cluster started in {seconds:.1f} s")
    try:
        yield cluster
    finally:
        cluster.run("down", timeout=120)


@pytest.fixture
def on_cluster(tmp_path: Path, sizes: Sizes, request: pytest.FixtureRequest
               ) -> Iterator[Callable[[Brokers], Deployment]]:
    """Opens a deployment of the test's own on a cluster, its three nodes running and in sync
    first (a scenario that failed half-way may have left one down)."""
    with contextlib.ExitStack() as opened:
        def open_on(cluster: Brokers) -> Deployment:
            cluster.restore()
            env = cluster.client_env() if cluster.private else None
            return opened.enter_context(open_deployment(tmp_path, sizes, request.node.name, env))

        yield open_on


def request_topics(cat: Catalogue) -> list[str]:
    """The topics whose leaders matter most to a fleet in flight: the requests (external,
    internal, rerouted) the global and the NA worker read, and their tables' changelogs."""
    ours = (cat.global_app_id, cat.regional_app_id("NA"))
    return [cat.query, cat.device("NA"), cat.rehome("NA"), cat.rehome_result,
            *(s.name for s in cat.internal() + cat.changelogs() if s.name.startswith(ours))]


def fleet_size(sizes: Sizes, seconds: float, rate: float) -> int:
    """At least ``seconds`` of the fleet at ``rate``: the harm lands inside the run."""
    return max(sizes.vehicles, int(rate * seconds))


def at(driver: FleetDriver, seconds: float) -> None:
    """Until ``seconds`` after the fleet started."""
    while time.monotonic() - driver.started_at < seconds:
        time.sleep(0.05)


def in_flight(driver: FleetDriver, harm: str) -> None:
    """Fails when the fleet is through before ``harm``: it would not land in a run (a slow
    machine restarts brokers slowly; RELIABILITY_VEHICLES makes the fleet longer)."""
    assert driver.finished_at is None, (
        f"the fleet was through {driver.seconds:.0f} s in, before {harm}; raise "
        "RELIABILITY_VEHICLES")


def longest(driver: FleetDriver) -> dict[str, float]:
    return {f"longest_{kind}_answer_seconds": round(seconds, 2)
            for kind, seconds in sorted(driver.longest.items())}


def assert_no_harm_beyond_delay(dep: Deployment, driver: FleetDriver,
                                workers: list[WorkerProcess], target: float) -> None:
    """The invariants, no dead letter, every worker still the process it was. The longest
    first answer is reported against ``target`` seconds, not asserted: on a shared machine it
    follows the machine's load as much as the harm (test_no_harm_baseline shows by how much)."""
    flow = driver.flow
    assert_clean(dep, check_invariants(flow, driver), workers[0], workers[1])
    dead = flow.bus.records(flow.cat.deadletter)
    dep.figures["dead_letters"] = len(dead)
    assert dead == [], [d.value for d in dead[:5]]
    for worker in workers:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    dep.figures["worker_restarts"] = 0
    dep.figures["retries"] = sum((w.health() or {}).get("retries", 0) for w in workers)
    assert driver.delivery_errors == {}, driver.delivery_errors
    # whether it was met is the report's to say, from these figures (tests/reliability/report.py);
    # the machine's 1-minute load at the end: on a shared machine the answers wait for it too
    dep.figures.update({"target_seconds": target, "load_average": round(os.getloadavg()[0], 1)})


# --- the quick variant: any stack --------------------------------------------------------------


def test_one_broker_sigkilled_quick(any_cluster: Brokers, on_cluster: Callable[[Brokers],
                                    Deployment], sizes: Sizes) -> None:
    """The broker that leads the most request and changelog partitions SIGKILLed 3 s into a
    fleet of 10 s, started again once the fleet is through."""
    cluster = any_cluster
    dep = on_cluster(cluster)
    glob, na, flow = up(dep)
    topics = request_topics(flow.cat)
    vehicles = dep.fleet(min(fleet_size(sizes, 10, sizes.rate), QUICK_VEHICLES))
    flow.register(*vehicles)
    driver = TimedDriver(flow, vehicles, sizes.rate).start()
    at(driver, 3)
    victim = cluster.most_leading(topics)
    led = cluster.leaders(topics)[victim]
    in_flight(driver, f"the SIGKILL of kafka-{victim}")
    driver.mark(f"kill kafka-{victim}")
    cluster.kill(victim)
    moved = cluster.wait_led_elsewhere(victim, topics)
    driver.mark("leaders moved")
    driver.wait(FINISH_TIMEOUT)
    back = cluster.start()
    in_sync = cluster.wait_in_sync()
    dep.figures.update({"cluster": "private" if cluster.private else "suite",
                        "killed": f"kafka-{victim}", "partitions_it_led": led,
                        "leaders_moved_seconds": round(moved, 2),
                        "restart_seconds": round(back, 1), "in_sync_seconds": round(in_sync, 1),
                        **longest(driver), "run_seconds": round(driver.seconds, 1),
                        "timeline": driver.timeline()})
    assert_no_harm_beyond_delay(dep, driver, [glob, na], SIGKILL_LONGEST_SECONDS)


def test_a_topic_with_too_few_replicas_is_refused_by_name(any_cluster: Brokers,
                                                          tmp_path: Path) -> None:
    """The start-up check on three real brokers: a topic of the catalogue with one replica and
    min.insync.replicas 1 is named with both fixes, and nothing is created."""
    env = any_cluster.client_env()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    path = isolated_config(tmp_path / "vprov.toml", f"b{uuid.uuid4().hex[:6]}",
                           kafka={"replication_factor": 3, "min_insync_replicas": 2})
    cat = Catalogue(config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap}))
    admin = admin_client(bootstrap)
    admin.create_topics([NewTopic(cat.query, num_partitions=8, replication_factor=1)],
                        operation_timeout=30)[cat.query].result()
    # the check reads the topic's partitions from the metadata: wait until it shows them
    wait_until(lambda: len(admin.list_topics(cat.query, timeout=10).topics[cat.query].partitions)
               == 8, what=f"{cat.query} in the metadata")
    try:
        done = subprocess.run([sys.executable, "-m", "vprov.cli", "--config", str(path),
                               "topics", "create"], env={**os.environ, **env},
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        existing = set(admin.list_topics(timeout=10).topics)
    finally:
        admin.delete_topics([cat.query], operation_timeout=30)[cat.query].result()
    assert {s.name for s in cat.all()} & existing == {cat.query}  # it created nothing
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert (f"{cat.query}: found 1 replica and min.insync.replicas=1, expected at least 3 "
            "replicas and at least min.insync.replicas=2") in done.stderr
    assert "kafka-reassign-partitions.sh" in done.stderr
    assert f"--entity-name {cat.query} --add-config min.insync.replicas=2" in done.stderr


# --- the scenarios: a three-broker stack -------------------------------------------------------


def test_no_harm_baseline(suite_cluster: Brokers, on_cluster: Callable[[Brokers], Deployment],
                          sizes: Sizes) -> None:
    """The quick variant's fleet with nothing harmed: the longest first answers the machine gives
    at the moment, to read the others' against."""
    dep = on_cluster(suite_cluster)
    glob, na, flow = up(dep)
    vehicles = dep.fleet(min(fleet_size(sizes, 10, sizes.rate), QUICK_VEHICLES))
    flow.register(*vehicles)
    driver = TimedDriver(flow, vehicles, sizes.rate).start()
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({**longest(driver), "run_seconds": round(driver.seconds, 1),
                        "timeline": driver.timeline()})
    assert_no_harm_beyond_delay(dep, driver, [glob, na], SIGKILL_LONGEST_SECONDS)


def test_leader_of_most_partitions_sigkilled_brought_back_then_another(
    suite_cluster: Brokers, on_cluster: Callable[[Brokers], Deployment], sizes: Sizes
) -> None:
    """SIGKILL of the broker that leads the most request and changelog partitions 5 s into the
    run; started again 10 s later and waited for until every replica is in sync; then the one
    that leads the most of them now SIGKILLed, and started again after the run."""
    cluster = suite_cluster
    dep = on_cluster(cluster)
    glob, na, flow = up(dep)
    topics = request_topics(flow.cat)
    vehicles = dep.fleet(fleet_size(sizes, 90, LONG_RATE))
    flow.register(*vehicles)
    driver = TimedDriver(flow, vehicles, LONG_RATE).start()
    at(driver, 5)
    first = cluster.most_leading(topics)
    led_first = cluster.leaders(topics)[first]
    in_flight(driver, f"the SIGKILL of kafka-{first}")
    driver.mark(f"kill kafka-{first}")
    cluster.kill(first)
    moved_first = cluster.wait_led_elsewhere(first, topics)
    driver.mark("leaders moved")
    at(driver, 15)
    back = cluster.start()
    driver.mark(f"kafka-{first} started")
    in_sync = cluster.wait_in_sync()
    driver.mark("in sync")
    second = cluster.most_leading(topics, besides=[first])
    led_second = cluster.leaders(topics)[second]
    at(driver, 25)
    in_flight(driver, f"the SIGKILL of kafka-{second}")
    driver.mark(f"kill kafka-{second}")
    cluster.kill(second)
    moved_second = cluster.wait_led_elsewhere(second, topics)
    driver.mark("leaders moved")
    driver.wait(FINISH_TIMEOUT)
    cluster.restore()
    dep.figures.update({"killed": [f"kafka-{first}", f"kafka-{second}"],
                        "partitions_they_led": [led_first, led_second],
                        "leaders_moved_seconds": [round(moved_first, 2), round(moved_second, 2)],
                        "first_back_seconds": round(back, 1),
                        "first_in_sync_seconds": round(in_sync, 1),
                        **longest(driver), "run_seconds": round(driver.seconds, 1),
                        "timeline": driver.timeline()})
    assert_no_harm_beyond_delay(dep, driver, [glob, na], SIGKILL_LONGEST_SECONDS)


def test_rolling_restart_of_every_broker(
    suite_cluster: Brokers, on_cluster: Callable[[Brokers], Deployment], sizes: Sizes
) -> None:
    """Each broker stopped (SIGTERM: a controlled shutdown) and started again in turn, as a
    rolling upgrade does, the next one only once every replica is in sync again."""
    cluster = suite_cluster
    dep = on_cluster(cluster)
    glob, na, flow = up(dep)
    vehicles = dep.fleet(fleet_size(sizes, 120, LONG_RATE))
    flow.register(*vehicles)
    driver = TimedDriver(flow, vehicles, LONG_RATE).start()
    at(driver, 5)
    stopped, restarted, synced = [], [], []
    for node in (1, 2, 3):
        in_flight(driver, f"the stop of kafka-{node}")
        began = time.monotonic()
        driver.mark(f"stop kafka-{node}")
        cluster.stop(node)
        stopped.append(round(time.monotonic() - began, 1))
        driver.mark(f"kafka-{node} stopped")
        restarted.append(round(cluster.start(), 1))
        driver.mark(f"kafka-{node} started")
        synced.append(round(cluster.wait_in_sync(), 1))
        driver.mark("in sync")
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({"restarts": 3, "stop_seconds": stopped, "start_seconds": restarted,
                        "in_sync_seconds": synced, **longest(driver),
                        "run_seconds": round(driver.seconds, 1), "timeline": driver.timeline()})
    assert_no_harm_beyond_delay(dep, driver, [glob, na], ROLLING_LONGEST_SECONDS)


def test_active_controller_sigkilled(
    suite_cluster: Brokers, on_cluster: Callable[[Brokers], Deployment], sizes: Sizes
) -> None:
    """SIGKILL of the node that leads the controller quorum (on a combined node, a broker too)
    5 s into the run; the others elect a new one; started again 10 s later."""
    cluster = suite_cluster
    dep = on_cluster(cluster)
    glob, na, flow = up(dep)
    topics = request_topics(flow.cat)
    vehicles = dep.fleet(fleet_size(sizes, 60, LONG_RATE))
    flow.register(*vehicles)
    driver = TimedDriver(flow, vehicles, LONG_RATE).start()
    at(driver, 5)
    victim = cluster.controller()
    led = cluster.leaders(topics)[victim]
    in_flight(driver, f"the SIGKILL of kafka-{victim}")
    began = time.monotonic()
    driver.mark(f"kill kafka-{victim}")
    cluster.kill(victim)
    successor = wait_new_controller(cluster, victim)
    elected = time.monotonic() - began
    driver.mark(f"kafka-{successor} leads the quorum")
    moved = cluster.wait_led_elsewhere(victim, topics)
    driver.mark("leaders moved")
    at(driver, 15)
    back = cluster.start()
    driver.mark(f"kafka-{victim} started")
    in_sync = cluster.wait_in_sync()
    driver.mark("in sync")
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({"killed": f"kafka-{victim}", "partitions_it_led": led,
                        "new_controller": f"kafka-{successor}",
                        "controller_elected_seconds": round(elected, 2),
                        "leaders_moved_seconds": round(moved, 2),
                        "restart_seconds": round(back, 1), "in_sync_seconds": round(in_sync, 1),
                        **longest(driver), "run_seconds": round(driver.seconds, 1),
                        "timeline": driver.timeline()})
    assert_no_harm_beyond_delay(dep, driver, [glob, na], SIGKILL_LONGEST_SECONDS)


def wait_new_controller(cluster: Brokers, old: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with_leader = cluster.controller()
        if with_leader != old:
            return with_leader
        time.sleep(0.1)
    raise TimeoutError(f"kafka-{old} still leads the controller quorum after {timeout}s")
