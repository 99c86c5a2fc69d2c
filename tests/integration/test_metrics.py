"""``GET /metrics`` of real workers after a simulated fleet: the funnel adds up. Every request a
worker read was answered, dead-lettered, or still waits (a query for a region that does not
answer, a secondary device whose primary never came)."""

from __future__ import annotations

import io
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import PORT_BASE, SILENT_REGION, Flow
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
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
from vprov.ops.funnel import funnels
from vprov.ops.workers import running
from vprov.sim.simulate import SimOptions, Simulator

WEB_PORTS = {"global": PORT_BASE + 142, "NA": PORT_BASE + 143}
VEHICLES = 16

Samples = list[tuple[str, dict[str, str], float]]


def scrape(worker: WorkerProcess) -> Samples:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for n, have, value in samples
               if n == name and all(have.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Config, dict[str, WorkerProcess]]]:
    """A global and an NA worker of their own (counters start at zero); queries homed in the
    silent region wait far longer than the test."""
    tmp = tmp_path_factory.mktemp("metrics")
    path = isolated_config(
        tmp / "vprov.toml", f"m{uuid.uuid4().hex[:6]}",
        regions={SILENT_REGION: {"gateway_endpoint": "mqtts://zz.iot.vprov.example:8883",
                                 "countries": []}},
        rehome_timeout_seconds=600)
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    ensure_topics(BOOTSTRAP, Catalogue(config).all(), timeout=20)
    workers = {"global": WorkerProcess("global", WEB_PORTS["global"], tmp, Path(path)),
               "NA": WorkerProcess("regional", WEB_PORTS["NA"], tmp, Path(path), region="NA")}
    with running(workers):
        yield config, workers


def has(samples: Samples, name: str, **labels: str) -> bool:
    return any(n == name and all(have.get(k) == v for k, v in labels.items())
               for n, have, _ in samples)


def test_a_fresh_worker_shows_its_counters_at_zero(
    deployment: tuple[Config, dict[str, WorkerProcess]]
) -> None:
    """Before any input (the module's first test), every known series is there at 0: a
    dashboard shows 0, not "no data"."""
    _, workers = deployment
    for worker, flow in ((workers["global"], "query"), (workers["NA"], "device")):
        samples = scrape(worker)
        counted = {"vprov_requests_total", "vprov_dead_letters_total",
                   "vprov_lifecycle_events_total"}
        assert {value for name, _, value in samples if name in counted} == {0}
        assert has(samples, "vprov_dead_letters_total", flow=flow, code="13113")
        assert has(samples, "vprov_dead_letters_total", flow="internal", code="9000")
        assert has(samples, "vprov_requests_total", flow=flow, outcome="fail", code="13111")
        assert has(samples, "vprov_lifecycle_events_total", state="PROVISIONED")


def test_the_funnel_adds_up_after_a_simulated_fleet(
    deployment: tuple[Config, dict[str, WorkerProcess]], fleet_: Fleet
) -> None:
    config, workers = deployment
    options = SimOptions(vehicles=VEHICLES, regions=("NA",), invalid=0.25, duplicates=0.25,
                         timeout=90, global_url=workers["global"].url, seed=11)
    report = Simulator(config, options, progress_stream=io.StringIO()).run()
    assert report.ok, report.format_text()

    cat = Catalogue(config)
    bus = Bus(config, [cat.query_response, cat.device_response("NA")])
    try:
        flow = Flow(bus, workers)
        silent = [fleet_.vehicle(region=SILENT_REGION) for _ in range(2)]
        waiting = fleet_.vehicle(region="NA")
        flow.register(*silent, waiting)
        for vehicle in silent:
            flow.send_query(vehicle)  # its region never answers: the query waits
        flow.query(waiting)
        flow.send_provision(waiting, waiting.devices[1])  # a secondary, its primary never comes
    finally:
        bus.close()

    def settled() -> tuple[Samples, Samples] | None:
        glob, na = scrape(workers["global"]), scrape(workers["NA"])
        if (total(glob, "vprov_pending_queries"), total(glob, "vprov_pending_rehomes"),
                total(na, "vprov_held_requests")) != (2, 2, 1):
            return None
        return glob, na

    glob, na = wait_until(settled, timeout=30, what="2 queries pending, 1 request held")

    # queries: received = answered + dead-lettered + waiting for their region
    received = total(glob, "vprov_requests_received_total", flow="query")
    answered = total(glob, "vprov_requests_total", flow="query")
    dead = total(glob, "vprov_dead_letters_total", flow="query")
    assert received >= VEHICLES + 3
    assert received == answered + dead + total(glob, "vprov_pending_queries")
    # device requests: received = answered + dead-lettered + held
    received = total(na, "vprov_requests_received_total", flow="device")
    answered = total(na, "vprov_requests_total", flow="device")
    dead = total(na, "vprov_dead_letters_total", flow="device")
    assert received >= 2 * VEHICLES + 1
    assert received == answered + dead + total(na, "vprov_held_requests")
    # the same, as `python -m vprov.ops.funnel` (make demo) reads it
    found = funnels(glob + na)
    assert (found["query"].in_flight, found["device"].in_flight) == (0, 0)
    assert (found["query"].waiting, found["device"].waiting) == (2, 1)

    # the invalid messages were answered with their codes (or dead-lettered: not JSON)
    failed = {labels["code"] for name, labels, value in glob + na
              if name == "vprov_requests_total" and labels["outcome"] == "fail" and value}
    assert {"13101", "11008", "13115"} <= failed, failed
    assert total(glob, "vprov_dead_letters_total", code="13113") + \
        total(na, "vprov_dead_letters_total", code="13113") == 1
    # every answer was timed from its request (no rebalance moved a partition)
    assert total(glob, "vprov_request_latency_seconds_count") == \
        total(glob, "vprov_requests_total")
    assert total(na, "vprov_request_latency_seconds_count") == total(na, "vprov_requests_total")
    # one REGIONAL event and one rehome round trip per vehicle homed in NA
    assert total(glob, "vprov_lifecycle_events_total", state="REGIONAL") == VEHICLES + 1
    assert total(glob, "vprov_rehome_roundtrip_seconds_count") == VEHICLES + 1
    assert total(na, "vprov_lifecycle_events_total") >= 2 * VEHICLES
    # every label set carries the worker's region
    assert {labels.get("region") for name, labels, _ in glob if name.startswith("vprov_")} == \
        {"global"}
    assert {labels.get("region") for name, labels, _ in na if name.startswith("vprov_")} == \
        {"NA"}
    # lag of each input partition, and the tables' sizes
    lagged = {(labels["topic"], labels["partition"]) for name, labels, _ in glob
              if name == "vprov_consumer_lag"}
    assert {(cat.query, str(p)) for p in range(config.partitions)} <= lagged
    assert total(glob, "vprov_table_entries", table="vehicles") >= VEHICLES
    assert total(na, "vprov_table_entries", table="regional-vehicles-NA") >= VEHICLES
