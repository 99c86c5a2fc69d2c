"""The load generator: the fleet driver (``vprov.sim.fleet_driver``) with a phase's figures.

A load level is open loop (latencies from each vehicle's due start), the state phase closed loop
(``window`` vehicles in flight). With a ``misrouted`` share, that share of the vehicles (chosen by
``misroute.is_misrouted``) send their records to a partition that does not own their key, as a
producer with another partitioner would; the others go through the murmur2 producer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.misroute import is_misrouted, wrong_partition
from vprov.config import Config
from vprov.core import envelope
from vprov.kafka.avro import AvroSerde
from vprov.sim import fleet
from vprov.sim.fleet_driver import FleetDriver, Request, Trip
from vprov.sim.latency import summary_ms

__all__ = ["LoadGenerator", "PhaseResult", "summary_ms"]



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


class LoadGenerator(FleetDriver):
    """The fleet driver, recording each phase's figures in a ``PhaseResult``."""

    def __init__(self, config: Config, region: str, tag: str) -> None:
        super().__init__(config, tag)
        self.forget_ended = True
        self.region = region
        self.phase: PhaseResult | None = None
        self._first = 0
        self._partition_counts: dict[str, int] = {}
        self._misrouted: list[bool] = []

    def vehicle(self, index: int) -> fleet.SimVehicle:
        return fleet.make_vehicle(self.tag, index, self.region,
                                  country=fleet.first_country(self.region, self.config))

    def partitions(self, topic: str) -> int:
        if topic not in self._partition_counts:
            meta = self.producer.list_topics(topic, timeout=10).topics[topic]
            self._partition_counts[topic] = len(meta.partitions)
        return self._partition_counts[topic]

    def partition_for(self, trip: Trip, topic: str, key: bytes) -> int | None:
        if not self._misrouted[trip.index - self._first]:
            return None
        assert self.phase is not None
        self.phase.misrouted_records += 1
        return wrong_partition(key, trip.index, self.partitions(topic))

    def on_start(self, trip: Trip, now: float) -> None:
        if self.phase is not None and self.phase.rate:
            self.phase.send_lag.append(now - trip.due_at)

    def on_answer(self, request: Request, doc: dict[str, Any], topic: str, raw: bytes,
                  now: float) -> None:
        trip = request.trip
        if request.answers > 1 or request.message_id not in trip.waiting or trip.ended:
            return
        if doc.get("status") != envelope.STATUS_SUCCESS:
            return
        assert self.phase is not None
        if request.kind == "query":
            self.phase.query_latency.append(now - trip.due_at)
        else:
            self.phase.device_latency.append(now - trip.devices_at)

    def on_end(self, trip: Trip) -> None:
        phase = self.phase
        assert phase is not None and trip.ended_at is not None
        if trip.failure is not None:
            phase.failed += 1
            phase.failures[trip.failure] += 1
            return
        phase.completed += 1
        latency = trip.ended_at - trip.due_at
        phase.vehicle_latency.append(latency)
        phase.completion_times.append(trip.ended_at)

    def on_other(self, topic: str, value: bytes) -> None:
        if self.phase is not None:
            self.phase.dead_letters += 1

    def register_range(self, first: int, count: int, serde: AvroSerde) -> None:
        self.register((self.vehicle(i) for i in range(first, first + count)), serde,
                      total=count * 2)

    def run(self, phase: PhaseResult, first: int, *, rate: float | None = None,
            window: int = 0, timeout: float = 60.0,
            tick: Callable[[float, PhaseResult], None] | None = None) -> PhaseResult:
        """Start ``phase.vehicles`` vehicles from index ``first``: at ``rate`` per second (open
        loop) or keeping ``window`` in flight (closed loop). Returns once every vehicle completed
        or failed, or ``timeout`` seconds after the last start."""
        n = phase.vehicles
        self.phase = phase
        self._first = first
        self._misrouted = [is_misrouted(first + i, phase.misrouted) for i in range(n)]
        trips = self.plan((self.vehicle(first + i) for i in range(n)), first)
        label = f"{rate:g} vehicles/s" if rate else f"state load (window {window})"
        phase.started_at = time.monotonic()
        self.drive(trips, rate=rate, window=None if rate else window, grace=timeout,
                   label=label, tick=(lambda now: tick(now, phase)) if tick else None)
        phase.send_end = self.all_started_at or time.monotonic()
        phase.ended_at = time.monotonic()
        phase.unanswered = sum(1 for trip in trips if not trip.ended)
        if phase.unanswered:
            phase.failures["no answer"] += phase.unanswered
        self.requests.clear()  # an earlier phase's stragglers are no one's answers
        self.phase = None
        return phase
