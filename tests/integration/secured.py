"""A second, secured broker and Redis for the tests of secured connections: started by
``SECURITY=sasl_ssl scripts/stack.sh up`` on ports of the test session, under the run
directory, and stopped at the end (the same script and settings as ``make up SECURITY=sasl_ssl``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import NO_REPLICATION_ENV, REPO
from vprov import config as config_module
from vprov.kafka.settings import KafkaConnection

STACK = REPO / "scripts" / "stack.sh"
# variables that would make a client of the secured stack use the session's other broker, or
# its replication (the secured stack has one broker, the session's may have three)
CLIENT_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "KAFKA_SECURITY_PROTOCOL",
                    "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                    "KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERTIFICATE_LOCATION",
                    "KAFKA_SSL_KEY_LOCATION", *NO_REPLICATION_ENV)


def exports(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines (shell-quoted values) as a dict; comments skipped."""
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


@dataclass
class SecuredStack:
    run_dir: Path
    config_path: Path
    kafka_port: int
    controller_port: int
    redis_port: int
    started_seconds: float = 0.0
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def _script_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}
        # no schema registry here: the suite's own stack has one (make test sets VPROV_REGISTRY)
        return {**base, "SECURITY": "sasl_ssl", "VPROV_REGISTRY": "0", "BROKERS": "1",
                "VPROV_RUN_DIR": str(self.run_dir),
                "KAFKA_PORT": str(self.kafka_port),
                "KAFKA_CONTROLLER_PORT": str(self.controller_port),
                "REDIS_PORT": str(self.redis_port), "VPROV_CONFIG": str(self.config_path),
                "VPROV": str(Path(sys.executable).with_name("vprov"))}

    def _run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK), *args], env=self._script_env(), cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def up(self) -> None:
        started = time.monotonic()
        done = self._run("up")
        if done.returncode != 0:
            raise RuntimeError(f"secured stack did not start:\n{done.stdout}\n{done.stderr}")
        self.started_seconds = time.monotonic() - started

    def down(self) -> None:
        self._run("down", timeout=90)

    def env(self, role: str = "admin") -> dict[str, str]:
        """The settings ``scripts/stack.sh env ROLE`` prints for a role (or the admin)."""
        if role not in self._envs:
            done = self._run("env", role, timeout=30)
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            # a worker given this environment on top of the session's keeps one replica
            self._envs[role] = {**NO_REPLICATION_ENV, **exports(done.stdout)}
        return dict(self._envs[role])

    def client_env(self, role: str = "admin", **changes: str) -> dict[str, str]:
        """The environment of a command run as ``role``, with ``changes``."""
        base = {k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES}
        return {**base, **self.env(role), **changes}

    def access(self, role: str = "admin") -> KafkaConnection:
        env = self.env(role)
        return KafkaConnection(env["KAFKA_BOOTSTRAP_SERVERS"],
                               config_module.security_from_env(env))

    @property
    def ca(self) -> Path:
        return self.run_dir / "secrets" / "ca.pem"
