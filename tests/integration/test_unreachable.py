"""Every command, with one of Kafka, Redis or the global worker missing, stops within its connect
timeout with exit code 3 and one line on stderr naming the address and the setting that chose it.

The shared broker and Redis are never stopped: the missing piece is a closed port (nothing
listens) or a silent one (it accepts connections and never answers); the others are the real
stack. Commands run as subprocesses, so librdkafka's own output would be seen too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import ports
from tests.integration.harness import BOOTSTRAP, REDIS_URL, REPO

VIN = "1HGCM82633A004352"




@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def vprov(config_path: Path, *args: str, env: dict[str, str] | None = None,
          limit: float = 60) -> Run:
    full_env = {name: value for name, value in os.environ.items()
                if name != "VPROV_CONNECT_TIMEOUT"}  # the default, unless ``env`` sets it
    full_env.update({"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "REDIS_URL": REDIS_URL, **(env or {})})
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vprov.cli", "--config", str(config_path),
                           *args], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=limit)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


def assert_one_line(run: Run, prefix: str) -> None:
    detail = f"exit {run.code} after {run.seconds:.1f} s\nstderr:\n{run.err}\nstdout:\n{run.out}"
    assert run.code == 3, detail
    assert "Traceback" not in run.err, detail
    # librdkafka's own lines ("%3|...|FAIL|rdkafka#consumer-1| ...", or through the logger
    # "FAIL [rdkafka#consumer-1] ...") stay hidden without -v
    assert "rdkafka#" not in run.err, detail
    assert len(run.lines) == 1, detail
    assert run.lines[0].startswith(prefix), detail
    assert run.out == "", detail


def command(name: str, tmp_path: Path) -> list[str]:
    if name == "register":
        path = tmp_path / "devices.jsonl"
        path.write_text('{"device_id": "d-1"}\n', encoding="utf-8")
        return ["register", str(path)]
    return {"simulate": ["simulate", "--vehicles", "1"], "status": ["status", VIN],
            "replay": ["replay"], "replay --verify": ["replay", "--verify"],
            "topics create": ["topics", "create"]}[name]


KAFKA_COMMANDS = ["register", "simulate", "status", "replay", "replay --verify", "topics create"]
WORKER_COMMANDS = ["simulate", "status", "replay --verify"]


@pytest.mark.parametrize("name", KAFKA_COMMANDS)
def test_kafka_on_a_closed_port(name: str, config_path: Path, tmp_path: Path) -> None:
    port = ports.closed_port()
    run = vprov(config_path, "--connect-timeout", "3", *command(name, tmp_path),
                env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert_one_line(run, f"error: cannot reach Kafka at 127.0.0.1:{port} "
                         "(KAFKA_BOOTSTRAP_SERVERS): connection refused")
    assert run.seconds < 8


def test_redis_on_a_closed_port(config_path: Path, tmp_path: Path) -> None:
    port = ports.closed_port()
    run = vprov(config_path, "--connect-timeout", "3", *command("simulate", tmp_path),
                env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert_one_line(run, f"error: cannot reach Redis at redis://127.0.0.1:{port}/0 (REDIS_URL): "
                         "connection refused")
    assert run.seconds < 8


@pytest.mark.parametrize("name", WORKER_COMMANDS)
def test_the_global_worker_on_a_closed_port(name: str, config_path: Path,
                                            tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{ports.closed_port()}"
    run = vprov(config_path, *command(name, tmp_path), "--global-url", url,
                "--connect-timeout", "3")
    assert_one_line(run, f"error: cannot reach the global worker at {url} (--global-url): "
                         "connection refused; start the workers with `make demo`")
    assert run.seconds < 8


def test_with_the_default_timeout(config_path: Path, tmp_path: Path) -> None:
    # the case: `vprov replay --verify` with the broker down
    port = ports.closed_port()
    run = vprov(config_path, *command("replay --verify", tmp_path),
                env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert_one_line(run, f"error: cannot reach Kafka at 127.0.0.1:{port} "
                         "(KAFKA_BOOTSTRAP_SERVERS): connection refused")
    assert run.seconds < 15


@pytest.mark.parametrize("option, limit", [(("--connect-timeout", "3"), 8), ((), 15)])
def test_a_silent_kafka_is_given_up_after_the_timeout(
    option: tuple[str, ...], limit: float, silent_port: int, config_path: Path, tmp_path: Path
) -> None:
    run = vprov(config_path, *command("replay", tmp_path), *option,
                env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent_port}"})
    timeout = option[1] if option else "10"
    assert_one_line(run, f"error: cannot reach Kafka at 127.0.0.1:{silent_port} "
                         "(KAFKA_BOOTSTRAP_SERVERS): the port accepts connections, but no Kafka "
                         f"broker answered within {timeout} s")
    assert float(timeout) - 0.5 < run.seconds < limit


def test_a_silent_worker_is_given_up_after_the_timeout_from_the_environment(
    silent_port: int, config_path: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    run = vprov(config_path, *command("status", tmp_path), "--global-url", url,
                env={"VPROV_CONNECT_TIMEOUT": "2"})
    assert_one_line(run, f"error: cannot reach the global worker at {url} (--global-url): "
                         "no answer within 2 s")
    assert run.seconds < 7


def test_a_silent_redis_is_given_up_after_the_timeout(
    silent_port: int, config_path: Path, tmp_path: Path
) -> None:
    run = vprov(config_path, *command("simulate", tmp_path), "--connect-timeout", "2",
                env={"REDIS_URL": f"redis://127.0.0.1:{silent_port}/0"})
    assert_one_line(run, f"error: cannot reach Redis at redis://127.0.0.1:{silent_port}/0 "
                         "(REDIS_URL): no answer within 2 s")
    assert run.seconds < 7


def test_verbose_shows_librdkafka_lines_once_each(silent_port: int, config_path: Path,
                                                   tmp_path: Path) -> None:
    run = vprov(config_path, "-v", *command("topics create", tmp_path), "--connect-timeout",
                "12", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent_port}"})
    # librdkafka gives up its first request after socket.timeout.ms (10 s) and logs it
    assert run.code == 3 and "Traceback" not in run.err, run.err
    logged = [line for line in run.lines if "vprov.librdkafka" in line]
    assert logged, run.err
    messages = [line.split(" vprov.librdkafka ", 1)[1] for line in logged]
    assert len(messages) == len(set(messages)), run.err
    assert run.lines[-1].startswith(f"error: cannot reach Kafka at 127.0.0.1:{silent_port} ")
