"""A fleet driven through both flows while the test does harm to the stack, and the invariants
every scenario checks afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.integration.conftest import Flow
from vprov import fleet


@dataclass
class VehicleRun:
    sim: fleet.SimVehicle
    query_id: str = ""
    device_ids: dict[str, str] = field(default_factory=dict)  # message id -> device id
    answered: set[str] = field(default_factory=set)


class FleetDriver:
    """Sends each vehicle's query at ``rate`` vehicles/s; when its answer arrives, sends every
    device's DEVICE_PROVISION (primary first). Like edge software that does not give up, it
    never re-sends: whatever the harm, the stack has to deliver."""

    def __init__(self, flow: Flow, vehicles: list[fleet.SimVehicle], rate: float) -> None:
        self.flow = flow
        self.runs = [VehicleRun(v) for v in vehicles]
        self.rate = rate
        self.by_query: dict[str, VehicleRun] = {}
        self.by_device_request: dict[str, VehicleRun] = {}
        self.answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop = threading.Event()
        self.sent_all = threading.Event()
        self.started_at = 0.0
        self.finished_at: float | None = None

    def start(self) -> FleetDriver:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    @property
    def progress(self) -> float:
        done = sum(1 for r in self.runs if self._done(r))
        return done / len(self.runs)

    def _done(self, run: VehicleRun) -> bool:
        return bool(run.device_ids) and set(run.device_ids) <= run.answered

    def _send_devices(self, run: VehicleRun) -> None:
        region = run.sim.region
        for device in run.sim.devices:
            message_id = str(uuid.uuid4())
            run.device_ids[message_id] = device.device_id
            self.by_device_request[message_id] = run
            raw = fleet.device_provision(run.sim, device, message_id, int(time.time()))
            self.flow.bus.send(self.flow.cat.device(region), run.sim.vin, raw)

    def _run(self) -> None:
        cat = self.flow.cat
        bus = self.flow.bus
        topics = [cat.query_response] + [cat.device_response(r) for r in {
            run.sim.region for run in self.runs}]
        positions = {t: len(bus.records(t)) for t in topics}
        pending = list(self.runs)
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            while pending and now >= next_send:
                run = pending.pop(0)
                run.query_id = str(uuid.uuid4())
                self.by_query[run.query_id] = run
                raw = fleet.query(run.sim, run.query_id, int(time.time()))
                bus.send(cat.query, run.sim.vin, raw)
                next_send += 1.0 / self.rate
            if not pending:
                self.sent_all.set()
            for topic in topics:
                records, positions[topic] = bus.since(topic, positions[topic])
                for record in records:
                    answer = record.value
                    if not isinstance(answer, dict):
                        continue
                    cid = answer.get("correlation_id")
                    if cid in self.by_query:
                        first = not self.answers[cid]
                        self.answers[cid].append(answer)
                        if first and answer.get("status") == "SUCCESS":
                            self._send_devices(self.by_query[cid])
                    elif cid in self.by_device_request:
                        self.answers[cid].append(answer)
                        self.by_device_request[cid].answered.add(cid)
            bus.producer.poll(0)
            if not pending and all(self._done(r) for r in self.runs):
                self.finished_at = time.monotonic()
                break
            time.sleep(0.02)
        bus.flush()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(5)

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at


def unique_events(flow: Flow, vins: set[str]) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, dict[str, Any]] = {}
    for rec in flow.bus.records(flow.cat.lifecycle, lambda r: r.key in vins):
        seen.setdefault(rec.value["event_id"], rec.value)
    per_vin: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in seen.values():
        per_vin[event["vin"]].append(event)
    return {vin: sorted(events, key=lambda e: e["sequence"]) for vin, events in per_vin.items()}


@dataclass
class Outcome:
    vehicles: int
    provisioned: int
    lost_answers: int
    conflicting_answers: int
    duplicate_events: int  # the same transition under two event ids: must be 0
    wrong_histories: list[str]
    lifecycle_records: int  # re-sent copies of an event (same event_id): allowed, de-duplicated

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_invariants(flow: Flow, driver: FleetDriver) -> Outcome:
    """Every vehicle provisioned, no answer lost, no request with two different answers, and the
    lifecycle topic, de-duplicated by event_id, holds exactly the expected transitions in order."""
    lost = 0
    conflicting = 0
    provisioned = 0
    for run in driver.runs:
        requests = [run.query_id, *run.device_ids]
        lost += sum(1 for r in requests if not driver.answers.get(r))
        for request in requests:
            answers = driver.answers.get(request, [])
            if any(a != answers[0] for a in answers):
                conflicting += 1
        if run.device_ids and all(
            driver.answers[m] and driver.answers[m][0]["status"] == "SUCCESS"
            for m in run.device_ids
        ):
            provisioned += 1
    vins = {run.sim.vin for run in driver.runs}
    events = unique_events(flow, vins)
    wrong = []
    repeated = 0
    for run in driver.runs:
        history = events.get(run.sim.vin, [])
        transitions = [(e["device_id"], e["state"]) for e in history]
        repeated += len(transitions) - len(set(transitions))
        expected = [(None, "REGIONAL")] + [
            (d.device_id, flow.bus.config.ecu_states[d.ecu_type]) for d in run.sim.devices]
        sequences = [e["sequence"] for e in history]
        if transitions != expected or sequences != list(range(1, len(expected) + 1)):
            wrong.append(f"{run.sim.vin}: {list(zip(transitions, sequences, strict=True))}")
    records = flow.bus.records(flow.cat.lifecycle, lambda r: r.key in vins)
    unique = sum(len(v) for v in events.values())
    return Outcome(vehicles=len(driver.runs), provisioned=provisioned, lost_answers=lost,
                   conflicting_answers=conflicting, duplicate_events=repeated,
                   wrong_histories=wrong[:10], lifecycle_records=len(records) - unique)
