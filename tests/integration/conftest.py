"""Fixtures of the integration tests: the real broker and Redis (started by `make test`), real
worker processes started here, and a bus to talk to them through the topics."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    Bus,
    Fleet,
    Record,
    WorkerProcess,
    delete_topics,
    isolated_config,
    topic_names,
)
from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import BrokerUnavailable, ensure_topics
from vprov.ops.lifecycle_events import dedupe, histories
from vprov.ops.workers import running
from vprov.sim import fleet
from vprov.sim.fleet_driver import wait_indexed

# A region no worker serves: queries homed there time out (13105).
SILENT_REGION = "ZZ"
REHOME_TIMEOUT_SECONDS = 4
# How long a request from a device the region does not know waits for a late join.
JOIN_WAIT_SECONDS = 4
# How long a move to another region may take before it is undone (tests/.../after_first_boot).
MOVE_TIMEOUT_SECONDS = 8
# Web ports of the workers the tests start: PORT_BASE .. PORT_BASE + 199.
PORT_BASE = int(os.environ.get("VPROV_TEST_PORT_BASE", "17066"))
PORT_SPAN = 300  # the reliability suite's workers start at PORT_BASE + 151
# after the web ports: the secured stack of test_secured.py (+300..+305), the private
# three-broker cluster of tests/reliability/test_brokers.py (+310..+316) and the MQTT brokers of
# test_edge_mqtt.py (+317, +318)
PORTS_AFTER_SPAN = 20


def ephemeral_ports() -> range:
    """The range the kernel hands out to outgoing connections: a worker's web port inside it
    can be taken by chance."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def check_port_base() -> None:
    span = PORT_SPAN + PORTS_AFTER_SPAN
    ephemeral, ours = ephemeral_ports(), range(PORT_BASE, PORT_BASE + span)
    if ours.start < ephemeral.stop and ephemeral.start < ours.stop:
        raise pytest.UsageError(
            f"VPROV_TEST_PORT_BASE={PORT_BASE}: the tests' ports {PORT_BASE}.."
            f"{PORT_BASE + span - 1} overlap the ephemeral port range {ephemeral.start}.."
            f"{ephemeral.stop - 1}, where outgoing connections can take them; pick a base below "
            f"{ephemeral.start - span} (the default is 17066)")


def pytest_configure(config: pytest.Config) -> None:
    check_port_base()
PORTS = {"global": PORT_BASE, "NA": PORT_BASE + 1, "EU": PORT_BASE + 2}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# Prefixes of the session's own deployment: its topics outlive every module.
SESSION_PREFIXES: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def drop_module_topics(request: pytest.FixtureRequest) -> Iterator[None]:
    """The topics a module created are deleted after it (its workers have stopped by then):
    a suite leaves thousands of partitions on the broker otherwise, and a broker restarts, and
    answers metadata requests, the slower the more it holds. A module that needs its topics
    kept past its end says ``KEEP_TOPICS = True``."""
    try:
        before = topic_names()
    except Exception:  # noqa: BLE001 - no broker: the module's own tests say so
        before = None
    yield
    if before is None or getattr(request.module, "KEEP_TOPICS", False):
        return
    try:
        created = topic_names() - before
    except Exception:  # noqa: BLE001 - a module may leave the broker stopped
        return
    delete_topics(t for t in created
                  if not t.startswith(("_", *SESSION_PREFIXES)) and "mm2-" not in t)


def write_test_config(path: Path) -> Path:
    """The session's deployment: its own prefix and topic names (so two sessions, or a session
    and a demo, on one broker never share a consumer group), a short rehome timeout, and a
    region no worker serves."""
    prefix = f"t{uuid.uuid4().hex[:6]}"
    SESSION_PREFIXES.add(prefix)
    return isolated_config(
        path, prefix,
        regions={SILENT_REGION: {"gateway_endpoint": "mqtts://zz.iot.vprov.example:8883",
                                 "countries": []}},
        rehome_timeout_seconds=REHOME_TIMEOUT_SECONDS,
        join_wait_seconds=JOIN_WAIT_SECONDS,
        move_timeout_seconds=MOVE_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="session")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_config(tmp_path_factory.mktemp("config") / "vprov-test.toml")


@pytest.fixture(scope="session")
def config(config_path: Path) -> Config:
    # the environment's Kafka security settings too (`make test SECURITY=sasl_ssl`)
    return config_module.load(config_path, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                                "REDIS_URL": REDIS_URL})


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}). Run the suite with "
                    "`make test`, or start the stack with `make up`.", pytrace=False)
    return client


@pytest.fixture(scope="session")
def stack(config: Config, redis_client: redis.Redis) -> Config:
    try:
        ensure_topics(BOOTSTRAP, Catalogue(config).all(), timeout=20)
    except BrokerUnavailable as exc:
        pytest.fail(f"{exc}. Run the suite with `make test`.", pytrace=False)
    return config


@pytest.fixture(scope="session")
def worker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="session")
def workers(
    stack: Config, config_path: Path, worker_dir: Path
) -> Iterator[dict[str, WorkerProcess]]:
    procs = {
        "global": WorkerProcess("global", PORTS["global"], worker_dir, config_path),
        "NA": WorkerProcess("regional", PORTS["NA"], worker_dir, config_path, region="NA"),
        "EU": WorkerProcess("regional", PORTS["EU"], worker_dir, config_path, region="EU"),
    }
    with running(procs):
        yield procs


@pytest.fixture(scope="session")
def bus(stack: Config) -> Iterator[Bus]:
    cat = Catalogue(stack)
    topics = [cat.query_response, cat.lifecycle, cat.deadletter, cat.rehome_result,
              cat.rehome(SILENT_REGION)]
    for region in stack.regions:
        topics += [cat.device_response(region), cat.onboarding(region)]
    bus = Bus(stack, topics)
    yield bus
    bus.close()


@pytest.fixture
def fleet_(request: pytest.FixtureRequest) -> Fleet:
    return Fleet(tag=fleet.run_tag(f"{request.node.nodeid}-{uuid.uuid4()}"))


class Flow:
    """The steps a vehicle takes, as a device would take them, plus reads of the results."""

    def __init__(self, bus: Bus, workers: dict[str, WorkerProcess]) -> None:
        self.bus = bus
        self.workers = workers
        self.cat = bus.catalogue

    def register(self, *vehicles: fleet.SimVehicle) -> None:
        """Register ``vehicles`` and wait until the global worker has indexed them all."""
        self.bus.register(vehicles)
        until = time.monotonic() + 30 + len(vehicles) / 10
        if not wait_indexed(self.workers["global"].web, list(vehicles), until, io.StringIO()):
            raise TimeoutError(f"{len(vehicles)} systems not all indexed")

    def send_query(self, vehicle: fleet.SimVehicle, message_id: str | None = None,
                   headers: dict[str, str] | None = None, key: str | None = None,
                   **overrides: object) -> str:
        message_id = message_id or str(uuid.uuid4())
        raw = fleet.query(vehicle, message_id, int(time.time()), **overrides)
        self.bus.send(self.cat.query, key or vehicle.vin, raw, headers)
        self.bus.flush()
        return message_id

    def answer(self, message_id: str, topic: str | None = None, count: int = 1,
               timeout: float = 45.0) -> Record:
        found = self.bus.wait(topic or self.cat.query_response,
                              lambda r: isinstance(r.value, dict)
                              and r.value.get("correlation_id") == message_id,
                              count=count, timeout=timeout)
        return found[-1]

    def query(self, vehicle: fleet.SimVehicle, **kwargs: object) -> Record:
        return self.answer(self.send_query(vehicle, **kwargs))

    def send_provision(self, vehicle: fleet.SimVehicle, device: fleet.SimDevice,
                       message_id: str | None = None, headers: dict[str, str] | None = None,
                       region: str | None = None, **overrides: object) -> str:
        message_id = message_id or str(uuid.uuid4())
        raw = fleet.device_provision(vehicle, device, message_id, int(time.time()), **overrides)
        self.bus.send(self.cat.device(region or vehicle.region), vehicle.vin, raw, headers)
        self.bus.flush()
        return message_id

    def provision(self, vehicle: fleet.SimVehicle, device: fleet.SimDevice,
                  **kwargs: object) -> Record:
        region = kwargs.get("region") or vehicle.region
        message_id = self.send_provision(vehicle, device, **kwargs)  # type: ignore[arg-type]
        return self.answer(message_id, self.cat.device_response(str(region)))

    def lifecycle(self, vin: str, count: int = 1) -> list[Record]:
        """The vehicle's lifecycle events, once ``count`` of them arrived: the bus reads each
        topic on its own, and an answer can reach it before the event that preceded it."""
        return self.bus.wait(self.cat.lifecycle, lambda r: r.key == vin, count=count)

    def histories(self, vins: set[str]) -> dict[str, list[dict[str, Any]]]:
        """The lifecycle events of ``vins`` so far, de-duplicated by event_id, by sequence."""
        records = self.bus.records(self.cat.lifecycle, lambda r: r.key in vins)
        return histories(dedupe(r.value for r in records)[0])


def error_code(answer: Record | dict[str, Any]) -> int | None:
    """The answer's error code, whichever property-bag spelling it was answered in."""
    doc = answer.value if isinstance(answer, Record) else answer
    bag = doc.get("property_bag") or doc.get("propertyBag") or {}
    return bag.get("error_code", bag.get("errorCode"))


@pytest.fixture
def flow(bus: Bus, workers: dict[str, WorkerProcess]) -> Flow:
    return Flow(bus, workers)


@pytest.fixture
def broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands run in-process load the configuration from the environment."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)


def run_vprov(config_path: Path, capsys: pytest.CaptureFixture[str], *args: str
              ) -> tuple[int, str, str]:
    """``vprov --config config_path ARGS`` in this process: exit code, stdout, stderr."""
    from vprov.cli import main

    capsys.readouterr()
    code = main(["--config", str(config_path), *args])
    out, err = capsys.readouterr()
    return code, out, err
