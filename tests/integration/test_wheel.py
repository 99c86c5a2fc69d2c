"""The project as a user installs it: a wheel built from this tree, installed into a clean
virtualenv, run from outside the checkout against the real broker and Redis.

The virtualenv does not see the system's site-packages, the commands run in isolated mode
(``-I``: no PYTHONPATH, no current directory on the path) from a temporary directory, and each
test checks that the code it ran came from the virtualenv, so the source tree cannot stand in
for a file the wheel forgot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PORT_BASE
from tests.integration.harness import BOOTSTRAP, REDIS_URL, REPO, isolated_config
from vprov import config as config_module
from vprov.kafka.avro import RECORD_NAMES
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics

pytestmark = pytest.mark.wheel

WEB_PORT = PORT_BASE + 140
# What a fresh checkout holds that is not source: never copied into the build.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".run", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
                                    "out")

# Run by the wheel's interpreter: where vprov, the schemas and the default configuration come
# from, and every schema (current and history) parsed by the serde the workers use.
PROBE = """
import json, vprov, avro_schemas
from vprov import config
from vprov.kafka.avro import RECORD_NAMES, AvroSerde, history_versions
serde = AvroSerde()
print(json.dumps({
    "vprov": vprov.__file__,
    "defaults": config.load(env={}).source_path,
    "avro_schemas": avro_schemas.__file__,
    "schema_dir": str(serde.schema_dir),
    "loaded": sorted(RECORD_NAMES),
    "versions": {n: sorted(history_versions(n)) for n in RECORD_NAMES},
}))
"""


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding only the wheel of this tree and its dependencies (built once per
    session; dependencies come from pip's cache when it has them)."""
    root = tmp_path_factory.mktemp("wheel")
    # A copy, so the build neither reuses a stale build/ directory nor writes into the tree.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q",
          "--no-deps", "-w", str(root / "dist"), str(source)], cwd=root)
    wheels = list((root / "dist").glob("vprov-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=root)  # no system site-packages
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
          "-q", str(wheels[0])], cwd=root)
    shutil.rmtree(source)
    return venv


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory with no checkout above it."""
    assert REPO not in tmp_path.resolve().parents
    return tmp_path


def test_venv_is_clean(wheel_venv: Path) -> None:
    cfg = (wheel_venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    site = next((wheel_venv / "lib").glob("python3*/site-packages"))
    # an installed wheel, not a link back to the tree
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    for pth in site.glob("*.pth"):
        assert str(REPO) not in pth.read_text(), pth


def test_wheel_loads_its_defaults_and_every_schema(wheel_venv: Path, outside: Path) -> None:
    out = _run([str(wheel_venv / "bin" / "python"), "-I", "-c", PROBE], cwd=outside)
    probe: dict[str, Any] = json.loads(out.stdout)
    for key in ("vprov", "defaults", "avro_schemas", "schema_dir"):
        assert Path(probe[key]).resolve().is_relative_to(wheel_venv.resolve()), probe[key]
    assert probe["loaded"] == sorted(RECORD_NAMES)
    # every version of every record in the tree made it into the wheel
    history = REPO / "avro_schemas" / "history"
    for name in RECORD_NAMES:
        in_tree = sorted(int(p.name.split(".v")[1].split(".")[0])
                         for p in history.glob(f"{name}.v*.avsc"))
        assert in_tree and probe["versions"][name] == in_tree, name


@pytest.fixture
def wheel_config(outside: Path) -> Path:
    """A deployment of its own (prefix, topics), so this worker joins no other test's group."""
    path = isolated_config(outside / "vprov.toml", f"w{uuid.uuid4().hex[:6]}")
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP})
    ensure_topics(BOOTSTRAP, Catalogue(config).all(), timeout=20)
    return path


def _health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


@pytest.fixture
def wheel_worker(wheel_venv: Path, outside: Path, wheel_config: Path
                 ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "REDIS_URL": REDIS_URL}
    log = outside / "worker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(wheel_venv / "bin" / "vprov"), "--config", str(wheel_config), "worker",
             "--role", "global", "--web-port", str(WEB_PORT), "--data-dir", "data"],
            cwd=outside, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_wheel_runs_a_worker(wheel_worker: tuple[subprocess.Popen[bytes], Path],
                             wheel_config: Path, wheel_venv: Path) -> None:
    proc, log = wheel_worker
    prefix = config_module.load(wheel_config).app_prefix
    health = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (f"the worker exited with {proc.returncode}:\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
        health = _health(f"http://127.0.0.1:{WEB_PORT}/health")
        if health and health.get("ready"):
            break
        time.sleep(0.5)
    assert health and health.get("ready"), log.read_text(errors="replace")[-3000:]
    assert health["app"] == f"{prefix}-global"
    assert health["input_partitions"] > 0
    # the console script of the virtualenv, and its interpreter, ran the worker
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].decode().startswith(str(wheel_venv)), cmdline
