"""Prometheus metrics of a worker, served as text at ``GET /metrics`` on its web port.

Two sources, one registry per app (several apps in one process never mix their counts):

- **Counted as they happen** (``Metrics.count``): the shell hands over each input with the
  records its decision sent. Answers (by flow and error code), dead letters, lifecycle events and
  rehome requests are read from those records, so whatever answers a request is counted in one
  place, however the flows produce it.
- **Read when scraped** (``WorkerCollector``): consumer lag per input partition, table sizes,
  the pending rehomes and held requests (from the tables' small deadline indexes), and the
  shell's own counters.

Every series whose labels are known in advance (answers by flow and code, dead letters by source
flow and code, lifecycle events by state) is there from the start, at 0.

Latency. A request answered in the step that reads it (most device requests, every refused
request) is timed from its record's timestamp. A request that waits (a query's hops and its
rehome, a device request held for its primary) leaves its record timestamp here, under the key
its answer will carry (the VIN); an answer produced later for that key takes the oldest one. The
answer is produced on the worker that read the request (both are on the VIN's partition), except
across a rebalance: such an answer is counted but not timed. Times left behind (an exact
duplicate of a request still waiting is answered by the one answer) are dropped after
``WAIT_LIMIT_SECONDS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import faust
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.manager import TableManager
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from streams.repairs.transport import consumer_of
from vprov.config import Config
from vprov.core.codes import ErrorCode
from vprov.core.envelope import response_error_code
from vprov.flows.lifecycle import State
from vprov.kafka.catalogue import Catalogue

log = logging.getLogger(__name__)

QUERY = "query"
DEVICE = "device"
GLOBAL = "global"  # the region label of the global worker
# Request latency and rehome round trip: from a few ms (a refused request) to the rehome timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0)
WAIT_LIMIT_SECONDS = 600.0
PRUNE_EVERY_SECONDS = 60.0
# Series that exist before their first event, at 0: an alert on ``increase()`` or a dashboard
# sees 0 rather than "no data", and the first event is counted as an increase.
# Every code may answer or dead-letter a request (INTERNAL_ERROR is never an answer); any other
# input is dead-lettered only by the shell (streams.shell.dead_letter_code).
ANSWER_CODES: tuple[ErrorCode, ...] = tuple(
    code for code in ErrorCode if code is not ErrorCode.INTERNAL_ERROR)
REQUEST_DEAD_LETTER_CODES: tuple[ErrorCode, ...] = tuple(ErrorCode)
SHELL_DEAD_LETTER_CODES: tuple[ErrorCode, ...] = (ErrorCode.INVALID_TRANSITION,
                                                  ErrorCode.INTERNAL_ERROR)
REGISTRATION = "registration"  # the flow of a dead letter from the registrations topic
INTERNAL = "internal"  # the flow of a dead letter from any other topic


class Waiting:
    """Times by key, oldest first: request record timestamps (or rehome send times) waiting for
    what answers them. Entries older than ``limit`` seconds (by the clock when added) go."""

    def __init__(self, limit: float = WAIT_LIMIT_SECONDS) -> None:
        self._times: dict[str, list[tuple[float, float]]] = {}  # key -> [(added, time)]
        self._limit = limit
        self._pruned = time.time()

    def add(self, key: str, at: float, now: float) -> None:
        self._times.setdefault(key, []).append((now, at))
        if now - self._pruned > PRUNE_EVERY_SECONDS:
            self.prune(now)

    def add_first(self, key: str, at: float, now: float) -> None:
        """Add unless ``key`` already waits (a re-sent request keeps its first time)."""
        if key not in self._times:
            self.add(key, at, now)

    def take(self, key: str) -> float | None:
        times = self._times.get(key)
        if not times:
            return None
        _, at = times.pop(0)
        if not times:
            del self._times[key]
        return at

    def discard(self, key: str) -> None:
        self._times.pop(key, None)

    def prune(self, now: float) -> None:
        cutoff = now - self._limit
        for key in [k for k, times in self._times.items() if times[0][0] < cutoff]:
            kept = [item for item in self._times[key] if item[0] >= cutoff]
            if kept:
                self._times[key] = kept
            else:
                del self._times[key]
        self._pruned = now

    def __len__(self) -> int:
        return sum(len(times) for times in self._times.values())


def record_seconds(event: faust.EventT) -> float | None:
    """The input record's timestamp (Faust gives seconds), None when it has none."""
    timestamp = getattr(event.message, "timestamp", None)
    return float(timestamp) if isinstance(timestamp, int | float) and timestamp > 0 else None


class Metrics:
    """The counters and histograms of one worker: the global worker (``region`` None) answers
    the query flow, a region's worker the device flow."""

    def __init__(self, catalogue: Catalogue, config: Config, region: str | None) -> None:
        self.region = region or GLOBAL
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        # request topics (external and rerouted) -> flow; answer topics -> flow
        if region is None:
            flow = QUERY
            self._requests = {catalogue.query: QUERY,
                              catalogue.ingress_routes()[catalogue.query]: QUERY}
            self._answers = {catalogue.query_response: QUERY}
        else:
            flow = DEVICE
            self._requests = {topic: DEVICE
                              for pair in catalogue.ingress_routes(region).items()
                              for topic in pair}
            self._answers = {catalogue.device_response(region): DEVICE}
        self._registrations = catalogue.registrations
        self._rehome_result = catalogue.rehome_result
        self.waiting = Waiting()  # requests waiting for a later answer, by VIN
        self.rehomes = Waiting()  # rehome REGISTERs sent, by VIN (global worker)
        # the worker's in-memory deadline index (streams.stores): pending rehomes, held requests
        self.deadline_index: Any = None
        self.errors = 0

        labels = ("region",)
        self._received = Counter(
            "vprov_requests_received", "Requests read from the request topics, by flow.",
            [*labels, "flow"], registry=self.registry)
        self._answered = Counter(
            "vprov_requests", "Answers sent, by flow, outcome and error code (empty: success).",
            [*labels, "flow", "outcome", "code"], registry=self.registry)
        self._latency = Histogram(
            "vprov_request_latency_seconds",
            "From a request record's timestamp to its answer being produced.",
            [*labels, "flow"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._roundtrip = Histogram(
            "vprov_rehome_roundtrip_seconds",
            "From a rehome request (REGISTER) being sent to its result being processed.",
            labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self._dead_letters = Counter(
            "vprov_dead_letters", "Records sent to the dead-letter topic, by error code and the "
            "flow of their source topic.", [*labels, "flow", "code"], registry=self.registry)
        self._lifecycle = Counter(
            "vprov_lifecycle_events", "Lifecycle events sent, by state.", [*labels, "state"],
            registry=self.registry)
        # children bound once: the hot path looks them up in plain dicts
        self._received_by_flow = {flow: self._received.labels(self.region, flow)}
        self._latency_by_flow = {flow: self._latency.labels(self.region, flow)}
        self._roundtrip_child = self._roundtrip.labels(self.region)
        self._answered_by: dict[tuple[str, int | None], Any] = {}
        self._dead_by: dict[tuple[str, int], Any] = {}
        self._lifecycle_by: dict[str, Any] = {}
        self._start_at_zero(flow)

    def dead_letter_codes(self, request_flow: str) -> dict[str, tuple[ErrorCode, ...]]:
        """The codes a dead letter of this worker can carry, by the flow of its source."""
        flows = {request_flow: REQUEST_DEAD_LETTER_CODES, INTERNAL: SHELL_DEAD_LETTER_CODES}
        if self.region == GLOBAL:  # only the global worker reads the registrations
            flows[REGISTRATION] = SHELL_DEAD_LETTER_CODES
        return flows

    def _start_at_zero(self, flow: str) -> None:
        """Create every series whose labels are known now (a labelled counter has none until
        its first ``labels()``)."""
        self._answer_child(flow, None)
        for answer_code in ANSWER_CODES:
            self._answer_child(flow, answer_code)
        for source, codes in self.dead_letter_codes(flow).items():
            for dead_code in codes:
                self._dead_child(source, dead_code)
        for state in State:
            self._lifecycle_child(state.value)

    def _answer_child(self, flow: str, code: int | None) -> Any:
        child = self._answered_by.get((flow, code))
        if child is None:
            outcome, label = ("success", "") if code is None else ("fail", str(int(code)))
            child = self._answered_by[(flow, code)] = self._answered.labels(
                self.region, flow, outcome, label)
        return child

    def source_flow(self, topic: str) -> str:
        if topic == self._registrations:
            return REGISTRATION
        return self._requests.get(topic, INTERNAL)

    def count(self, event: faust.EventT, outputs: Sequence[Any]) -> None:
        """Count one processed input and the records its decision sent. Never raises: a
        metric must not stop a partition."""
        try:
            self._count(event, outputs)
        except Exception:  # noqa: BLE001
            self.errors += 1
            if self.errors == 1:
                log.exception("cannot count an input for /metrics; counting goes on, this is "
                              "reported once")

    def _count(self, event: faust.EventT, outputs: Sequence[Any]) -> None:
        now = time.time()
        message = event.message
        flow = self._requests.get(message.topic)
        # A request's own answer (or dead letter), when the step gives one, is its first.
        request_at = None
        if flow is not None:
            self._received_by_flow[flow].inc()
            request_at = record_seconds(event)
        settled = flow is None
        if message.topic == self._rehome_result and message.key:
            sent = self.rehomes.take(message.key.decode("utf-8", errors="replace"))
            if sent is not None:
                self._roundtrip_child.observe(max(now - sent, 0.0))
        for output in outputs:
            kind = output.kind
            if kind == "reply":
                answer_flow = self._answers.get(output.topic)
                if answer_flow is None:
                    continue
                self._answer_child(answer_flow, response_error_code(output.value)).inc()
                if settled:
                    at = self.waiting.take(output.key)
                else:
                    at, settled = request_at, True
                if at is not None:
                    self._latency_by_flow[answer_flow].observe(max(now - at, 0.0))
            elif kind == "event":
                record = output.record
                if record == "LifecycleEvent":
                    self._lifecycle_child(output.value["state"]).inc()
                elif record == "DeadLetter":
                    value = output.value
                    self._dead_child(self.source_flow(value["source_topic"]),
                                     value["error_code"]).inc()
                    settled = True
                elif record == "RehomeRequest":
                    action = output.value["action"]
                    if action == "REGISTER":
                        self.rehomes.add_first(output.key, now, now)
                    elif action == "CANCEL":
                        self.rehomes.discard(output.key)
        if not settled and message.key and request_at is not None:
            self.waiting.add(message.key.decode("utf-8", errors="replace"), request_at, now)

    def _dead_child(self, flow: str, code: int) -> Any:
        child = self._dead_by.get((flow, code))
        if child is None:
            child = self._dead_by[(flow, code)] = self._dead_letters.labels(
                self.region, flow, str(int(code)))
        return child

    def _lifecycle_child(self, state: str) -> Any:
        child = self._lifecycle_by.get(state)
        if child is None:
            child = self._lifecycle_by[state] = self._lifecycle.labels(self.region, str(state))
        return child


# Private names of faust-streaming read at scrape time; checked when the page is installed.
def consumer_lag(app: faust.App) -> Iterator[tuple[str, int, int]]:
    """(topic, partition, highwater - committed offset) for each input partition assigned,
    changelogs aside. A partition never committed counts from its log start offset (where the
    consumer starts it); one whose start or highwater is not known yet is left out."""
    consumer = consumer_of(app)
    changelogs = app.tables.changelog_topics
    for tp in sorted(consumer.assignment()):
        if tp.topic in changelogs:
            continue
        offset = consumer.head(tp)
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - a partition being revoked has none
            continue
        if offset is not None and highwater is not None:
            yield tp.topic, tp.partition, max(highwater - offset, 0)


def standby_lag(app: faust.App) -> Iterator[tuple[str, int, int]]:
    """(changelog topic, partition, highwater - next offset to apply) for each standby table
    partition of this worker: how far its warm copy is behind, which a takeover replays. One
    whose highwater is not known yet is left out."""
    recovery = cast(TableManager, app.tables).recovery  # the interface does not declare it
    consumer = consumer_of(app)
    for tp in sorted(recovery.standby_tps):
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - a partition being revoked has none
            continue
        if highwater is None:
            continue
        applied = recovery.standby_offsets.get(tp, -1)  # the last offset applied, -1: none
        yield tp.topic, tp.partition, max(highwater - (applied + 1), 0)


def table_sizes(app: faust.App) -> Iterator[tuple[str, int, int]]:
    """(table, estimated entries, bytes in SST files and memtables) over the partitions this
    worker serves: RocksDB's own estimates, cheap whatever the table's size (an overwritten or
    deleted key counts until RocksDB compacts it)."""
    for table in app.tables.values():
        store = table.data
        if not isinstance(store, RocksDBStore):
            continue
        entries = size = 0
        for db in store._dbs_for_actives():  # noqa: SLF001 - in streams/repairs/faust_contract.py
            entries += db.property_int_value("rocksdb.estimate-num-keys") or 0
            size += (db.property_int_value("rocksdb.total-sst-files-size") or 0) + \
                (db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)
        yield table.name, entries, size


def _index_sum(index: Any, field: str) -> tuple[int, int] | None:
    """(entries, sum of ``field`` over them; 1 where absent) of a worker's in-memory deadline
    index (``streams.stores.DeadlineIndex``), None before the worker has one."""
    if index is None:
        return None
    values = index.values()
    return len(values), sum(int(value.get(field, 1)) for value in values)


# The families ``WorkerCollector`` reads when scraped, by type (the global worker shows the
# pending ones, a region's worker the held ones).
SCRAPED = {
    "vprov_inputs_processed": "counter",
    "vprov_inputs_forwarded": "counter",
    "vprov_retries": "counter",
    "vprov_consumer_lag": "gauge",
    "vprov_standby_lag": "gauge",
    "vprov_table_entries": "gauge",
    "vprov_table_bytes": "gauge",
    "vprov_pending_rehomes": "gauge",
    "vprov_pending_queries": "gauge",
    "vprov_held_requests": "gauge",
}


def sample_names(metrics: Metrics) -> set[str]:
    """Every sample name a worker's /metrics can show (``vprov_`` ones): for dashboards and
    alert rules to be checked against."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    kinds = {family.name: family.type for family in metrics.registry.collect()
             if family.name.startswith("vprov_")}
    return {name + suffix for name, kind in {**kinds, **SCRAPED}.items()
            for suffix in suffixes[kind]}


class WorkerCollector:
    """What a scrape reads from the worker: lag, tables, waiting requests, shell counters."""

    def __init__(self, app: faust.App, shell: Any, metrics: Metrics) -> None:
        self.app = app
        self.shell = shell
        self.metrics = metrics
        self._last_waiting: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        region = self.metrics.region
        shell = self.shell
        for name, doc, value in (
            ("vprov_inputs_processed", "Inputs processed (decided and carried out).",
             shell.processed),
            ("vprov_inputs_forwarded", "Records forwarded to the partition owning their key.",
             shell.forwarded),
            ("vprov_retries", "Infrastructure retries (Kafka, Redis) while carrying out.",
             shell.retries),
        ):
            family = CounterMetricFamily(name, doc, labels=["region"])
            family.add_metric([region], value)
            yield family
        yield from self._lag(region)
        yield from self._tables(region)
        yield from self._waiting(region)

    def _lag(self, region: str) -> Iterable[Metric]:
        lag = GaugeMetricFamily("vprov_consumer_lag", "Records of an input partition after its "
                                "committed offset (highwater - committed).",
                                labels=["region", "topic", "partition"])
        try:
            for topic, partition, value in consumer_lag(self.app):
                lag.add_metric([region, topic, str(partition)], value)
        except Exception as exc:  # noqa: BLE001 - the consumer is not started yet
            log.debug("no consumer lag: %s", exc)
        yield lag
        standby = GaugeMetricFamily("vprov_standby_lag", "Changelog records a standby table "
                                    "partition has not applied yet (highwater - next offset).",
                                    labels=["region", "topic", "partition"])
        try:
            for topic, partition, value in standby_lag(self.app):
                standby.add_metric([region, topic, str(partition)], value)
        except Exception as exc:  # noqa: BLE001 - as above
            log.debug("no standby lag: %s", exc)
        yield standby

    def _tables(self, region: str) -> Iterable[Metric]:
        entries = GaugeMetricFamily("vprov_table_entries", "Entries of a table on this worker "
                                    "(RocksDB's estimate).", labels=["region", "table"])
        size = GaugeMetricFamily("vprov_table_bytes", "Bytes of a table's RocksDB files and "
                                 "memtables on this worker.", labels=["region", "table"])
        if not self.app.rebalancing:
            for name, count, nbytes in table_sizes(self.app):
                entries.add_metric([region, name], count)
                size.add_metric([region, name], nbytes)
        yield entries
        yield size

    def _waiting(self, region: str) -> Iterable[Metric]:
        """Read from the deadline indexes; while a rebalance moves them, the last values."""
        if self.app.rebalancing:
            yield from self._last_waiting
            return
        families: list[Metric] = []
        if self.metrics.region == GLOBAL:
            counts = _index_sum(self.metrics.deadline_index, "waiters") or (0, 0)
            rehomes = GaugeMetricFamily("vprov_pending_rehomes", "Vehicles waiting for their "
                                        "region to answer a rehome.", labels=["region"])
            rehomes.add_metric([region], counts[0])
            queries = GaugeMetricFamily("vprov_pending_queries", "Queries waiting for their "
                                        "vehicle's rehome.", labels=["region"])
            queries.add_metric([region], counts[1])
            families += [rehomes, queries]
        else:
            counts = _index_sum(self.metrics.deadline_index, "held") or (0, 0)
            held = GaugeMetricFamily("vprov_held_requests", "Device requests held: secondaries "
                                     "waiting for their primary, devices waiting to join.",
                                     labels=["region"])
            held.add_metric([region], counts[1])
            families.append(held)
        self._last_waiting = families
        yield from families


def install(app: faust.App, shell: Any, metrics: Metrics) -> None:
    """Serve ``metrics`` and the worker's scrape-time values at ``GET /metrics``."""
    metrics.registry.register(WorkerCollector(app, shell, metrics))

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> Any:
        return web.bytes(generate_latest(metrics.registry),
                         headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
