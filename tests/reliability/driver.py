"""A fleet driven through both flows while the test does harm to the stack, and the invariants
every scenario checks afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.integration.conftest import Flow
from tests.integration.harness import wait_until
from vprov.sim import fleet, fleet_driver


class FleetDriver(fleet_driver.FleetDriver):
    """Drives ``vehicles`` at ``rate`` vehicles/s in a background thread and keeps every answer
    to each request. Like edge software that does not give up, it never re-sends: whatever the
    harm, the stack has to deliver."""

    def __init__(self, flow: Flow, vehicles: list[fleet.SimVehicle], rate: float) -> None:
        super().__init__(flow.bus.config, fleet.run_tag(str(uuid.uuid4())),
                         progress_stream=io.StringIO())
        self.flow = flow
        self.rate = rate
        self.trips = self.plan(vehicles)
        self.answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # the longest wait for a first answer, per kind of request (query, device), in seconds
        self.longest: dict[str, float] = defaultdict(float)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started_at = 0.0
        self.finished_at: float | None = None

    def on_answer(self, request: fleet_driver.Request, doc: dict[str, Any], topic: str,
                  raw: bytes, now: float) -> None:
        answers = self.answers[request.message_id]
        answers.append(doc)
        if len(answers) == 1:
            self.longest[request.kind] = max(self.longest[request.kind], now - request.sent_at)

    def start(self) -> FleetDriver:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.drive(self.trips, rate=self.rate)
            if all(trip.ended for trip in self.trips):
                self.finished_at = time.monotonic()
        finally:
            self.close()

    @property
    def progress(self) -> float:
        return sum(1 for trip in self.trips if trip.ended) / len(self.trips)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        self.stop()
        self._thread.join(5)

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at


class TimedDriver(FleetDriver):
    """The suite's driver, with the harm the scenario did and every first answer's wait on one
    clock (seconds since the fleet started): which harm a stall follows, and how long after it
    the answers come again. ``started_wall`` ties it to the workers' and brokers' logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[float, str]] = []
        self.waits: list[tuple[float, float, str]] = []  # (sent at, wait, kind)
        self.started_wall = 0.0

    def start(self) -> TimedDriver:
        self.started_wall = time.time()
        super().start()
        return self

    def mark(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.started_at, 2), what))

    def on_answer(self, request: fleet_driver.Request, doc: dict[str, Any], topic: str,
                  raw: bytes, now: float) -> None:
        first = not self.answers.get(request.message_id)
        super().on_answer(request, doc, topic, raw, now)
        if first:
            self.waits.append((request.sent_at - self.started_at, now - request.sent_at,
                               request.kind))

    def timeline(self) -> dict[str, Any]:
        """The harm, and the five longest waits for a first answer as [sent at, wait, kind]."""
        slowest = sorted(self.waits, key=lambda w: -w[1])[:5]
        return {"started_at": time.strftime("%H:%M:%S", time.localtime(self.started_wall)),
                "harm": self.events,
                "slowest": [[round(sent, 2), round(wait, 2), kind]
                            for sent, wait, kind in slowest]}


@dataclass
class Outcome:
    vehicles: int
    provisioned: int
    lost_answers: int
    conflicting_answers: int
    duplicate_events: int  # the same transition under two event ids: must be 0
    wrong_histories: list[str]
    lifecycle_records: int  # re-sent copies of an event (same event_id): allowed, de-duplicated
    conflicts: list[str] = field(default_factory=list)  # the first requests answered two ways
    failures: dict[str, int] = field(default_factory=dict)  # trips that failed, by reason

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_invariants(flow: Flow, driver: FleetDriver) -> Outcome:
    """Every vehicle provisioned, no answer lost, no request with two different answers, and the
    lifecycle topic, de-duplicated by event_id, holds exactly the expected transitions in order."""
    # The driver reads the answers with a consumer of its own: give the bus's reader of the
    # lifecycle topic the time to come as far (what it then holds is checked, whatever it is).
    wanted = {trip.vehicle.vin: 1 + len(trip.vehicle.devices) for trip in driver.trips}

    def all_read() -> bool:
        read = flow.histories(set(wanted))
        return all(len(read.get(vin, ())) >= count for vin, count in wanted.items())

    with contextlib.suppress(TimeoutError):
        wait_until(all_read, timeout=30, what="every vehicle's lifecycle events read")
    lost = 0
    conflicting = 0
    conflicts: list[str] = []
    provisioned = 0
    for trip in driver.trips:
        requests = trip.sent or ["(query not sent)"]
        lost += sum(1 for r in requests if not driver.answers.get(r))
        for request in requests:
            answers = driver.answers.get(request, [])
            if any(a != answers[0] for a in answers):
                conflicting += 1
                if len(conflicts) < 10:
                    conflicts.append(f"{driver.requests[request].kind} {request}: " + " | ".join(
                        json.dumps(a, sort_keys=True)[:600] for a in answers))
        devices = [m for m in trip.sent if driver.requests[m].kind == "device"]
        if devices and all(driver.answers[m] and driver.answers[m][0]["status"] == "SUCCESS"
                           for m in devices):
            provisioned += 1
    vins = {trip.vehicle.vin for trip in driver.trips}
    events = flow.histories(vins)
    wrong = []
    repeated = 0
    for trip in driver.trips:
        run = trip.vehicle
        history = events.get(run.vin, [])
        transitions = [(e["device_id"], e["state"]) for e in history]
        repeated += len(transitions) - len(set(transitions))
        expected = [(None, "REGIONAL")] + [
            (d.device_id, flow.bus.config.ecu_states[d.ecu_type]) for d in run.devices]
        sequences = [e["sequence"] for e in history]
        if transitions != expected or sequences != list(range(1, len(expected) + 1)):
            wrong.append(f"{run.vin}: {list(zip(transitions, sequences, strict=True))}")
    records = flow.bus.records(flow.cat.lifecycle, lambda r: r.key in vins)
    unique = sum(len(v) for v in events.values())
    return Outcome(vehicles=len(driver.trips), provisioned=provisioned, lost_answers=lost,
                   conflicting_answers=conflicting, duplicate_events=repeated,
                   wrong_histories=wrong[:10], lifecycle_records=len(records) - unique,
                   conflicts=conflicts,
                   failures=dict(Counter(t.failure for t in driver.trips if t.failure)))
