"""The load generator: simulated vehicles talking to the workers through the topics.

One thread, one producer, one consumer: the client shares the two cores with the broker, Redis
and the workers, so it does the least it can. A vehicle's primary sends PROVISION_QUERY; on a
successful answer both devices send DEVICE_PROVISION to the region (primary first), as the edge
software does. Message ids encode the vehicle (``<tag>-<index>-<q|d0|d1>``), so an answer is
matched without a lookup table.

Open loop (a load level): vehicle i starts at t0 + i/rate whatever the answers do, and its
latencies are measured from that intended start, so a late client or a slow pipeline shows up as
latency instead of silently lowering the offered load. Closed loop (the state phase): at most
``window`` vehicles in flight, as fast as the pipeline answers.

With a ``misrouted`` share, that share of the vehicles (chosen by ``misroute.is_misrouted``)
send their query and device requests to an explicit partition that does not own their key, as a
producer with another partitioner would; the others go through the murmur2 producer.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, TopicPartition
from misroute import is_misrouted, wrong_partition

from vprov import fleet
from vprov.avro import AvroSerde
from vprov.kafka_clients import consumer, producer
from vprov.progress import Progress
from vprov.registration_file import to_record
from vprov.topics import Catalogue

UNSET = math.nan


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds (NaN when empty)."""
    if not values:
        return UNSET
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q / 100) - 1))
    return ordered[rank] * 1000


def summary_ms(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) * 1000 if values else UNSET,
            "count": len(values)}


@dataclass
class PhaseResult:
    """What one phase measured; times are ``time.monotonic()`` seconds."""

    name: str
    rate: float | None  # offered vehicles/s; None for the closed-loop state phase
    vehicles: int
    started_at: float = 0.0
    send_end: float = 0.0  # intended start of the last vehicle (open loop) / its real start
    ended_at: float = 0.0
    completed: int = 0
    failed: int = 0
    unanswered: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    query_latency: list[float] = field(default_factory=list)
    device_latency: list[float] = field(default_factory=list)
    vehicle_latency: list[float] = field(default_factory=list)
    completion_times: list[float] = field(default_factory=list)
    # vehicle latency by start order, for the growth check (NaN: did not complete)
    vehicle_latency_in_order: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)  # actual - intended start (open loop)
    dead_letters: int = 0
    misrouted: float = 0.0  # share of vehicles whose requests went to a wrong partition
    misrouted_records: int = 0  # records the client sent to a partition not owning their key

    @property
    def window(self) -> float:
        """The sending window: V / rate for an open-loop level."""
        if self.rate:
            return self.vehicles / self.rate
        return max(self.send_end - self.started_at, 1e-9)

    @property
    def completed_in_window(self) -> int:
        limit = self.started_at + self.window
        return sum(1 for t in self.completion_times if t <= limit)

    @property
    def achieved_rate(self) -> float:
        """Vehicles completed per second while vehicles were being offered (open loop), or over
        the whole phase (closed loop)."""
        if self.rate:
            return self.completed_in_window / self.window
        span = (max(self.completion_times) - self.started_at) if self.completion_times else 0
        return self.completed / span if span > 0 else 0.0

    @property
    def drain_seconds(self) -> float:
        """From the end of sending until the last vehicle completed (or gave up)."""
        end = max(self.completion_times, default=self.started_at + self.window)
        return max(0.0, end - (self.started_at + self.window))

    @property
    def latency_growth(self) -> float:
        """Median vehicle latency of the last fifth of starts over that of the first fifth."""
        values = self.vehicle_latency_in_order
        fifth = max(1, len(values) // 5)
        first = [v for v in values[:fifth] if not math.isnan(v)]
        last = [v for v in values[-fifth:] if not math.isnan(v)]
        if not first or not last:
            return UNSET
        return percentile(last, 50) / max(percentile(first, 50), 1e-6)


class LoadGenerator:
    def __init__(self, bootstrap: str, catalogue: Catalogue, region: str, tag: str) -> None:
        self.catalogue = catalogue
        self.region = region
        self.tag = tag
        self.delivery_errors: Counter[str] = Counter()
        # Only failed deliveries call back: a callback per record would cost the client CPU.
        self.producer = producer(bootstrap, **{"delivery.report.only.error": True,
                                               "on_delivery": self._on_delivery})
        self.answer_topics = {catalogue.query_response, catalogue.device_response(region)}
        self.reader = self._answer_reader(bootstrap)
        self.phase: PhaseResult | None = None
        self._base = 0
        self._inflight: dict[int, fleet.SimVehicle] = {}
        self._partition_counts: dict[str, int] = {}
        self._misrouted: list[bool] = []

    # --- plumbing ---------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.delivery_errors[f"{msg.topic()}: {err.str()}"] += 1

    def _answer_reader(self, bootstrap: str) -> Any:
        """Assigned at the end of the answer topics before anything is sent: no answer is missed
        and none of an earlier phase is read twice."""
        reader = consumer(bootstrap, **{"enable.partition.eof": False, "fetch.wait.max.ms": 10,
                                        "fetch.min.bytes": 1})
        assignment = []
        for topic in [*self.answer_topics, self.catalogue.deadletter]:
            meta = reader.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                _, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assignment.append(TopicPartition(topic, p, high))
        reader.assign(assignment)
        return reader

    def _produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None
                 ) -> None:
        # no partition argument: the producer's murmur2 partitioner picks the key's owner
        explicit = {} if partition is None else {"partition": partition}
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, **explicit)
                return
            except BufferError:  # local queue full: serve it and try again
                self.producer.poll(0.01)

    def partitions(self, topic: str) -> int:
        if topic not in self._partition_counts:
            meta = self.producer.list_topics(topic, timeout=10).topics[topic]
            self._partition_counts[topic] = len(meta.partitions)
        return self._partition_counts[topic]

    def _partition(self, topic: str, key: bytes, i: int) -> int | None:
        """The explicit partition of vehicle ``i``'s record, or None for the owner."""
        if not self._misrouted[i]:
            return None
        assert self.phase is not None
        self.phase.misrouted_records += 1
        return wrong_partition(key, self._base + i, self.partitions(topic))

    def vehicle(self, index: int) -> fleet.SimVehicle:
        return fleet.make_vehicle(self.tag, index, self.region)

    def close(self) -> None:
        self.producer.flush(30)
        self.reader.close()

    # --- registration -----------------------------------------------------------------------

    def register(self, first: int, count: int, serde: AvroSerde) -> None:
        topic = self.catalogue.registrations
        progress = Progress("registering devices", total=count * 2)
        now_ms = int(time.time() * 1000)
        for index in range(first, first + count):
            for reg in fleet.registrations(self.vehicle(index)):
                value = serde.encode("DeviceRegistration", to_record(reg, now_ms), topic=topic)
                self._produce(topic, reg["device_id"].encode(), value)
            self.producer.poll(0)
            progress.advance(2)
        self.producer.flush(60)
        progress.close()

    # --- phases -----------------------------------------------------------------------------

    def run(self, phase: PhaseResult, first: int, *, rate: float | None = None,
            window: int = 0, timeout: float = 60.0,
            tick: Callable[[float, PhaseResult], None] | None = None) -> PhaseResult:
        """Start ``phase.vehicles`` vehicles from index ``first``: at ``rate`` per second (open
        loop) or keeping ``window`` in flight (closed loop). Returns once every vehicle completed
        or failed, or ``timeout`` seconds after the last start."""
        n = phase.vehicles
        self.phase = phase
        self._base = first
        self._intended = [UNSET] * n
        self._query_at = [UNSET] * n
        self._devices_at = [UNSET] * n
        self._answered = [0] * n  # bit 0 query, bit 1+k device k
        self._resolved = [False] * n
        self._misrouted = [is_misrouted(first + i, phase.misrouted) for i in range(n)]
        phase.vehicle_latency_in_order = [UNSET] * n
        self._open = 0
        self._done = 0
        label = f"{rate:g} vehicles/s" if rate else f"state load (window {window})"
        progress = Progress(label, total=n)
        self._progress = progress
        started = 0
        start = time.monotonic()
        phase.started_at = start
        last_tick = 0.0
        try:
            while True:
                now = time.monotonic()
                if rate:
                    while started < n and start + started / rate <= now:
                        self._start(started, start + started / rate, now)
                        started += 1
                else:
                    while started < n and self._open < window:
                        self._start(started, now, now)
                        started += 1
                if started == n and phase.send_end == 0.0:
                    phase.send_end = now
                self.producer.poll(0)
                if started == n and self._done == n:
                    break
                if started == n and now > phase.send_end + timeout:
                    break
                wait = 0.05
                if rate and started < n:
                    wait = min(wait, max(0.001, start + started / rate - now))
                batch = self.reader.consume(1000, wait)
                if batch:
                    received = time.monotonic()
                    for msg in batch:
                        self._on_message(msg, received)
                if tick is not None and now - last_tick >= 0.5:
                    last_tick = now
                    tick(now, phase)
        finally:
            progress.close()
        phase.ended_at = time.monotonic()
        phase.unanswered = n - self._done
        if phase.unanswered:
            phase.failures["no answer"] += phase.unanswered
        self._inflight.clear()
        self.phase = None
        return phase

    def _start(self, i: int, intended: float, now: float) -> None:
        index = self._base + i
        vehicle = self.vehicle(index)
        self._inflight[index] = vehicle
        self._intended[i] = intended
        self._open += 1
        if self.phase is not None and self.phase.rate:
            self.phase.send_lag.append(now - intended)
        raw = fleet.query(vehicle, f"{self.tag}-{index}-q", int(time.time()))
        key = vehicle.vin.encode()
        topic = self.catalogue.query
        self._produce(topic, key, raw, self._partition(topic, key, i))

    def _on_message(self, msg: Message, received: float) -> None:
        if msg.error() is not None or msg.value() is None:
            return
        topic = msg.topic()
        phase = self.phase
        assert phase is not None
        if topic not in self.answer_topics:
            phase.dead_letters += 1
            return
        try:
            doc = json.loads(msg.value())
            tag, number, kind = str(doc.get("correlation_id") or "").split("-")
            i = int(number) - self._base
        except ValueError:
            return
        if tag != self.tag or not 0 <= i < phase.vehicles or self._resolved[i]:
            return  # an earlier phase's straggler, a replayed answer, or someone else's
        ok = doc.get("status") == "SUCCESS"
        if kind == "q":
            bit = 1
        elif kind in ("d0", "d1"):
            bit = 2 << int(kind[1])
        else:
            return
        if self._answered[i] & bit:
            return  # a duplicate answer (at-least-once delivery)
        self._answered[i] |= bit
        if not ok:
            code = (doc.get("property_bag") or {}).get("error_code")
            phase.failures[f"{'query' if kind == 'q' else 'device'} {code}"] += 1
            self._resolve(i, received, failed=True)
            return
        if kind == "q":
            phase.query_latency.append(received - self._intended[i])
            self._query_at[i] = received
            self._provision(i)
        else:
            phase.device_latency.append(received - self._devices_at[i])
            if self._answered[i] == 0b111:
                self._resolve(i, received, failed=False)

    def _provision(self, i: int) -> None:
        index = self._base + i
        vehicle = self._inflight.get(index) or self.vehicle(index)
        topic = self.catalogue.device(self.region)
        key = vehicle.vin.encode()
        now_s = int(time.time())
        self._devices_at[i] = time.monotonic()
        for k, device in enumerate(vehicle.devices):  # the primary is device 0: first
            raw = fleet.device_provision(vehicle, device, f"{self.tag}-{index}-d{k}", now_s)
            self._produce(topic, key, raw, self._partition(topic, key, i))

    def _resolve(self, i: int, at: float, failed: bool) -> None:
        phase = self.phase
        assert phase is not None
        self._resolved[i] = True
        self._inflight.pop(self._base + i, None)
        self._open -= 1
        self._done += 1
        if failed:
            phase.failed += 1
        else:
            phase.completed += 1
            latency = at - self._intended[i]
            phase.vehicle_latency.append(latency)
            phase.vehicle_latency_in_order[i] = latency
            phase.completion_times.append(at)
        self._progress.advance(extra=f"in flight {self._open}, failed {phase.failed}")
