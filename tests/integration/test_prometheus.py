"""A real Prometheus scraping real workers: every expression of the Grafana dashboard and every
alert rule returns data, the rules evaluate without error, and two alerts fire when their cause
happens.

How "returns data" is checked, and what that proves:

- **Durations.** The expressions look 5 to 15 minutes back (``[15m]``, ``offset 10m``,
  Grafana's ``$__rate_interval``); the Prometheus started here has well under a minute of
  samples. Every range is therefore asked for as ``[1m]`` (all the samples there are) and every
  offset as ``offset 10s``, and ``$region`` as ``.*`` (the dashboard's "All"). The metric names,
  label matchers, aggregations, joins and functions, which decide whether a query finds
  series, stay as written.
- **Conditions.** An alert expression is one or more comparisons ``value OP threshold`` joined
  by ``and``. On a healthy deployment most of them are false, and a false comparison is an
  empty result by design, so asking for the whole expression would prove nothing either way.
  The test asks for each ``value`` (the operand before the comparison: up to the first
  comparison operator outside parentheses, braces and brackets) and requires at least one series
  with a number (not NaN). The dashboard's "Largest partition lag" (``... > 0``) is treated the
  same way.
- **The rules themselves** run in this Prometheus with their real durations
  (``rule_files``: docker/prometheus/alerts.yml, evaluated every second): each must report health
  ``ok``; the test sends a query for a region no worker serves (answered 13105 after the rehome
  timeout) and a device request that is not JSON (dead-lettered 13113), and waits for
  VprovRegionNotConfirmingRehomes and VprovDeadLetters to fire; VprovFunnelDoesNotAddUp, on
  these real counts, must not even be pending.

The scrape configuration is docker/prometheus/prometheus.yml with its targets replaced by the
workers started here (same job name and ``role`` labels, which the rules use) and a 1 s scrape
interval.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import PORT_BASE, SILENT_REGION, Flow
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    REPO,
    Bus,
    Fleet,
    WorkerProcess,
    isolated_config,
    wait_until,
)
from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import running

# two NA workers: the region's tables have standbys, whose lag an alert watches
WEB_PORTS = {"global": PORT_BASE + 146, "NA": PORT_BASE + 147, "NA-2": PORT_BASE + 149}
PROMETHEUS_PORT = PORT_BASE + 148
PROMETHEUS_DIR = REPO / "docker" / "prometheus"
DASHBOARD = REPO / "docker" / "grafana" / "vprov-dashboard.json"
REHOME_TIMEOUT_SECONDS = 2
VEHICLES = 3
# provoked below; their `for` is 0, so they fire at the first evaluation that sees their cause
PROVOKED = {"VprovRegionNotConfirmingRehomes", "VprovDeadLetters"}

Deployment = tuple[Config, dict[str, WorkerProcess]]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A global and two NA workers of their own (counters start at zero); queries homed in the
    silent region fail after a short rehome timeout."""
    tmp = tmp_path_factory.mktemp("prometheus-workers")
    path = isolated_config(
        tmp / "vprov.toml", f"p{uuid.uuid4().hex[:6]}",
        regions={SILENT_REGION: {"gateway_endpoint": "mqtts://zz.iot.vprov.example:8883",
                                 "countries": []}},
        rehome_timeout_seconds=REHOME_TIMEOUT_SECONDS)
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    ensure_topics(BOOTSTRAP, Catalogue(config).all(), timeout=20)
    workers = {"global": WorkerProcess("global", WEB_PORTS["global"], tmp, Path(path)),
               "NA": WorkerProcess("regional", WEB_PORTS["NA"], tmp, Path(path), region="NA"),
               "NA-2": WorkerProcess("regional", WEB_PORTS["NA-2"], tmp, Path(path),
                                     region="NA")}
    with running(workers):
        yield config, workers


def scrape_config(workers: dict[str, WorkerProcess], rules: Path) -> dict[str, Any]:
    """docker/prometheus/prometheus.yml, scraping ``workers`` every second."""
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    doc["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s",
                     "evaluation_interval": "1s"}
    doc["rule_files"] = [str(rules)]
    by_role = {"global": [f"127.0.0.1:{WEB_PORTS['global']}"],
               "regional": [f"127.0.0.1:{WEB_PORTS['NA']}", f"127.0.0.1:{WEB_PORTS['NA-2']}"]}
    for job in doc["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = by_role[static["labels"]["role"]]
    return doc


class Prometheus:
    def __init__(self, port: int) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def get(self, path: str, **params: str) -> Any:
        response = self.http.get(path, params=params)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def alerts(self, state: str) -> set[str]:
        return {alert["labels"]["alertname"] for alert in self.get("/api/v1/alerts")["alerts"]
                if alert["state"] == state}


@pytest.fixture(scope="module")
def prometheus(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:
    """A Prometheus server of its own (Debian's prometheus package: `make prereqs`) on a port of
    the suite's range, its data and log in a temporary directory."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: `make prereqs` installs Debian's prometheus "
                    "package as root (else `sudo apt-get install prometheus`)", pytrace=False)
    _, workers = deployment
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(workers, PROMETHEUS_DIR / "alerts.yml")))
    log_path = tmp / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
            stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(PROMETHEUS_PORT)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {proc.returncode}:\n"
                                   f"{log_path.read_text()}")
            try:
                return server.http.get("/-/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=30, what="prometheus ready")
        yield server
    finally:
        server.http.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the expressions -----------------------------------------------------------------------

COMPARISON = re.compile(r"==|!=|>=|<=|>|<")
SET_OPERATOR = re.compile(r"\b(and|unless)\b")


def top_level(expr: str) -> list[tuple[int, int]]:
    """Spans of ``expr`` outside parentheses, braces, brackets and strings."""
    spans, depth, start, quote = [], 0, 0, ""
    for i, char in enumerate(expr):
        if quote:
            if char == quote and expr[i - 1] != "\\":
                quote = ""
                if depth == 0:
                    start = i + 1
            continue
        if char in "\"'`":
            if depth == 0 and start < i:
                spans.append((start, i))
            quote = char
        elif char in "({[":
            if depth == 0 and start < i:
                spans.append((start, i))
            depth += 1
        elif char in ")}]":
            depth -= 1
            if depth == 0:
                start = i + 1
    if depth == 0 and not quote and start < len(expr):
        spans.append((start, len(expr)))
    return spans


def split_top_level(expr: str, pattern: re.Pattern[str]) -> list[str]:
    cuts = [m.span() for begin, end in top_level(expr) for m in pattern.finditer(expr, begin, end)]
    parts, position = [], 0
    for begin, end in cuts:
        parts.append(expr[position:begin])
        position = end
    parts.append(expr[position:])
    return [part.strip() for part in parts]


def value_parts(expr: str) -> list[str]:
    """The values an expression compares: each ``and``/``unless`` operand up to its first
    comparison outside parentheses, braces and brackets."""
    return [split_top_level(operand, COMPARISON)[0]
            for operand in split_top_level(expr, SET_OPERATOR)]


def shortened(expr: str) -> str:
    """``expr`` over the samples this Prometheus has: ranges of 1 minute, offsets of 10 s,
    Grafana's variables as a dashboard showing every region would set them."""
    expr = expr.replace("$__rate_interval", "1m").replace("$region", ".*")
    expr = re.sub(r"\[\d+[smhdwy]\]", "[1m]", expr)
    return re.sub(r"\boffset\s+\d+[smhdwy]", "offset 10s", expr)


def dashboard_exprs() -> dict[str, str]:
    """Panel title and legend -> expression, for every target of the dashboard."""
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    found = {}
    for panel in walk(json.loads(DASHBOARD.read_text())["panels"]):
        for target in panel.get("targets", []):
            found[f"{panel['title']}: {target.get('legendFormat') or target['refId']}"] = \
                target["expr"]
    return found


def alert_exprs() -> dict[str, str]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in doc["groups"] for rule in group["rules"]
            if "alert" in rule}


def test_value_parts_of_a_condition() -> None:
    expr = ('sum by (region, topic) (x{a!="b",c=~"d>e"}) > 1000\nand\n'
            'sum(delta(x[10m])) > on (region) 10 + sum by (region) (y == 1)')
    assert value_parts(expr) == ['sum by (region, topic) (x{a!="b",c=~"d>e"})',
                                 "sum(delta(x[10m]))"]
    assert value_parts('up{job="vprov"} == 0') == ['up{job="vprov"}']
    assert value_parts("max by (p) (lag) > 0") == ["max by (p) (lag)"]
    assert value_parts("histogram_quantile(0.5, sum by (le) (rate(h[5m])))") == [
        "histogram_quantile(0.5, sum by (le) (rate(h[5m])))"]
    assert shortened("sum(x offset 10m) - increase(y[$__rate_interval]) + rate(z{r=~\"$region\"}"
                     "[15m])") == 'sum(x offset 10s) - increase(y[1m]) + rate(z{r=~".*"}[1m])'


# --- the test ------------------------------------------------------------------------------


def drive(config: Config, workers: dict[str, WorkerProcess], fleet_: Fleet) -> None:
    """Vehicles homed in NA queried and their devices provisioned (answers, latencies, rehome
    round trips, lifecycle events), a query for the silent region (13105 after the rehome
    timeout) and a device request that is not JSON (a dead letter)."""
    cat = Catalogue(config)
    bus = Bus(config, [cat.query_response, cat.device_response("NA"), cat.deadletter])
    try:
        flow = Flow(bus, workers)
        vehicles = [fleet_.vehicle(region="NA") for _ in range(VEHICLES)]
        silent = fleet_.vehicle(region=SILENT_REGION)
        flow.register(*vehicles, silent)
        failed = flow.send_query(silent)
        sent = [flow.send_query(vehicle) for vehicle in vehicles]
        for message_id in sent:
            flow.answer(message_id)
        for vehicle in vehicles:
            flow.provision(vehicle, vehicle.primary)
        marker = f"not json {uuid.uuid4()}".encode()
        bus.send(cat.device("NA"), vehicles[0].vin, marker)
        bus.flush()
        bus.wait(cat.deadletter, lambda r: r.value["payload"] == marker)
        flow.answer(failed)
    finally:
        bus.close()


def test_every_dashboard_and_alert_expression_returns_data(
    deployment: Deployment, prometheus: Prometheus, fleet_: Fleet
) -> None:
    config, workers = deployment
    # every worker scraped at least once before anything happens: counters are seen at 0 first
    wait_until(lambda: prometheus.value('count(up{job="vprov"} == 1)') == len(workers),
               timeout=20, what="every worker scraped")
    drive(config, workers, fleet_)
    # samples 10 s back, for the expressions with an offset
    wait_until(lambda: prometheus.value('count(up{job="vprov"} offset 10s)') == len(workers),
               timeout=20, what="10 s of samples")

    # Prometheus has scraped the outcome; the rules have seen it
    wait_until(lambda: prometheus.value(
        'sum(vprov_requests_total{flow="query",code="13105"})') >= 1
        and prometheus.value("sum(vprov_rehome_roundtrip_seconds_count)") >= VEHICLES
        and prometheus.value('sum(vprov_requests_total{flow="device"})') >= VEHICLES
        and prometheus.value("sum(vprov_dead_letters_total)") >= 1,
        timeout=20, what="the answers and the dead letter scraped")
    wait_until(lambda: prometheus.alerts("firing") >= PROVOKED, timeout=20,
               what=f"{sorted(PROVOKED)} firing")

    rules = [rule for group in prometheus.get("/api/v1/rules")["groups"]
             for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == set(alert_exprs())
    assert {rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in rules} == \
        {rule["name"]: ("ok", "") for rule in rules}
    active = prometheus.alerts("firing") | prometheus.alerts("pending")
    assert "VprovFunnelDoesNotAddUp" not in active

    exprs = {f"dashboard {name}": expr for name, expr in dashboard_exprs().items()}
    exprs |= {f"alert {name}": expr for name, expr in alert_exprs().items()}
    empty = {}
    for name, expr in exprs.items():
        for part in value_parts(expr):
            query = shortened(part)
            values = [float(sample["value"][1]) for sample in prometheus.query(query)]
            if not any(not math.isnan(value) for value in values):
                empty[name] = (query, values)
    assert empty == {}, "expressions without data:\n" + "\n".join(
        f"{name}: {query} -> {values}" for name, (query, values) in empty.items())

    # the dashboard's region variable: label_values(vprov_requests_received_total, region)
    regions = prometheus.get("/api/v1/label/region/values",
                             **{"match[]": "vprov_requests_received_total"})
    assert {"global", "NA"} <= set(regions)
