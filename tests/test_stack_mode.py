"""scripts/stack.sh follows the mode `up` recorded (SECURITY, TOPOLOGY) when down, status and env
are not told one: `make down` after `make up SECURITY=sasl_ssl` stops the secured stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import closed_port

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "scripts" / "stack.sh"
# what would choose a mode, a stack or a broker other than the test's own
UNSET = ("SECURITY", "TOPOLOGY", "CLUSTER_REGIONS", "BROKERS", "VPROV_RESET", "VPROV_REGISTRY",
         "KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SCHEMA_REGISTRY_URL")


def script_env(run_dir: Path, ports: dict[str, int], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("KAFKA_")}
    return {**env, "VPROV_RUN_DIR": str(run_dir), "VPROV_REGISTRY": "0",
            "VPROV": str(Path(sys.executable).with_name("vprov")),
            **{name: str(port) for name, port in ports.items()}, **extra}


def stack(run_dir: Path, ports: dict[str, int], *args: str, timeout: float = 120,
          **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(STACK), *args], env=script_env(run_dir, ports, **extra),
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def exports(text: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in text.splitlines()
                if line.startswith("export "))


def record(run_dir: Path, **mode: str) -> None:
    """A record as `up` writes it, and the secured stack's credentials files (no process)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stack.mode").write_text("".join(f"{k}={v}\n" for k, v in mode.items()))
    secrets = run_dir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "kafka-users").write_text("admin kafka-pw\nvprov-global-worker worker-pw\n")
    (secrets / "redis-users").write_text("admin redis-pw\nvprov app-pw\n")


PORTS = {"KAFKA_PORT": 1, "KAFKA_CONTROLLER_PORT": 2, "REDIS_PORT": 3}  # nothing listens there


def test_env_and_status_follow_the_recorded_secured_mode(tmp_path: Path) -> None:
    record(tmp_path, SECURITY="sasl_ssl", TOPOLOGY="single")

    env = exports(stack(tmp_path, PORTS, "env").stdout)
    role = exports(stack(tmp_path, PORTS, "env", "global-worker").stdout)
    status = stack(tmp_path, PORTS, "status").stdout

    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_USERNAME"]) == ("SASL_SSL", "admin")
    assert env["REDIS_URL"].startswith("'rediss://admin:redis-pw@127.0.0.1:3/0")
    assert role["KAFKA_SASL_USERNAME"] == "vprov-global-worker"
    assert status.splitlines()[0] == ("[stack] mode: SECURITY=sasl_ssl TOPOLOGY=single "
                                      f"BROKERS=1 (recorded by up in {tmp_path}/stack.mode)")


def test_a_mode_given_wins_over_the_record(tmp_path: Path) -> None:
    record(tmp_path, SECURITY="sasl_ssl", TOPOLOGY="single")

    env = exports(stack(tmp_path, PORTS, "env", SECURITY="plaintext").stdout)

    assert env == {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                   "REDIS_URL": "redis://127.0.0.1:3/0"}


def test_a_recorded_clustered_stack_names_its_regions(tmp_path: Path) -> None:
    record(tmp_path, SECURITY="plaintext", TOPOLOGY="clusters", CLUSTER_REGIONS="NA")

    env = exports(stack(tmp_path, PORTS, "env").stdout)
    status = stack(tmp_path, PORTS, "status").stdout

    assert env["KAFKA_BOOTSTRAP_SERVERS_NA"] == "127.0.0.1:9192"
    assert "KAFKA_BOOTSTRAP_SERVERS_EU" not in env
    assert "[stack] kafka NA: not running" in status.splitlines()


def test_down_forgets_only_the_mode_it_stopped(tmp_path: Path) -> None:
    record(tmp_path, SECURITY="sasl_ssl", TOPOLOGY="single")

    assert stack(tmp_path, PORTS, "down", SECURITY="plaintext").returncode == 0
    assert (tmp_path / "stack.mode").exists()
    assert stack(tmp_path, PORTS, "down").returncode == 0
    assert not (tmp_path / "stack.mode").exists()


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """A run directory and free ports of its own; whatever the test left running is stopped."""
    if shutil.which("java") is None or shutil.which("redis-server") is None:
        pytest.fail("java and redis-server are needed: run `make prereqs`", pytrace=False)
    run_dir = tmp_path / "run"
    ports = {"KAFKA_PORT": closed_port(), "KAFKA_CONTROLLER_PORT": closed_port(),
             "REDIS_PORT": closed_port()}
    try:
        yield run_dir, ports
    finally:
        for security in ("sasl_ssl", "plaintext"):
            stack(run_dir, ports, "down", SECURITY=security)


@pytest.mark.integration
def test_make_down_stops_the_secured_stack_up_started(
        private_stack: tuple[Path, dict[str, int]]) -> None:
    run_dir, ports = private_stack
    up = stack(run_dir, ports, "up", SECURITY="sasl_ssl", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "SECURITY=sasl_ssl\n" in (run_dir / "stack.mode").read_text()

    env = exports(stack(run_dir, ports, "env").stdout)
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_USERNAME"]) == ("SASL_SSL", "admin")
    refused = stack(run_dir, ports, "up")  # plaintext while the secured stack runs
    assert refused.returncode == 1
    assert "runs with SECURITY=sasl_ssl: stop it first" in refused.stderr

    # as the issue had it: `make down` exports an empty SECURITY
    down = subprocess.run(["make", "--no-print-directory", "down"], cwd=REPO, text=True,
                          env=script_env(run_dir, ports, SECURITY="", TOPOLOGY=""),
                          capture_output=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopping kafka" in down.stdout and "stopping redis" in down.stdout
    assert not (run_dir / "stack.mode").exists()

    again = stack(run_dir, ports, "up", timeout=180)  # plaintext: the ports are free again
    assert again.returncode == 0, again.stdout + again.stderr
    assert exports(stack(run_dir, ports, "env").stdout)["REDIS_URL"].startswith("redis://")
    assert stack(run_dir, ports, "down").returncode == 0
    assert "kafka: not running" in stack(run_dir, ports, "status").stdout
