"""Checks of the deployment files that need neither a broker nor a Docker engine.

* docker/compose.yaml, resolved by the compose client (`docker compose` or `docker-compose`);
  skipped only when no compose client is installed.
* scripts/stack.sh: missing-tool messages, status on an empty run dir, stale pid files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
STACK = ROOT / "scripts" / "stack.sh"
BASH = shutil.which("bash") or "/bin/bash"

WORKERS = {
    "worker-global": ["--role", "global", "--web-port", "6066"],
    "worker-na": ["--role", "regional", "--region", "NA", "--web-port", "6067"],
    "worker-eu": ["--role", "regional", "--region", "EU", "--web-port", "6068"],
    "worker-ap": ["--role", "regional", "--region", "AP", "--web-port", "6069"],
}

_YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def _yaml_to_dict(text: str, compose_exe: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        # Compose v1 is a Python program with PyYAML: borrow its interpreter.
        with open(compose_exe, "rb") as fh:
            first = fh.readline().decode(errors="replace")
        assert first.startswith("#!") and "python" in first, f"cannot parse YAML from {compose_exe}"
        out = _run([*first[2:].split(), "-c", _YAML_TO_JSON], input=text)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yaml as the compose client resolves it."""
    file = str(COMPOSE_FILE)
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        out = _run([docker, "compose", "-f", file, "config", "--format", "json"])
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    standalone = shutil.which("docker-compose")
    if standalone is None:
        pytest.skip("no compose client: neither `docker compose` nor `docker-compose` is installed")
    version = _run([standalone, "version", "--short"]).stdout.strip()
    if not version.startswith("1."):
        out = _run([standalone, "-f", file, "config", "--format", "json"])
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    # Compose v1 has no --format and prints YAML.
    out = _run([standalone, "-f", file, "config"])
    assert out.returncode == 0, out.stderr
    return _yaml_to_dict(out.stdout, standalone)


def test_compose_has_all_services(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", *WORKERS} <= set(compose["services"])


def test_compose_kafka_is_apache_kafka_39(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.9")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_compose_worker(compose: dict[str, Any], name: str) -> None:
    svc = compose["services"][name]
    build = svc["build"]
    dockerfile = Path(build["context"]) / build["dockerfile"]
    assert dockerfile.resolve() == ROOT / "docker" / "Dockerfile"
    command = svc["command"]
    if isinstance(command, str):
        command = command.split()
    assert command == ["worker", *WORKERS[name]]
    assert svc["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert svc["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert set(svc["depends_on"]) == {"kafka", "redis"}


# --- scripts/stack.sh ------------------------------------------------------


def _stack(args: list[str], tmp: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VPROV_RUN_DIR": str(tmp / "run"),
        "VPROV_CACHE_DIR": str(tmp / "cache"),
        "KAFKA_PORT": "1",  # never touched by these tests
        "REDIS_PORT": "2",
    }
    env.pop("VPROV_RESET", None)
    if path is not None:
        env["PATH"] = path
    return _run([BASH, str(STACK), *args], env=env)


def test_stack_up_names_missing_tools(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    out = _stack(["up"], tmp_path, path=str(empty))
    assert out.returncode != 0
    assert "java not found" in out.stderr
    assert "apt-get install default-jdk-headless" in out.stderr
    assert "redis-server not found" in out.stderr
    assert "mvn not found" in out.stderr  # the jar cache is empty too
    assert not (tmp_path / "run").exists()


def test_stack_status_on_empty_run_dir(tmp_path: Path) -> None:
    out = _stack(["status"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "kafka: not running" in out.stdout
    assert "redis: not running" in out.stdout


def test_stack_down_leaves_foreign_pid_alone(tmp_path: Path) -> None:
    """A pid file naming a process that is not ours is stale: down must not signal it."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for service in ("kafka", "redis"):
            (tmp_path / "run" / service).mkdir(parents=True)
            (tmp_path / "run" / service / f"{service}.pid").write_text(f"{victim.pid}\n")
        status = _stack(["status"], tmp_path)
        assert "kafka: not running" in status.stdout
        assert "redis: not running" in status.stdout
        down = _stack(["down"], tmp_path)
        assert down.returncode == 0, down.stderr
        assert "stale pid file" in down.stdout
        assert victim.poll() is None
        assert not (tmp_path / "run" / "kafka" / "kafka.pid").exists()
    finally:
        victim.kill()
        victim.wait()


def test_stack_env_prints_connection_settings(tmp_path: Path) -> None:
    out = _stack(["env"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == [
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1",
        "export REDIS_URL=redis://127.0.0.1:2/0",
    ]
