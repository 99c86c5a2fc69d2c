"""Checks of the deployment files that need neither a broker nor a Docker engine.

* docker/compose.yaml, resolved by the compose client (`docker compose` or `docker-compose`);
  skipped only when no compose client is installed. Its worker services and their Prometheus
  scrape targets match the configured regions (`vprov config compose --check`), and a region
  added to the configuration reaches the compose file, the scrape targets and `make demo` with no
  other edit.
* The Prometheus scrape configuration and the Grafana dashboard it ships: every worker is
  scraped, and the dashboard asks only for metrics the workers export.
* scripts/stack.sh: missing-tool messages, status on an empty run dir, stale pid files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vprov import config as config_module
from vprov.ops import compose as compose_module
from vprov.ops import deployment

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
STACK = ROOT / "scripts" / "stack.sh"
DEMO = ROOT / "scripts" / "demo.sh"
BASH = shutil.which("bash") or "/bin/bash"
VPROV = str(Path(sys.executable).with_name("vprov"))
DEFAULTS = config_module.load(config_module.DEFAULTS_PATH, env={})

PROMETHEUS_FILE = ROOT / "docker" / "prometheus" / "prometheus.yml"
DASHBOARD_FILE = ROOT / "docker" / "grafana" / "vprov-dashboard.json"
GRAFANA_PROVISIONING = ROOT / "docker" / "grafana" / "provisioning"

def _workers(config: config_module.Config) -> dict[str, list[str]]:
    """Compose service -> `vprov worker` options, for the deployment layout of ``config``.
    Each worker listens on its service name: reachable from the other containers (Prometheus,
    and workers routing a table lookup to the key's owner) and through the published port."""
    return {f"worker-{w.name}": [*w.args, "--web-port", str(w.web_port),
                                 "--web-host", f"worker-{w.name}"]
            for w in deployment.workers(config)}


WORKERS = _workers(DEFAULTS)


@pytest.fixture
def four_regions(tmp_path: Path) -> Path:
    """The packaged configuration plus a fourth region, SA."""
    doc = config_module.defaults_document()
    doc["regions"]["SA"] = {"gateway_endpoint": "mqtts://sa.iot.vprov.example:8883",
                            "countries": ["BR", "AR", "CL"]}
    path = tmp_path / "four-regions.toml"
    path.write_text(config_module.dumps(doc))
    return path

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


def _resolve(file: str) -> dict[str, Any]:
    """A compose file as the compose client resolves it."""
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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker/compose.yaml as the compose client resolves it."""
    return _resolve(str(COMPOSE_FILE))


def test_compose_has_all_services(compose: dict[str, Any]) -> None:
    assert {"kafka", "redis", *WORKERS, "prometheus", "grafana"} <= set(compose["services"])


def test_default_layout() -> None:
    assert WORKERS == {
        "worker-global": ["--role", "global", "--web-port", "6066", "--web-host", "worker-global"],
        "worker-na": ["--role", "regional", "--region", "NA", "--web-port", "6067",
                      "--web-host", "worker-na"],
        "worker-eu": ["--role", "regional", "--region", "EU", "--web-port", "6068",
                      "--web-host", "worker-eu"],
        "worker-ap": ["--role", "regional", "--region", "AP", "--web-port", "6069",
                      "--web-host", "worker-ap"],
    }


def test_compose_workers_match_the_configuration() -> None:
    """The committed file is what `vprov config compose` writes for the packaged defaults."""
    out = _run([VPROV, "--config", str(config_module.DEFAULTS_PATH), "config", "compose",
                "--check", str(COMPOSE_FILE)])
    assert out.returncode == 0, out.stderr


def test_compose_check_names_a_stale_file(tmp_path: Path, four_regions: Path) -> None:
    stale = tmp_path / "docker" / "compose.yaml"
    shutil.copytree(COMPOSE_FILE.parent, stale.parent)
    out = _run([VPROV, "--config", str(four_regions), "config", "compose", "--check", str(stale)])
    assert out.returncode == 1
    assert "NA, EU, AP, SA" in out.stderr
    assert stale.read_text() == COMPOSE_FILE.read_text()


def test_a_fourth_region_reaches_compose(tmp_path: Path, four_regions: Path) -> None:
    """Adding SA to the configuration, then `vprov config compose FILE`: a worker for SA,
    everything written by hand in the file kept."""
    target = tmp_path / "docker" / "compose.yaml"
    shutil.copytree(COMPOSE_FILE.parent, target.parent)
    out = _run([VPROV, "--config", str(four_regions), "config", "compose", str(target)])
    assert out.returncode == 0, out.stderr
    text = target.read_text()
    before, _, _ = COMPOSE_FILE.read_text().partition(compose_module.BEGIN)
    assert text.startswith(before)  # x-worker, kafka, redis untouched
    services = _resolve(str(target))["services"]
    config = config_module.load(four_regions, env={})
    expected = _workers(config)
    assert expected["worker-sa"] == ["--role", "regional", "--region", "SA",
                                     "--web-port", "6070", "--web-host", "worker-sa"]
    assert {"kafka", "redis", "prometheus", "grafana", *expected} == set(services)
    for name, args in expected.items():
        command = services[name]["command"]
        assert (command.split() if isinstance(command, str) else command) == ["worker", *args]
        assert services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    prometheus = _yaml(target.parent / "prometheus" / "prometheus.yml")
    assert _targets(prometheus) == {"worker-global:6066", "worker-na:6067", "worker-eu:6068",
                                    "worker-ap:6069", "worker-sa:6070"}
    before, _, _ = PROMETHEUS_FILE.read_text().partition(compose_module.TARGETS_BEGIN)
    assert (target.parent / "prometheus" / "prometheus.yml").read_text().startswith(before)


def test_a_fourth_region_reaches_the_demo(four_regions: Path) -> None:
    """`make demo` starts the workers the configuration names (DRY_RUN: lists them)."""
    env = {**os.environ, "DRY_RUN": "1", "VPROV": VPROV, "VPROV_CONFIG": str(four_regions),
           "WORKERS": "1"}
    out = _run([BASH, str(DEMO)], env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "global 6066 --role global",
        "na 6067 --role regional --region NA",
        "eu 6068 --role regional --region EU",
        "ap 6069 --role regional --region AP",
        "sa 6070 --role regional --region SA",
    ]


def test_the_demo_runs_two_workers_per_role(four_regions: Path) -> None:
    """`make demo WORKERS=2`: a second worker of each role, on the web port + 100."""
    env = {**os.environ, "DRY_RUN": "1", "VPROV": VPROV, "VPROV_CONFIG": str(four_regions),
           "WORKERS": "2"}
    out = _run([BASH, str(DEMO)], env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:5] == [
        "global 6066 --role global",
        "na 6067 --role regional --region NA",
        "eu 6068 --role regional --region EU",
        "ap 6069 --role regional --region AP",
        "sa 6070 --role regional --region SA",
    ]
    assert lines[5:] == [
        "global-2 6166 --role global",
        "na-2 6167 --role regional --region NA",
        "eu-2 6168 --role regional --region EU",
        "ap-2 6169 --role regional --region AP",
        "sa-2 6170 --role regional --region SA",
    ]


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


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (compose v1 prints strings,
    v2 objects)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = Path(source).resolve()
    return mounts


def test_compose_prometheus_scrapes_every_worker(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert _mounts(prometheus)["/etc/prometheus/prometheus.yml"] == PROMETHEUS_FILE
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert _targets(_prometheus_config()) == {f"{name}:{args[args.index('--web-port') + 1]}"
                                              for name, args in WORKERS.items()}


def test_compose_grafana_loads_the_dashboard(compose: dict[str, Any]) -> None:
    mounts = _mounts(compose["services"]["grafana"])
    assert mounts["/etc/grafana/provisioning"] == GRAFANA_PROVISIONING
    provider = _yaml(GRAFANA_PROVISIONING / "dashboards" / "vprov.yml")["providers"][0]
    assert mounts[provider["options"]["path"] + "/" + DASHBOARD_FILE.name] == DASHBOARD_FILE


# --- Prometheus and Grafana files ---------------------------------------------


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def _prometheus_config() -> dict[str, Any]:
    return _yaml(PROMETHEUS_FILE)


def _targets(prometheus: dict[str, Any]) -> set[str]:
    return {target for job in prometheus["scrape_configs"]
            for static in job["static_configs"] for target in static["targets"]}


def _dashboard_exprs(panels: list[dict[str, Any]]) -> list[str]:
    exprs = []
    for panel in panels:
        exprs += [t["expr"] for t in panel.get("targets", [])]
        exprs += _dashboard_exprs(panel.get("panels", []))
    return exprs


def test_prometheus_scrapes_the_metrics_page() -> None:
    jobs = _prometheus_config()["scrape_configs"]
    assert [job.get("metrics_path", "/metrics") for job in jobs] == ["/metrics"]


def test_dashboard_asks_only_for_exported_metrics() -> None:
    from streams.metrics import Metrics, sample_names
    from vprov import config as config_module
    from vprov.kafka.catalogue import Catalogue

    config = config_module.load(env={})
    exported = sample_names(Metrics(Catalogue(config), config, None))
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    exprs = _dashboard_exprs(dashboard["panels"])
    used = {name for expr in exprs for name in re.findall(r"\bvprov_[a-z_]+", expr)}
    assert used <= exported, used - exported
    # the funnel, latency, error codes by region, lag
    assert {"vprov_requests_received_total", "vprov_requests_total", "vprov_dead_letters_total",
            "vprov_pending_queries", "vprov_held_requests",
            "vprov_request_latency_seconds_bucket", "vprov_consumer_lag"} <= used
    assert any("by (region, flow, code)" in expr for expr in exprs)
    datasources = _yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {datasources[0]["uid"]}


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
