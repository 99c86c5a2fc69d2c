"""The audit behind ``vprov replay``: each vehicle's lifecycle history, checked.

The topic is the audit trail (docs/spec.md 2.3): de-duplicated by ``event_id`` and ordered by
``sequence`` it must tell, per vehicle, every transition exactly once. ``--verify`` folds each
history through ``vprov.flows.lifecycle.transition``, the function the workers decide with, so the
audit
checks the real rules; then it compares the end state with the tables the workers serve.

Folding: vehicle-level events (``device_id`` null) move the vehicle, starting at REGISTERED;
device events move that device, starting at REGIONAL (a region registers every device REGIONAL
when the vehicle is rehomed there). A device event without a previous state and in REGIONAL is
a device joining the rehomed vehicle late; REMOVED is a device that left it. A vehicle
reinstated after its decommissioning (REGISTERED again) starts over with no devices.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from vprov import reach
from vprov.config import Config
from vprov.flows.lifecycle import JOINED, State, TransitionRefused, transition
from vprov.kafka.catalogue import Catalogue
from vprov.ops.history import event_line
from vprov.ops.lifecycle_events import LifecycleUnavailable, dedupe, histories, read_lifecycle
from vprov.ops.status import (
    WorkerViews,
    check_worker,
    jsonable,
    parse_region_urls,
    regional_vehicle,
)
from vprov.reach import DEFAULT_CONNECT_TIMEOUT, Unreachable

# --- folding (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    vin: str
    kind: str  # refused, gap, duplicate-sequence, previous-state, order, mismatch, missing
    detail: str

    def __str__(self) -> str:
        return f"{self.vin}  {self.kind}: {self.detail}"


@dataclass
class Folded:
    """A vehicle's state as its events tell it."""

    vin: str
    vehicle_state: str | None
    devices: dict[str, str] = field(default_factory=dict)
    last_sequence: int = 0
    last_vehicle_sequence: int = 0
    regions: set[str] = field(default_factory=set)  # partitions its device events came from
    problems: list[Problem] = field(default_factory=list)


def _step(folded: Folded, subject: str, current: str | None, event: dict[str, Any]) -> str | None:
    """Apply one event to ``current`` through the workers' state machine; report refusals."""
    seq = event["sequence"]
    target = event["state"]
    previous = event.get("previous_state")
    if current is not None and previous is not None and previous != current:
        folded.problems.append(Problem(
            folded.vin, "previous-state",
            f"#{seq} {subject}: the event says it left {previous}, the history has it {current}"))
    if current is None:  # partial history: trust the first event's own starting point
        return target
    try:
        return transition(current, target, device=subject != "vehicle").value
    except TransitionRefused:
        folded.problems.append(Problem(
            folded.vin, "refused",
            f"#{seq} {subject}: {current} -> {target} is not allowed (5000); state stays "
            f"{current}"))
        return current


def fold(vin: str, events: list[dict[str, Any]], from_start: bool = True) -> Folded:
    """Fold one vehicle's events (sorted by sequence, de-duplicated by event_id).

    ``from_start`` False (a history read ``--since`` a time): the first event of the vehicle
    and of each device is taken as it is, and no gap is reported before it.
    """
    folded = Folded(vin=vin, vehicle_state=State.REGISTERED.value if from_start else None)
    expected = 1 if from_start else None
    previous_id: dict[int, str] = {}
    for event in events:
        seq = event["sequence"]
        if expected is not None and seq > expected:
            missing = (f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}")
            folded.problems.append(Problem(vin, "gap", f"sequence {missing} missing before #{seq}"))
        elif expected is not None and seq < expected:
            folded.problems.append(Problem(
                vin, "duplicate-sequence",
                f"#{seq} used by events {previous_id.get(seq, '?')} and {event['event_id']}"))
        previous_id[seq] = event["event_id"]
        expected = max(expected or 0, seq) + 1
        folded.last_sequence = max(folded.last_sequence, seq)
        device_id = event.get("device_id")
        if device_id is None:
            folded.vehicle_state = _step(folded, "vehicle", folded.vehicle_state, event)
            folded.last_vehicle_sequence = seq
            if folded.vehicle_state == State.REGISTERED:  # reinstated: its devices start over
                folded.devices.clear()
                folded.regions.clear()
            continue
        folded.regions.add(event["partition"])
        if event.get("previous_state") is None and event["state"] == JOINED:
            # a device registered after the vehicle was rehomed joins it
            if folded.devices.get(device_id, State.REMOVED.value) != State.REMOVED:
                folded.problems.append(Problem(
                    vin, "order", f"#{seq} device {device_id} joins although it is part of the "
                    f"vehicle ({folded.devices[device_id]})"))
            elif from_start and folded.vehicle_state != State.REGIONAL:
                folded.problems.append(Problem(
                    vin, "order", f"#{seq} device {device_id} joins while the vehicle is "
                    f"{folded.vehicle_state}, not REGIONAL"))
            folded.devices[device_id] = JOINED.value
            continue
        if device_id in folded.devices:
            current: str | None = folded.devices[device_id]
        elif from_start or folded.vehicle_state is not None:
            if folded.vehicle_state != State.REGIONAL:
                folded.problems.append(Problem(
                    vin, "order", f"#{seq} device {device_id} changes while the vehicle is "
                    f"{folded.vehicle_state}, not REGIONAL"))
            current = State.REGIONAL.value
        else:
            current = None
        folded.devices[device_id] = _step(folded, f"device {device_id}", current, event) or ""
    return folded


def compare(folded: Folded, global_view: dict[str, Any] | None,
            regional_view: dict[str, Any] | None, region: str | None) -> list[Problem]:
    """Differences between the folded history and the tables' records of the vehicle.

    ``global_view``: the global table's record (None: absent); ``regional_view``: the home
    region's record (None: absent), ``region`` its code (None: the vehicle has no region).
    """
    vin = folded.vin
    problems: list[Problem] = []
    if global_view is None:
        problems.append(Problem(vin, "missing", "the global table has no record of the vehicle"))
    else:
        state = global_view.get("state")
        if folded.vehicle_state is not None and state != folded.vehicle_state:
            problems.append(Problem(vin, "mismatch", f"vehicle: events end in "
                                    f"{folded.vehicle_state}, the global table says {state}"))
        table_seq = global_view.get("sequence") or 0
        if table_seq > folded.last_vehicle_sequence:
            problems.append(Problem(vin, "gap", f"the global table is at sequence {table_seq}, "
                                    f"its last event is #{folded.last_vehicle_sequence}"))
    needs_region = folded.vehicle_state == State.REGIONAL or bool(folded.devices)
    if not needs_region:
        return problems
    where = f"region {region}" if region else "the region"
    if regional_view is None:
        problems.append(Problem(vin, "missing", f"{where} has no record of the vehicle"))
        return problems
    table_devices = {d: (v or {}).get("state") for d, v in regional_view.get("devices", {}).items()}
    for device_id in sorted(set(table_devices) | set(folded.devices)):
        told = folded.devices.get(device_id, State.REGIONAL.value)
        held = table_devices.get(device_id)
        if told == State.REMOVED:
            if held is not None:
                problems.append(Problem(vin, "mismatch", f"device {device_id}: events say it "
                                        f"left the vehicle, {where} table has it {held}"))
            continue
        if held is None:
            problems.append(Problem(vin, "mismatch", f"device {device_id}: events end in {told}, "
                                    f"{where} has no such device"))
        elif held != told:
            problems.append(Problem(vin, "mismatch", f"device {device_id}: events end in {told}, "
                                    f"{where} table says {held}"))
    table_seq = regional_view.get("sequence") or 0
    if table_seq > folded.last_sequence:
        problems.append(Problem(vin, "gap", f"{where} table is at sequence {table_seq}, "
                                f"the last event is #{folded.last_sequence}"))
    return problems


# --- the command ----------------------------------------------------------------------------------


def parse_since(text: str) -> int:
    """ISO-8601 to epoch milliseconds; a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected an ISO-8601 time such as "
                         "2026-01-01T12:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def format_history(vin: str, events: list[dict[str, Any]]) -> str:
    return "\n".join([f"{vin}  ({len(events)} events)",
                      *(event_line(e, indent="  ", cause=True) for e in events)])


def verify(config: Config, by_vin: dict[str, list[dict[str, Any]]], global_url: str,
           region_urls: dict[str, str], from_start: bool,
           timeout: float = DEFAULT_CONNECT_TIMEOUT) -> list[Problem]:
    """Fold every history and compare it with the workers' tables (HTTP views; ``timeout``:
    seconds per request)."""
    problems: list[Problem] = []
    global_views = WorkerViews(global_url, timeout=timeout)
    regional_views: dict[str, WorkerViews] = {}
    try:
        for vin, events in by_vin.items():
            folded = fold(vin, events, from_start=from_start)
            problems += folded.problems
            global_view = global_views.vehicle(vin)
            region = (global_view or {}).get("region") or next(iter(sorted(folded.regions)), None)
            regional_view = None
            if region and (folded.vehicle_state == State.REGIONAL or folded.devices):
                if region not in region_urls:
                    problems.append(Problem(vin, "missing", f"no URL for region {region}: pass "
                                            f"--region-url {region}=http://host:port"))
                    continue
                if region not in regional_views:
                    regional_views[region] = WorkerViews(region_urls[region], role=region,
                                                         timeout=timeout)
                regional_view = regional_vehicle(regional_views[region], vin, config)
            problems += compare(folded, global_view, regional_view, region)
    finally:
        global_views.close()
        for views in regional_views.values():
            views.close()
    return problems


def run(config: Config, vins: list[str] | None, since: str | None, do_verify: bool,
        global_url: str, region_pairs: list[str] | None, quiet: bool, as_json: bool,
        out: TextIO, err: TextIO, timeout: float = 60.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> int:
    """The ``vprov replay`` command; returns the exit code (3: Kafka, or with ``do_verify`` a
    worker, does not answer within ``connect_timeout``, or the topic cannot be read)."""
    try:
        since_ms = parse_since(since) if since else None
        region_urls = parse_region_urls(region_pairs, config)
        # before reading anything: Kafka, and for --verify the global worker (a region's
        # worker is asked once a history needs it)
        reach.kafka_of(config, connect_timeout)
        if do_verify:
            check_worker(global_url, connect_timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except Unreachable as exc:
        print(f"error: {exc}", file=err)
        return 3
    try:
        raw = read_lifecycle(config, vins=vins, since_ms=since_ms, timeout=timeout)
    except LifecycleUnavailable as exc:
        print(f"error: {exc}", file=err)
        return 3
    undecodable = [e["undecodable"] for e in raw if "undecodable" in e]
    events, repeats = dedupe(raw)
    by_vin = histories(events)
    if vins:
        for vin in vins:
            if vin not in by_vin:
                print(f"no lifecycle events for {vin} on {Catalogue(config).lifecycle}", file=err)
        by_vin = {v: by_vin[v] for v in vins if v in by_vin}
        if not by_vin:
            return 1
    problems: list[Problem] = []
    if do_verify:
        try:
            problems = verify(config, by_vin, global_url, region_urls,
                              from_start=since_ms is None,
                              timeout=connect_timeout)
        except Unreachable as exc:  # WorkerUnreachable
            print(f"error: {exc}", file=err)
            return 3
    summary = {
        "vehicles": len(by_vin),
        "events": len(events),
        "repeated_events_dropped": repeats,
        "undecodable_records": undecodable,
        "verified": do_verify,
        "problems": [asdict(p) for p in problems],
    }
    if as_json:
        doc = {**summary, "histories": by_vin if not quiet else {}}
        print(json.dumps(jsonable(doc), indent=2, sort_keys=True), file=out)
    else:
        if not quiet:
            for vin, history in by_vin.items():
                print(format_history(vin, history), file=out)
        for p in problems:
            print(f"PROBLEM {p}", file=out)
        for ref in undecodable:
            print(f"PROBLEM undecodable record at {ref}", file=out)
        verdict = ""
        if do_verify:
            verdict = f"; {len(problems)} problems" if problems else "; verified: no problems"
        print(f"{len(by_vin)} vehicles, {len(events)} events ({repeats} repeats dropped)"
              f"{verdict}", file=out)
    return 1 if problems or (do_verify and undecodable) else 0
