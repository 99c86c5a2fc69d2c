"""scripts/stack.sh with BROKERS=3: what it prints and refuses without starting anything
(tests/reliability/test_brokers.py starts, kills and stops real three-broker clusters)."""

from __future__ import annotations

from pathlib import Path

from tests.test_stack_mode import PORTS, exports, record, stack


def test_env_of_a_three_broker_stack_names_every_node_and_the_replication(tmp_path: Path
                                                                          ) -> None:
    record(tmp_path, SECURITY="plaintext", TOPOLOGY="single", BROKERS="3")

    env = exports(stack(tmp_path, PORTS, "env").stdout)

    # nodes 2 and 3 at KAFKA_PORT + 10 and + 20 unless KAFKA_PORT_2 / _3 say otherwise
    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1,127.0.0.1:11,127.0.0.1:21",
                   "VPROV_REPLICATION_FACTOR": "3", "VPROV_MIN_INSYNC_REPLICAS": "2",
                   "REDIS_URL": "redis://127.0.0.1:3/0"}
    ports = {**PORTS, "KAFKA_PORT_3": 5}
    assert exports(stack(tmp_path, ports, "env").stdout)["KAFKA_BOOTSTRAP_SERVERS"] \
        == "127.0.0.1:1,127.0.0.1:11,127.0.0.1:5"


def test_status_lists_each_node_of_a_recorded_three_broker_stack(tmp_path: Path) -> None:
    record(tmp_path, SECURITY="plaintext", TOPOLOGY="single", BROKERS="3")

    lines = stack(tmp_path, PORTS, "status").stdout.splitlines()

    assert lines[0].startswith("[stack] mode: SECURITY=plaintext TOPOLOGY=single BROKERS=3")
    assert [line for line in lines if line.startswith("[stack] kafka")] == [
        "[stack] kafka-1: not running", "[stack] kafka-2: not running",
        "[stack] kafka-3: not running"]


def test_a_single_broker_stack_prints_one_address_and_no_replication(tmp_path: Path) -> None:
    env = exports(stack(tmp_path, PORTS, "env").stdout)
    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:3/0"}


def test_only_one_or_three_brokers(tmp_path: Path) -> None:
    done = stack(tmp_path, PORTS, "up", BROKERS="2")
    assert done.returncode == 2
    assert done.stderr == "[stack] error: BROKERS=2: expected 1 or 3\n"


def test_three_brokers_are_refused_with_regional_clusters_or_security(tmp_path: Path) -> None:
    clusters = stack(tmp_path, PORTS, "up", BROKERS="3", TOPOLOGY="clusters")
    secured = stack(tmp_path, PORTS, "up", BROKERS="3", SECURITY="sasl_ssl")

    assert clusters.returncode == 1
    assert "BROKERS=3 with TOPOLOGY=clusters: the regional clusters have one broker" \
        in clusters.stderr
    assert secured.returncode == 1
    assert "BROKERS=3 with SECURITY=sasl_ssl is not supported" in secured.stderr
    assert not (tmp_path / "stack.mode").exists()  # refused before anything was recorded


def test_a_node_is_named_within_the_stack(tmp_path: Path) -> None:
    record(tmp_path, SECURITY="plaintext", TOPOLOGY="single", BROKERS="3")

    wrong = stack(tmp_path, PORTS, "kill", "kafka-4")
    stopped = stack(tmp_path, PORTS, "stop", "kafka-2")

    assert wrong.returncode == 1
    assert wrong.stderr == "[stack] error: kafka-4: expected kafka-1 to kafka-3 (BROKERS=3)\n"
    assert stopped.returncode == 0
    assert stopped.stdout == "[stack] kafka-2: not running\n"
