"""Static membership (``kafka.static_membership``) with two global workers and a session timeout
far longer than a restart: a worker SIGKILLed and started again takes its own partitions back
without a rebalance, and a worker stopped (SIGTERM, a scale-in) hands its partitions over at
once, long before the session timeout (``streams/repairs/static_leave.py``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import PORT_BASE, Flow
from tests.integration.harness import Fleet, WorkerProcess, own_deployment, wait_until
from vprov.ops.workers import start_all
from vprov.sim import fleet

# far longer than a worker's restart, so that what the test sees is membership, not a timeout
SESSION_MS = 30_000
STATIC = {"VPROV_STATIC_MEMBERSHIP": "true", "VPROV_SESSION_TIMEOUT_MS": str(SESSION_MS),
          "VPROV_HEARTBEAT_INTERVAL_MS": "1000"}


def health(worker: WorkerProcess) -> dict:
    return worker.health() or {}


class Pair:
    def __init__(self, tmp_path: Path) -> None:
        prefix = f"m{uuid.uuid4().hex[:6]}"
        self.prefix = prefix
        self.path, self.config, self.bus = own_deployment(tmp_path, prefix)
        self.first = WorkerProcess("global", PORT_BASE + 180, tmp_path, self.path,
                                   extra_env=STATIC)
        self.second = WorkerProcess("global", PORT_BASE + 181, tmp_path, self.path,
                                    extra_env=STATIC)
        self.na = WorkerProcess("regional", PORT_BASE + 182, tmp_path, self.path, region="NA")

    def start(self) -> None:
        start_all(self.first, self.na)
        self.total = health(self.first)["input_partitions"]
        start_all(self.second)
        wait_until(lambda: self.settled(self.first, self.second), timeout=120,
                   what="two global workers settled")

    def settled(self, *workers: WorkerProcess) -> bool:
        states = [health(w) for w in workers]
        return (all(s.get("ready") for s in states)
                and sum(s.get("input_partitions", 0) for s in states) == self.total
                and all(s.get("input_partitions", 0) > 0 for s in states))

    def provision(self, vehicles: int) -> None:
        """Queries for new vehicles, all answered SUCCESS: both workers' partitions serve."""
        flow = Flow(self.bus, {"global": self.first, "NA": self.na})
        made = Fleet(tag=fleet.run_tag(self.prefix))
        fleet_ = [made.vehicle("NA") for _ in range(vehicles)]
        flow.register(*fleet_)
        for message_id in [flow.send_query(v) for v in fleet_]:
            assert flow.answer(message_id, timeout=60).value["status"] == "SUCCESS"

    def close(self) -> None:
        for worker in (self.first, self.second, self.na):
            worker.stop()
        self.bus.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    made = Pair(tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.close()


def test_a_static_member_back_after_a_crash_takes_its_partitions_back_without_a_rebalance(
        pair: Pair) -> None:
    generation = health(pair.first)["generation"]
    held = health(pair.second)["input_partitions"]
    pair.second.kill()
    pair.second.start().wait_ready(120)
    wait_until(lambda: pair.settled(pair.first, pair.second), timeout=60,
               what="the restarted worker serves its partitions again")
    assert health(pair.second)["input_partitions"] == held
    assert health(pair.first)["generation"] == generation  # no rebalance
    pair.provision(40)


def test_a_static_member_stopped_hands_its_partitions_over_at_once(pair: Pair) -> None:
    stopped_at = time.monotonic()
    pair.second.stop()
    wait_until(lambda: health(pair.first).get("input_partitions") == pair.total
               and health(pair.first).get("ready"), timeout=SESSION_MS / 1000,
               what="the remaining worker holds every partition")
    handed_over = time.monotonic() - stopped_at
    assert handed_over < SESSION_MS / 1000 / 3, handed_over
    assert "static member" in pair.second.log_path.read_text() and "left group" in \
        pair.second.log_path.read_text()
    pair.provision(40)
