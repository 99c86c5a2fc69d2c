"""The registration crash scenario: a fleet registered and queried before its index is sure to
be complete, the global worker killed in the query burst, the regional worker killed in the
device burst. Every device must still end provisioned (late registrations join their vehicle,
a request from a device not joined yet is held for ``flow.join_wait_seconds``).

A query is answered 13103 (system not registered) or 13111 (device not registered) when the
index has not seen the vehicle's registrations yet: that failure changes no state, so the
device asks again, as its edge software would, with a new message id, a bounded number of
times. Everything else must succeed the first time: devices do not re-send.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.integration.conftest import Flow, error_code
from tests.integration.harness import WorkerProcess
from tests.reliability.conftest import Deployment, restart_after_kill
from vprov.core.codes import ErrorCode
from vprov.sim import fleet

REGISTERED_VEHICLES = 120
QUERIED_VEHICLES = 60
# Seconds between registering the fleet and the first query, by run (alternating): none, so the
# index races the queries (re-sent queries, late joins), and a few seconds, as at an assembly
# line where registration comes a little before first boot.
REGISTRATION_LEADS = (0.0, 2.5)
# Pacing inside the bursts: the kill lands while the worker is processing the burst's head.
QUERY_GAP = 0.025
DEVICE_GAP = 0.02
# A query whose vehicle is not indexed yet fails without changing state: the device asks again.
RETRIABLE = {int(ErrorCode.SYSTEM_NOT_REGISTERED), int(ErrorCode.DEVICE_NOT_REGISTERED)}
MAX_QUERY_RETRIES = 5
RETRY_DELAY = 1.0
ANSWER_TIMEOUT = 300.0


class AnswerBook:
    """Every answer on ``topics`` from now on, by correlation id (repeats kept)."""

    def __init__(self, flow: Flow, topics: list[str]) -> None:
        self.bus = flow.bus
        self.positions = {t: len(self.bus.records(t)) for t in topics}
        self.by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.arrived: dict[str, float] = {}  # when the first answer was seen

    def poll(self) -> None:
        for topic, position in self.positions.items():
            records, self.positions[topic] = self.bus.since(topic, position)
            for record in records:
                if isinstance(record.value, dict) and record.value.get("correlation_id"):
                    cid = record.value["correlation_id"]
                    self.by_id[cid].append(record.value)
                    self.arrived.setdefault(cid, time.monotonic())

    def first(self, message_id: str) -> dict[str, Any] | None:
        answers = self.by_id.get(message_id)
        return answers[0] if answers else None

    def succeeded(self, message_id: str) -> bool:
        answer = self.first(message_id)
        return answer is not None and answer.get("status") == "SUCCESS"


class Restart(threading.Thread):
    """SIGKILL a worker now, then start it again in the background (the burst goes on while it
    is down) and keep the seconds until it was ready."""

    def __init__(self, proc: WorkerProcess) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.seconds: float | None = None
        self.error: BaseException | None = None
        proc.kill()

    def run(self) -> None:
        try:
            self.seconds = restart_after_kill(self.proc)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread in finish()
            self.error = exc

    def finish(self) -> float:
        self.join(240)
        if self.error is not None:
            raise self.error
        assert self.seconds is not None, f"{self.proc.name} did not come back"
        return self.seconds


def burst(items: list[Any], send: Callable[[Any], None], gap: float, flush: Callable[[], None],
          victim: WorkerProcess, kill_after: int) -> Restart:
    """Send ``items`` ``gap`` seconds apart; SIGKILL ``victim`` after ``kill_after`` of them
    are on the broker, and restart it while the rest go out."""
    restart: Restart | None = None
    for n, item in enumerate(items):
        if n == kill_after:
            flush()
            restart = Restart(victim)
            restart.start()
        send(item)
        time.sleep(gap)
    flush()
    if restart is None:
        restart = Restart(victim)
        restart.start()
    return restart


@dataclass
class QueryState:
    sim: fleet.SimVehicle
    message_ids: list[str] = field(default_factory=list)
    failures: list[int | None] = field(default_factory=list)
    done: bool = False
    succeeded: bool = False
    resend_at: float | None = None


def history_problem(sim: fleet.SimVehicle, events: list[dict[str, Any]],
                    ecu_states: dict[str, str]) -> str | None:
    """None when the vehicle's events (de-duplicated, ordered by sequence) are its REGIONAL, a
    join of a secondary that came late (optional), the primary's provisioning, and each
    secondary's after it and after its join; numbered 1, 2, ... without a gap."""
    got = [(e["device_id"], e["previous_state"], e["state"]) for e in events]
    where = {t: i for i, t in enumerate(got)}
    primary = sim.primary
    wanted = [(None, "REGISTERED", "REGIONAL"),
              (primary.device_id, "REGIONAL", ecu_states[primary.ecu_type])]
    ok = got[:1] == wanted[:1] and wanted[1] in where
    for device in sim.devices:
        if device.primary:
            continue
        provisioned = (device.device_id, "REGIONAL", ecu_states[device.ecu_type])
        joined = (device.device_id, None, "REGIONAL")
        wanted.append(provisioned)
        ok = ok and provisioned in where and where[provisioned] > where.get(wanted[1], -1)
        if joined in where:
            wanted.append(joined)
            ok = ok and where[joined] < where.get(provisioned, -1)
    ok = ok and len(got) == len(wanted) and set(got) == set(wanted)
    ok = ok and [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    if ok:
        return None
    return f"{sim.vin}: {[(*t, e['sequence']) for t, e in zip(got, events, strict=True)]}"


def watch_index(glob: WorkerProcess, vehicles: list[fleet.SimVehicle], until: float) -> int:
    """Until ``until``, look which of ``vehicles`` the global worker has indexed with all their
    devices (each looked up until it is); returns how many were by then."""
    waiting = {sim.system_id: len(sim.devices) for sim in vehicles}
    while True:
        for system_id, devices in list(waiting.items()):
            if time.monotonic() >= until:
                break
            try:
                status, entry = glob.get(f"/systems/{system_id}/")
            except OSError:
                continue
            if status == 200 and isinstance(entry, dict) \
                    and len(entry.get("devices") or {}) == devices:
                del waiting[system_id]
        left = until - time.monotonic()
        if left <= 0 or not waiting:
            break
        time.sleep(min(0.25, left))
    time.sleep(max(until - time.monotonic(), 0.0))
    return len(vehicles) - len(waiting)


@dataclass
class RunResult:
    figures: dict[str, Any]
    problems: list[str]


def run_once(dep: Deployment, flow: Flow, glob: WorkerProcess, na: WorkerProcess,
             index: int) -> RunResult:
    """One run on a fresh fleet; the figures of the run and what went wrong in it."""
    began = time.monotonic()
    rng = random.Random(f"registration-crash-{index}")
    cat = flow.cat
    bus = flow.bus
    book = AnswerBook(flow, [cat.query_response, cat.device_response("NA")])
    problems: list[str] = []

    # 1. the fleet's registrations, not waited for (only watched, to tell how far the index got)
    registered = dep.fleet(REGISTERED_VEHICLES)
    chosen = rng.sample(registered, QUERIED_VEHICLES)
    bus.register(registered)
    lead = REGISTRATION_LEADS[index % len(REGISTRATION_LEADS)]
    indexed = watch_index(glob, chosen, time.monotonic() + lead)

    # 2. one query per vehicle for half of them, the global worker killed a third of the way
    queries = {sim.vin: QueryState(sim) for sim in chosen}

    def send_query(state: QueryState) -> None:
        message_id = str(uuid.uuid4())
        state.message_ids.append(message_id)
        bus.send(cat.query, state.sim.vin, fleet.query(state.sim, message_id, int(time.time())))

    restart = burst(list(queries.values()), send_query, QUERY_GAP, bus.flush, glob,
                    kill_after=QUERIED_VEHICLES // 3)

    # 3. every query answered SUCCESS; a "not registered (yet)" failure is asked again
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline and not all(q.done for q in queries.values()):
        book.poll()
        now = time.monotonic()
        for state in queries.values():
            if state.done:
                continue
            if state.resend_at is not None:
                if now >= state.resend_at:
                    state.resend_at = None
                    send_query(state)
                    bus.flush()
                continue
            answer = book.first(state.message_ids[-1])
            if answer is None:
                continue
            if answer.get("status") == "SUCCESS":
                state.done = state.succeeded = True
                continue
            code = error_code(answer)
            state.failures.append(code)
            if code in RETRIABLE and len(state.message_ids) <= MAX_QUERY_RETRIES:
                state.resend_at = now + RETRY_DELAY
            else:
                state.done = True
                problems.append(f"query of {state.sim.vin} failed with {code}: "
                                f"{answer.get('property_bag')}")
        time.sleep(0.1)
    global_restart = restart.finish()
    unanswered_queries = [q.sim.vin for q in queries.values() if not q.done]
    if unanswered_queries:
        problems.append(f"{len(unanswered_queries)} queries without a final answer after "
                        f"{ANSWER_TIMEOUT:g}s: {unanswered_queries[:5]}")
    ready = [q.sim for q in queries.values() if q.succeeded]

    # 4. every device's DEVICE_PROVISION in one burst, the NA worker killed in the middle
    requests = [(sim, device) for sim in ready for device in sim.devices]
    rng.shuffle(requests)
    by_device: dict[str, tuple[fleet.SimVehicle, fleet.SimDevice]] = {}
    sent_at: dict[str, float] = {}

    def send_device(item: tuple[fleet.SimVehicle, fleet.SimDevice]) -> None:
        sim, device = item
        message_id = str(uuid.uuid4())
        by_device[message_id] = item
        sent_at[message_id] = time.monotonic()
        bus.send(cat.device("NA"), sim.vin,
                 fleet.device_provision(sim, device, message_id, int(time.time())))

    restart = burst(requests, send_device, DEVICE_GAP, bus.flush, na,
                    kill_after=len(requests) // 2)
    hold_allowance = dep.config.join_wait_seconds
    deadline = time.monotonic() + ANSWER_TIMEOUT + hold_allowance
    while time.monotonic() < deadline:
        book.poll()
        if all(book.by_id.get(m) for m in by_device):
            break
        time.sleep(0.1)
    regional_restart = restart.finish()

    # 5. the invariants
    vins = {sim.vin for sim in chosen}

    def events_complete() -> bool:
        events = flow.histories(vins)
        return all(len(events.get(sim.vin, [])) >= 1 + len(sim.devices) for sim in ready)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not events_complete():
        time.sleep(0.2)
    book.poll()
    all_requests = [m for q in queries.values() for m in q.message_ids] + list(by_device)
    lost = [m for m in all_requests if not book.by_id.get(m)]
    conflicting = [m for m in all_requests
                   if any(a != book.by_id[m][0] for a in book.by_id.get(m, []))]
    refused = [(by_device[m][1].device_id, error_code(book.first(m) or {})) for m in by_device
               if book.by_id.get(m) and not book.succeeded(m)]
    provisioned_devices = sum(1 for m in by_device if book.succeeded(m))
    done_devices = {(by_device[m][0].vin, by_device[m][1].device_id) for m in by_device
                    if book.succeeded(m)}
    expected_devices = sum(len(sim.devices) for sim in chosen)
    if lost:
        problems.append(f"{len(lost)} requests never answered: {lost[:5]}")
    if conflicting:
        problems.append(f"{len(conflicting)} requests with different answers: "
                        f"{[(m, book.by_id[m]) for m in conflicting[:2]]}")
    if refused:
        problems.append(f"{len(refused)} device requests refused: {refused[:5]}")
    if provisioned_devices != expected_devices:
        problems.append(f"{provisioned_devices} of {expected_devices} devices provisioned")

    events = flow.histories(vins | {sim.vin for sim in registered})
    unqueried = [vin for vin in events if vin not in vins]
    if unqueried:
        problems.append(f"events for vehicles never queried: {unqueried[:5]}")
    wrong = []
    duplicates = 0
    joins = 0
    late_joins = 0
    for sim in chosen:
        history = events.get(sim.vin, [])
        transitions = [(e["device_id"], e["previous_state"], e["state"]) for e in history]
        duplicates += len(transitions) - len(set(transitions))
        problem = history_problem(sim, history, flow.bus.config.ecu_states)
        if problem:
            wrong.append(problem)
        primary_at = next((e["sequence"] for e in history
                           if e["device_id"] == sim.primary.device_id), None)
        for event in history:
            if event["device_id"] and event["previous_state"] is None:
                joins += 1
                if primary_at is not None and event["sequence"] > primary_at:
                    late_joins += 1
    if duplicates:
        problems.append(f"{duplicates} transitions under two event ids")
    if wrong:
        problems.append(f"{len(wrong)} wrong histories: {wrong[:5]}")
    records = bus.records(cat.lifecycle, lambda r: r.key in vins)
    waits = [book.arrived[m] - sent_at[m] for m in by_device if m in book.arrived]
    retries = sum(len(q.message_ids) - 1 for q in queries.values())
    codes: dict[str, int] = defaultdict(int)
    for q in queries.values():
        for code in q.failures:
            codes[str(code)] += 1
    figures = {
        "run": index + 1,
        "registered_vehicles": len(registered),
        "registration_lead_seconds": lead,
        "vehicles": len(chosen),
        "provisioned": sum(1 for sim in chosen
                           if all((sim.vin, d.device_id) in done_devices for d in sim.devices)),
        "devices": expected_devices,
        "devices_provisioned": provisioned_devices,
        "indexed_before_queries": indexed,
        "query_retries": retries,
        "vehicles_retried": sum(1 for q in queries.values() if len(q.message_ids) > 1),
        "query_failure_codes": dict(codes),
        "joins": joins,
        "joins_after_primary_provisioned": late_joins,
        "lost_answers": len(lost),
        "conflicting_answers": len(conflicting),
        "duplicate_events": duplicates,
        "wrong_histories": len(wrong),
        "lifecycle_records": len(records) - sum(len(events.get(v, [])) for v in vins),
        "global_restart_seconds": round(global_restart, 2),
        "regional_restart_seconds": round(regional_restart, 2),
        "device_answer_seconds_max": round(max(waits), 1) if waits else None,
        "seconds": round(time.monotonic() - began, 1),
    }
    return RunResult(figures, problems)
