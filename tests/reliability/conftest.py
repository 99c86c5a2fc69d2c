"""The reliability suite: the real stack harmed while a fleet goes through both flows.

Quick sizes run in `make test`; the long run is `make reliability` (sizes from
RELIABILITY_VEHICLES / RELIABILITY_HOSTILE / RELIABILITY_KILLS / RELIABILITY_REGISTRATION_RUNS,
report to docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PORT_BASE, Flow, check_port_base
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    REPLICATION_ENV,
    REPO,
    Bus,
    Fleet,
    WorkerProcess,
    delete_topics,
    own_deployment,
    topic_names,
    wait_until,
)
from vprov.config import Config
from vprov.sim import fleet


def pytest_configure(config: pytest.Config) -> None:
    check_port_base()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reliability")
    group.addoption("--rel-vehicles", type=int,
                    default=int(os.environ.get("RELIABILITY_VEHICLES", "240")),
                    help="vehicles per scenario")
    group.addoption("--rel-hostile", type=int,
                    default=int(os.environ.get("RELIABILITY_HOSTILE", "3000")),
                    help="hostile messages in the bad-input scenario")
    group.addoption("--rel-kills", type=int,
                    default=int(os.environ.get("RELIABILITY_KILLS", "2")),
                    help="SIGKILLs per role in the crash scenario")
    group.addoption("--rel-registration-runs", type=int,
                    default=int(os.environ.get("RELIABILITY_REGISTRATION_RUNS", "1")),
                    help="runs of the registration crash scenario (a fresh fleet each)")
    group.addoption("--rel-report", default=os.environ.get("RELIABILITY_REPORT", ""),
                    help="append each scenario's figures to this JSON Lines file")


# Scenarios of `make reliability` only (RELIABILITY_LONG=1): `make test` keeps its 15 minutes.
LONG_ONLY = ("tests/reliability/test_failover.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
    if os.environ.get("RELIABILITY_LONG") == "1":
        return
    long_only = [i for i in items if any(str(i.fspath).endswith(p) for p in LONG_ONLY)]
    if long_only:
        config.hook.pytest_deselected(items=long_only)
        items[:] = [i for i in items if i not in long_only]


@dataclass
class Sizes:
    vehicles: int
    hostile: int
    kills: int
    report: str
    registration_runs: int = 1

    @property
    def rate(self) -> float:
        """Offered vehicles per second: well inside capacity, so harm, not load, is tested."""
        return 40.0


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> Sizes:
    opt = request.config.getoption
    return Sizes(opt("--rel-vehicles"), opt("--rel-hostile"), opt("--rel-kills"),
                 opt("--rel-report"), opt("--rel-registration-runs"))


def _address(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url if "://" in url else f"//{url}")
    return parsed.hostname or "127.0.0.1", parsed.port or 0


def stack(*args: str) -> None:
    """The project's stack script, on the stack the suite runs against: its ports are those of
    KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (VPROV_RUN_DIR and KAFKA_CONTROLLER_PORT come from the
    environment, as when the stack was started)."""
    env = {**os.environ, **broker_ports(BOOTSTRAP), "REDIS_PORT": str(_address(REDIS_URL)[1])}
    subprocess.run(["bash", str(REPO / "scripts" / "stack.sh"), *args], check=True,
                   capture_output=True, timeout=180, env=env)


def broker_ports(bootstrap: str) -> dict[str, str]:
    """The stack script's KAFKA_PORT, KAFKA_PORT_2 and _3 and BROKERS, for the stack at
    ``bootstrap`` (one address per node, node 1 first, as `scripts/stack.sh env` prints them)."""
    ports = [_address(address)[1] for address in bootstrap.split(",")]
    found = {"KAFKA_PORT": str(ports[0]), "BROKERS": str(len(ports))}
    found.update({f"KAFKA_PORT_{node}": str(port) for node, port in enumerate(ports[1:], 2)})
    return found


def listening(url: str) -> bool:
    try:
        with socket.create_connection(_address(url), timeout=1):
            return True
    except OSError:
        return False


def assert_down(what: str, url: str) -> None:
    """A scenario that stops a service must have stopped the one the workers use."""
    assert not listening(url), (
        f"{what} at {url} is still up after `scripts/stack.sh stop`: run the suite against the "
        "stack that script manages, with the same VPROV_RUN_DIR and KAFKA_CONTROLLER_PORT as "
        "when it was started")


@dataclass
class Deployment:
    """A deployment of its own on the shared broker, with workers started on demand."""

    config_path: Path
    config: Config
    flow_bus: Bus
    workdir: Path
    procs: list[WorkerProcess] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    _port: int = PORT_BASE + 150
    # where its workers and commands connect when it is not the suite's stack (KAFKA_BOOTSTRAP_
    # SERVERS, REDIS_URL and the replication settings of another cluster)
    env: dict[str, str] = field(default_factory=dict)

    def worker(self, role: str, region: str | None = None) -> WorkerProcess:
        self._port += 1
        proc = WorkerProcess(role, self._port, self.workdir, self.config_path, region=region,
                             extra_env=self.env)
        self.procs.append(proc)
        return proc

    def flow(self, glob: WorkerProcess, na: WorkerProcess) -> Flow:
        return Flow(self.flow_bus, {"global": glob, "NA": na})

    def fleet(self, count: int) -> list[fleet.SimVehicle]:
        made = Fleet(tag=fleet.run_tag(str(uuid.uuid4())))
        return [made.vehicle("NA") for _ in range(count)]


# What the workers log when they keep Faust from losing records (streams/repairs/commit_guard.py and
# streams/repairs/watchdog.py): figures of the report, so a run shows how often it happened.
REPAIR_MARKERS = {
    "skipped_ranges": "were skipped by the consumer",
    "held_holes": "were not processed but later ones were",
    "rewinds": "seeking back to",
}


def consumer_repairs(procs: list[WorkerProcess]) -> dict[str, int]:
    counts = dict.fromkeys(REPAIR_MARKERS, 0)
    for proc in procs:
        if not proc.log_path.exists():
            continue
        text = proc.log_path.read_text(errors="replace")
        for name, marker in REPAIR_MARKERS.items():
            counts[name] += text.count(marker)
    return counts


@pytest.fixture
def deployment(tmp_path: Path, sizes: Sizes, request: pytest.FixtureRequest
               ) -> Iterator[Deployment]:
    with open_deployment(tmp_path, sizes, request.node.name) as dep:
        yield dep


@contextlib.contextmanager
def open_deployment(tmp_path: Path, sizes: Sizes, scenario: str, env: dict[str, str] | None = None
                    ) -> Iterator[Deployment]:
    """A deployment of its own on the suite's stack, or on the cluster ``env`` names (its
    KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and replication settings); its workers stopped, its topics
    deleted and its figures reported at the end."""
    env = env or {}
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    prefix = f"r{uuid.uuid4().hex[:6]}"
    kafka = {key: int(env[name]) for name, key in REPLICATION_ENV.items() if env.get(name)}
    # a generous rehome deadline: a killed regional worker must come back before it, so a
    # failure here is a lost message, not a slow restart
    path, config, bus = own_deployment(tmp_path, prefix, bootstrap, kafka or None,
                                       rehome_timeout_seconds=180)
    dep = Deployment(path, config, bus, tmp_path, env=env)
    try:
        yield dep
    finally:
        for proc in dep.procs:
            proc.stop()
        bus.close()
        # the next scenario's broker restart is the slower the more partitions it reloads
        with contextlib.suppress(Exception):
            delete_topics((t for t in topic_names(bootstrap) if t.startswith(prefix)),
                          bootstrap)
        if dep.figures:
            dep.figures.update(consumer_repairs(dep.procs))
        if sizes.report and dep.figures:
            with open(sizes.report, "a", encoding="utf-8") as out:
                out.write(json.dumps({"scenario": scenario, **dep.figures}) + "\n")


def restart_after_kill(proc: WorkerProcess) -> float:
    """SIGKILL, start again, and the seconds until it is ready (tables recovered)."""
    proc.kill()
    began = time.monotonic()
    proc.start().wait_ready(180)
    return time.monotonic() - began


def input_partitions(proc: WorkerProcess) -> int:
    return (proc.health() or {}).get("input_partitions", 0)


def wait_settled(role: list[WorkerProcess], total: int, timeout: float = 180) -> None:
    """Until every worker of a role is ready and together they consume exactly its ``total``
    input partitions: the rebalance is over and no partition is left with a gone worker."""
    def settled() -> bool:
        views = [p.health() or {} for p in role]
        return (all(v.get("ready") for v in views)
                and sum(v.get("input_partitions", 0) for v in views) == total)
    wait_until(settled, timeout=timeout, interval=0.2,
               what=f"{', '.join(p.name for p in role)} settled on {total} input partitions")
