"""A three-broker Kafka cluster run by scripts/stack.sh (BROKERS=3), and what the scenarios of
tests/reliability/test_brokers.py do to it: SIGKILL or stop a node, start it again, find the node
that leads the most partitions or the controller quorum, wait for leaders to move and replicas
to catch up.

It is the suite's own stack when that has three brokers (`make test BROKERS=3`, `make
reliability BROKERS=3`), or a private one on ports after the tests' (``PORT_BASE`` + 310 to +
316, in ``<run dir>/test-brokers``), started and stopped by the tests that need it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import PORT_BASE
from tests.integration.harness import BOOTSTRAP, REDIS_URL, REPO, wait_until
from tests.reliability.conftest import _address, broker_ports
from vprov.kafka.clients import admin_client

STACK = REPO / "scripts" / "stack.sh"
NODES = (1, 2, 3)
# what would point the private cluster's script, or its clients, at the suite's stack
SUITE_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SCHEMA_REGISTRY_URL",
                   "VPROV_REPLICATION_FACTOR", "VPROV_MIN_INSYNC_REPLICAS", "VPROV_RESET",
                   "SECURITY", "TOPOLOGY", "CLUSTER_REGIONS")


def exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


@dataclass
class Brokers:
    """A three-node cluster of scripts/stack.sh: ``script_env`` is the script's environment
    (run directory, ports, BROKERS=3)."""

    script_env: dict[str, str]
    private: bool

    def run(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(["bash", str(STACK), *args], env=self.script_env, cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/stack.sh {' '.join(args)} failed:\n{done.stdout}"
                               f"{done.stderr}")
        return done.stdout

    def client_env(self) -> dict[str, str]:
        """KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and the replication settings of the cluster, as
        `scripts/stack.sh env` prints them."""
        return exports(self.run("env"))

    @cached_property
    def bootstrap(self) -> str:
        return self.client_env()["KAFKA_BOOTSTRAP_SERVERS"]

    @cached_property
    def admin(self) -> AdminClient:
        """One client for every metadata read: it knows every node, whichever is down."""
        return admin_client(self.bootstrap)

    # --- harm -----------------------------------------------------------------------------

    def kill(self, node: int) -> None:
        """SIGKILL: no controlled shutdown; its partitions wait for the controller to fence it."""
        self.run("kill", f"kafka-{node}")

    def stop(self, node: int) -> None:
        """SIGTERM: a controlled shutdown, which moves its leaders away first."""
        self.run("stop", f"kafka-{node}")

    def start(self) -> float:
        """Every node that does not run; the seconds until they all said they started."""
        began = time.monotonic()
        self.run("up")
        return time.monotonic() - began

    def controller(self) -> int:
        """The node that leads the controller quorum now."""
        return int(self.run("controller").strip())

    # --- what the metadata says ---------------------------------------------------------------

    def _partitions(self, topics: Iterable[str] | None = None) -> list[Any]:
        """The partitions' metadata; asked again while a request times out (a node just lost
        may still be the one asked)."""
        for attempt in range(30):  # short waits: a wait for a leader is measured with them
            try:
                metadata = self.admin.list_topics(timeout=2)
                break
            except KafkaException:
                if attempt == 29:
                    raise
        wanted = set(topics) if topics is not None else set(metadata.topics)
        return [p for name, topic in metadata.topics.items() if name in wanted
                for p in topic.partitions.values()]

    def leaders(self, topics: Iterable[str]) -> Counter[int]:
        """How many partitions of ``topics`` each node leads."""
        return Counter(p.leader for p in self._partitions(topics) if p.leader >= 0)

    def most_leading(self, topics: Iterable[str], besides: Iterable[int] = ()) -> int:
        """The node (not one of ``besides``) that leads the most partitions of ``topics``."""
        counts = self.leaders(topics)
        candidates = [n for n in NODES if n not in set(besides)]
        return max(candidates, key=lambda n: (counts[n], -n))

    def wait_led_elsewhere(self, node: int, topics: Iterable[str], timeout: float = 60
                           ) -> float:
        """Until every partition of ``topics`` has a leader other than ``node``; the seconds."""
        topics = list(topics)
        began = time.monotonic()
        while any(p.leader in (node, -1) for p in self._partitions(topics)):
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"partitions still led by kafka-{node} after {timeout}s")
            time.sleep(0.1)
        return time.monotonic() - began

    def out_of_sync(self, topics: Iterable[str] | None = None) -> int:
        """Partitions (of ``topics``, else every topic) with a replica outside their ISR."""
        return sum(1 for p in self._partitions(topics) if len(p.isrs) < len(p.replicas))

    def wait_in_sync(self, timeout: float = 120) -> float:
        """Until every replica of every partition of the cluster is in sync again (what a
        rolling upgrade waits for before it stops the next broker); the seconds."""
        began = time.monotonic()
        while self.out_of_sync():
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{self.out_of_sync()} partitions not in sync after "
                                   f"{timeout}s")
            time.sleep(0.2)
        return time.monotonic() - began

    def brokers_up(self) -> int:
        """How many nodes the metadata lists as brokers (registered and not fenced)."""
        try:
            return len(self.admin.list_topics(timeout=2).brokers)
        except KafkaException:
            return 0

    def wait_registered(self, timeout: float = 60) -> None:
        """Until every node serves as a broker: a node logs that it started before the
        controller has unfenced it, and a topic created meanwhile cannot have three replicas."""
        wait_until(lambda: self.brokers_up() == len(NODES), timeout=timeout,
                   what=f"{len(NODES)} brokers in the metadata")

    def restore(self) -> None:
        """Every node running, serving and in sync: how the next scenario finds the cluster."""
        self.start()
        self.wait_registered()
        self.wait_in_sync()


def suite_brokers() -> Brokers:
    """The suite's own stack (it has three brokers): ports from KAFKA_BOOTSTRAP_SERVERS and
    REDIS_URL, run directory and controller ports from the environment, as when it started."""
    env = {**os.environ, **broker_ports(BOOTSTRAP), "REDIS_PORT": str(_address(REDIS_URL)[1])}
    return Brokers(env, private=False)


PRIVATE_PORTS = {"KAFKA_PORT": PORT_BASE + 310, "KAFKA_CONTROLLER_PORT": PORT_BASE + 311,
                 "KAFKA_PORT_2": PORT_BASE + 312, "KAFKA_CONTROLLER_PORT_2": PORT_BASE + 313,
                 "KAFKA_PORT_3": PORT_BASE + 314, "KAFKA_CONTROLLER_PORT_3": PORT_BASE + 315,
                 "REDIS_PORT": PORT_BASE + 316}


def private_brokers() -> Brokers:
    """A three-node cluster and a Redis of the test session's own, beside its stack."""
    run_dir = Path(os.environ.get("VPROV_RUN_DIR") or REPO / ".run") / "test-brokers"
    base = {k: v for k, v in os.environ.items()
            if k not in SUITE_VARIABLES and not k.startswith(("KAFKA_PORT", "KAFKA_CONTROLLER"))}
    env = {**base, "VPROV_RUN_DIR": str(run_dir), "BROKERS": "3", "VPROV_REGISTRY": "0",
           **{name: str(port) for name, port in PRIVATE_PORTS.items()}}
    return Brokers(env, private=True)


def start_private(cluster: Brokers) -> float:
    """A fresh private cluster (an interrupted session's is stopped and wiped first)."""
    cluster.run("down", timeout=90)
    began = time.monotonic()
    try:
        cluster.script_env["VPROV_RESET"] = "1"
        cluster.run("up")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        cluster.script_env.pop("VPROV_RESET", None)
    return time.monotonic() - began
