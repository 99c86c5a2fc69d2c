"""``vprov simulate``: a fleet's edge software, driving the workers through the topics.

Two phases. First every device of the fleet is registered (DeviceRegistration on the registration
topic) and the simulator waits, polling the global worker's ``/systems/{system_id}/`` view, until
each system is indexed with all its devices: registration happens before provisioning in the
real world too, and a query racing its own registration would measure the race, not the flow.

Then vehicles start at the offered rate, driven by ``vprov.sim.fleet_driver``: a vehicle's primary
sends PROVISION_QUERY; on the answer the vehicle follows ``iot_gateway_endpoint`` to its region
and every device sends DEVICE_PROVISION there (primary first, or shuffled). Every answer is
checked: status, correlation id, state. Some vehicles also send one invalid message (each must
get its own error answer or dead letter); some requests are sent a second time, with the same
message_id, after their answer arrived, as a device that missed it would (the second answer must
be byte-identical).
"""

from __future__ import annotations

import json
import random
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from vprov import reach
from vprov.config import Config
from vprov.core import envelope
from vprov.core.codes import ErrorCode
from vprov.flows.lifecycle import PROVISION_PENDING_REGIONAL
from vprov.kafka.avro import serde_from_config
from vprov.kafka.topic_admin import ensure_placed
from vprov.ops.status import DEFAULT_GLOBAL_URL, WorkerViews, check_worker
from vprov.reach import DEFAULT_CONNECT_TIMEOUT, Unreachable
from vprov.sim import fleet
from vprov.sim.fleet_driver import FleetDriver, Request, Trip, wait_indexed
from vprov.sim.latency import split_at, summary_ms
from vprov.sim.machine import CpuWatch, MachineCpu

# Invalid message kinds, with the code each must be answered with.
INVALID_KINDS: dict[str, ErrorCode] = {
    "not_json": ErrorCode.NOT_JSON,  # no device id to answer: a dead letter
    "bad_vin": ErrorCode.QUERY_VIN_INVALID,
    "chipsets_mismatch": ErrorCode.CHIPSETS_COUNT_MISMATCH,
    "wrong_type": ErrorCode.WRONG_MESSAGE_TYPE,
}
BAD_VIN = "1V0000000000000IO"  # I and O are outside the VIN alphabet
# The first seconds of a run are reported apart: a fresh deployment's first answers are where
# a cold start shows (connections, metadata, the first commits).
COLD_START_SECONDS = 10.0


class SimulationError(RuntimeError):
    """The simulation cannot run (bad option, workers unreachable); the message says why."""


@dataclass(frozen=True)
class SimOptions:
    vehicles: int = 100
    devices: tuple[str, ...] = ("TCU", "IVI")
    regions: tuple[str, ...] | None = None  # None: every configured region
    rate: float | None = None  # vehicles started per second; None: all at once
    invalid: float = 0.0
    duplicates: float = 0.0
    shuffle: bool = False
    timeout: float = 120.0
    global_url: str = DEFAULT_GLOBAL_URL
    seed: int | None = None
    via: str = "kafka"  # kafka: devices write to the topics; mqtt: to the IoT brokers


@dataclass
class Report:
    options: SimOptions
    tag: str
    vehicles: list[Trip]
    indexing_seconds: float
    elapsed_seconds: float
    latencies: dict[str, list[float]]
    invalid_sent: Counter[str]
    invalid_ok: Counter[str]
    invalid_problems: list[str]
    duplicates_sent: int
    duplicates_identical: int
    duplicate_problems: list[str]
    lifecycle_topic: str
    extra_answers: int = 0
    query_timeline: list[tuple[float, float]] = field(default_factory=list)  # sent at, latency
    machine_cpu: MachineCpu | None = None  # the machine's cores while the vehicles ran

    @property
    def done(self) -> list[Trip]:
        return [v for v in self.vehicles if v.ok]

    @property
    def failed(self) -> list[Trip]:
        return [v for v in self.vehicles if not v.ok]

    @property
    def failures_by_code(self) -> Counter[str]:
        return Counter(v.failure_code or "timeout" for v in self.failed)

    @property
    def ok(self) -> bool:
        return (not self.failed and not self.invalid_problems and not self.duplicate_problems
                and sum(self.invalid_ok.values()) == sum(self.invalid_sent.values())
                and self.duplicates_identical == self.duplicates_sent)

    @property
    def throughput(self) -> float:
        return len(self.done) / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def sample_vin(self) -> str | None:
        pick = self.failed or self.done
        return pick[0].vehicle.vin if pick else None

    def to_dict(self) -> dict[str, Any]:
        opts = self.options
        return {
            "ok": self.ok,
            "run": {"tag": self.tag, "vehicles": opts.vehicles, "devices": list(opts.devices),
                    "regions": list(opts.regions or ()), "rate": opts.rate,
                    "invalid": opts.invalid, "duplicates": opts.duplicates,
                    "shuffle": opts.shuffle, "seed": opts.seed, "via": opts.via},
            "vehicles_done": len(self.done),
            "vehicles_failed": len(self.failed),
            "failures_by_code": dict(self.failures_by_code),
            "failed_vehicles": [{"vin": v.vehicle.vin, "reason": v.failure or "timeout"}
                                for v in self.failed],
            "invalid": {"sent": dict(self.invalid_sent), "as_expected": dict(self.invalid_ok),
                        "problems": self.invalid_problems},
            "duplicates": {"sent": self.duplicates_sent, "identical": self.duplicates_identical,
                           "problems": self.duplicate_problems},
            "extra_answers": self.extra_answers,
            "indexing_seconds": round(self.indexing_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "throughput_vehicles_per_second": round(self.throughput, 2),
            "machine_cpu": self.machine_cpu.to_dict() if self.machine_cpu else None,
            "latency_ms": {name: summary_ms(values, empty=0.0, digits=1)
                           for name, values in self.latencies.items()},
            "query_latency_ms_by_phase": {
                "window_seconds": COLD_START_SECONDS,
                **{phase: summary_ms(values, empty=0.0, digits=1) for phase, values in
                   zip(("first", "after"), split_at(self.query_timeline, COLD_START_SECONDS),
                       strict=True)},
            },
            "vehicles": [{"vin": v.vehicle.vin, "region": v.region or v.vehicle.region,
                          "devices": [d.device_id for d in v.vehicle.devices], "ok": v.ok}
                         for v in self.vehicles],
            "lifecycle_topic": self.lifecycle_topic,
            "sample_vin": self.sample_vin,
        }

    def format_text(self) -> str:
        opts = self.options
        rate = f"{opts.rate:g}/s" if opts.rate else "unlimited"
        invalid_total = sum(self.invalid_sent.values())
        via = " over MQTT" if opts.via == "mqtt" else ""
        lines = [
            f"simulated {opts.vehicles} vehicles ({','.join(opts.devices)}){via} over "
            f"{','.join(opts.regions or ())}, rate {rate}, run {self.tag}",
            f"  vehicles done                    {len(self.done)}",
            f"  vehicles failed                  {len(self.failed)}",
            f"  invalid answered as expected     {sum(self.invalid_ok.values())}/{invalid_total}",
            f"  duplicates answered identically  {self.duplicates_identical}/"
            f"{self.duplicates_sent}",
            f"  throughput                       {self.throughput:.1f} vehicles/s "
            f"({self.elapsed_seconds:.1f} s; registration indexed in "
            f"{self.indexing_seconds:.1f} s)",
        ]
        if self.machine_cpu is not None:
            lines.append(f"  machine CPU meanwhile            {self.machine_cpu.describe()}")
        lines.append("  latency (ms)                  p50      p95      p99      max   count")
        names = {"query": "query -> answer", "device": "device -> answer",
                 "vehicle": "vehicle first -> last"}
        first, after = split_at(self.query_timeline, COLD_START_SECONDS)
        rows = [(label, self.latencies[key]) for key, label in names.items()]
        rows[1:1] = [(f"  first {COLD_START_SECONDS:g} s", first),
                     (f"  after {COLD_START_SECONDS:g} s", after)]
        for label, values in rows:
            p = summary_ms(values, empty=0.0, digits=1)
            lines.append(f"    {label:<22} {p['p50']:>8.1f} {p['p95']:>8.1f} {p['p99']:>8.1f} "
                         f"{p['max']:>8.1f} {p['count']:>7}")
        if self.failed:
            lines.append("  failures by error code:")
            for code, count in self.failures_by_code.most_common():
                lines.append(f"    {code:<10} {count}")
            for v in self.failed[:5]:
                lines.append(f"    e.g. {v.vehicle.vin}: {v.failure or 'timeout'}")
        for problem in (self.invalid_problems + self.duplicate_problems)[:10]:
            lines.append(f"  problem: {problem}")
        if invalid_total:
            kinds = ", ".join(f"{k} {self.invalid_ok[k]}/{n}" for k, n in
                              sorted(self.invalid_sent.items()))
            lines.append(f"  invalid by kind: {kinds}")
        vin = self.sample_vin
        lines.append("where to look next:")
        if vin:
            lines.append(f"  vprov status {vin}")
            lines.append(f"  vprov replay --vin {vin} --verify")
        lines.append(f"  lifecycle topic: {self.lifecycle_topic}")
        lines.append("result: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


class Simulator(FleetDriver):
    """Run one simulated fleet against running workers; ``run()`` returns the ``Report``."""

    def __init__(self, config: Config, options: SimOptions,
                 progress_stream: TextIO | None = None) -> None:
        regions = options.regions or tuple(config.regions)
        for what, names, known in (("region", regions, config.regions),
                                   ("ECU type", options.devices, config.ecu_states)):
            for name in names:
                if name not in known:
                    raise SimulationError(f"unknown {what} {name}; configured: "
                                          f"{', '.join(known)}")
        if not options.devices:
            raise SimulationError("--devices needs at least one ECU type")
        if options.vehicles < 1:
            raise SimulationError("--vehicles must be at least 1")
        for name in ("invalid", "duplicates"):
            if not 0.0 <= getattr(options, name) <= 1.0:
                raise SimulationError(f"--{name} is a fraction between 0 and 1")
        if options.rate is not None and options.rate <= 0:
            raise SimulationError("--rate must be greater than 0")
        if options.via not in ("kafka", "mqtt"):
            raise SimulationError("--via is kafka or mqtt")
        if options.via == "mqtt" and not config.edge.credential_secret:
            raise SimulationError("--via mqtt: the devices' credentials come from "
                                  "edge.credential_secret, which is not set; with the local "
                                  "brokers: eval \"$(EDGE=mqtt scripts/stack.sh env)\"")
        # VINs are unique per run whatever the seed: a second run must not meet the first's.
        tag = fleet.run_tag(f"{options.seed}-{time.time_ns()}-{uuid.uuid4()}")
        super().__init__(config, tag, shuffle=options.shuffle, rng=random.Random(options.seed),
                         progress_stream=progress_stream or sys.stderr)
        if options.via == "mqtt":
            self.use_mqtt()
        self.options = replace(options, regions=regions)
        self.serde = serde_from_config(config)
        self.invalid_kind: dict[Trip, str] = {}
        self.duplicate_targets: dict[Trip, set[str]] = {}  # "query" and/or device ids
        self.runs = self._plan()
        self.invalid: dict[str, tuple[str, str]] = {}  # message id -> (kind, answer topic)
        self.dead_letters: dict[bytes, Request] = {}
        self.first_answers: dict[str, bytes] = {}  # of the requests sent twice
        self.open: set[str] = set()  # message ids awaiting an answer (or a second one)
        self.latencies: dict[str, list[float]] = {"query": [], "device": [], "vehicle": []}
        self.query_timeline: list[tuple[float, float]] = []  # sent at, latency
        self.invalid_sent: Counter[str] = Counter()
        self.invalid_ok: Counter[str] = Counter()
        self.invalid_problems: list[str] = []
        self.duplicates_sent = 0
        self.duplicates_identical = 0
        self.duplicate_problems: list[str] = []
        self.extra_answers = 0

    def _plan(self) -> list[Trip]:
        opts = self.options
        regions = opts.regions or ()
        countries = {r: fleet.first_country(r, self.config) for r in regions}
        runs = self.plan(fleet.make_vehicle(self.tag, i + 1, regions[i % len(regions)],
                                            tuple(opts.devices),
                                            countries[regions[i % len(regions)]])
                         for i in range(opts.vehicles))
        picked = self.rng.sample(range(len(runs)), round(opts.invalid * len(runs)))
        kinds = list(INVALID_KINDS)
        for n, index in enumerate(picked):
            self.invalid_kind[runs[index]] = kinds[n % len(kinds)]
        # Over MQTT a query is not sent again: the device has left the global broker, which
        # refuses it once its primary is provisioned (its answer would find no one).
        again = [] if opts.via == "mqtt" else ["query"]
        targets = [(i, t) for i, run in enumerate(runs)
                   for t in [*again, *(d.device_id for d in run.vehicle.devices)]]
        for i, target in self.rng.sample(targets, round(opts.duplicates * len(targets))):
            self.duplicate_targets.setdefault(runs[i], set()).add(target)
        return runs

    # --- sending -------------------------------------------------------------------------------

    def send(self, trip: Trip, kind: str, topic: str, raw: bytes, message_id: str,
             device: fleet.SimDevice | None = None) -> Request:
        self.open.add(message_id)
        return super().send(trip, kind, topic, raw, message_id, device)

    def _send_invalid(self, trip: Trip, kind: str) -> None:
        sim = trip.vehicle
        now_s = int(time.time())
        message_id = f"{self.tag}-{trip.index}-x"
        self.invalid_sent[kind] += 1
        if kind == "not_json":  # no correlation id to answer: a dead letter
            raw = f"not json from {sim.vin} {message_id}".encode()
            self.invalid[message_id] = (kind, self.catalogue.deadletter)
            self.dead_letters[raw] = self.send(trip, "invalid", self.catalogue.query, raw,
                                               message_id)
            return
        region = trip.region or sim.region  # chipsets_mismatch: where the vehicle was sent
        topic, answers = self.catalogue.query, self.catalogue.query_response
        device = None
        if kind == "bad_vin":
            raw = fleet.query(sim, message_id, now_s, vin=BAD_VIN)
        elif kind == "wrong_type":
            raw = fleet.device_provision(sim, sim.primary, message_id, now_s)
        else:
            topic, answers = self.catalogue.device(region), self.catalogue.device_response(region)
            device = sim.devices[-1]
            raw = fleet.device_provision(sim, device, message_id, now_s,
                                         chipsets_count=len(device.chipsets) + 1)
        self.invalid[message_id] = (kind, answers)
        self.send(trip, "invalid", topic, raw, message_id, device)

    def on_start(self, trip: Trip, now: float) -> None:
        kind = self.invalid_kind.get(trip)
        if kind and kind != "chipsets_mismatch":
            self._send_invalid(trip, kind)

    def on_devices(self, trip: Trip) -> None:
        if self.invalid_kind.get(trip) == "chipsets_mismatch":
            self._send_invalid(trip, "chipsets_mismatch")

    # --- answers -------------------------------------------------------------------------------

    def check(self, request: Request, doc: dict[str, Any], topic: str) -> tuple[str, str] | None:
        problem = self._problem(request, doc, topic)
        trip = request.trip
        if request.kind == "query" and problem is not None and \
                self.invalid_kind.get(trip) == "chipsets_mismatch":
            self._send_invalid(trip, "chipsets_mismatch")  # still owed, to the requested region
        return problem

    def _problem(self, request: Request, doc: dict[str, Any], topic: str
                 ) -> tuple[str, str] | None:
        """Why a provisioning answer is not the expected success, as (reason, code)."""
        device = request.device
        expected_topic = (self.catalogue.query_response if device is None
                          else self.catalogue.device_response(request.trip.region or ""))
        if topic != expected_topic:
            return f"answered on {topic}, not {expected_topic}", "wrong topic"
        bag = doc.get("property_bag") or {}
        if doc.get("status") != envelope.STATUS_SUCCESS:
            code = bag.get("error_code")
            what = "query" if device is None else f"device {device.device_id}"
            return f"{what}: {code} {bag.get('error_message', '')}".strip(), str(code)
        body = doc.get("body") or {}
        sim = request.trip.vehicle
        if doc.get("vin") != sim.vin:
            return f"answer names vin {doc.get('vin')}", "bad answer"
        if device is None:
            if doc.get("device_id") != sim.primary.device_id:
                return f"query answer names device {doc.get('device_id')}", "bad answer"
            if body.get("lifecyclestate") != PROVISION_PENDING_REGIONAL:
                return f"query answer state {body.get('lifecyclestate')}", "bad answer"
            if body.get("iot_gateway_endpoint") not in self.endpoints:
                return (f"query answer endpoint {body.get('iot_gateway_endpoint')!r} is no "
                        "configured region's", "bad answer")
            return None
        expected = self.config.ecu_states[device.ecu_type]
        if doc.get("device_id") != device.device_id:
            return f"device answer names device {doc.get('device_id')}", "bad answer"
        if body.get("lifecycyclestate") != expected:
            return (f"device {device.device_id}: state {body.get('lifecycyclestate')}, expected "
                    f"{expected}", "bad answer")
        return None

    def _check_invalid(self, request: Request, doc: dict[str, Any], topic: str) -> None:
        kind, answer_topic = self.invalid[request.message_id]
        expected = int(INVALID_KINDS[kind])
        code = (doc.get("property_bag") or {}).get("error_code")
        if topic != answer_topic:
            self._invalid_answered(request, f"answered on {topic}")
        elif doc.get("status") != envelope.STATUS_FAIL or code != expected:
            self._invalid_answered(request, f"expected {expected}, got {doc.get('status')} {code}")
        else:
            self._invalid_answered(request, None)

    def _invalid_answered(self, request: Request, problem: str | None) -> None:
        kind = self.invalid[request.message_id][0]
        if problem is None:
            self.invalid_ok[kind] += 1
        else:
            self.invalid_problems.append(f"{request.trip.vehicle.vin} {kind}: {problem}")

    def on_answer(self, request: Request, doc: dict[str, Any], topic: str, raw: bytes,
                  now: float) -> None:
        message_id = request.message_id
        trip = request.trip
        if request.answers > 1:
            if message_id in self.first_answers and message_id in self.open:
                self.open.discard(message_id)
                if raw == self.first_answers[message_id]:
                    self.duplicates_identical += 1
                else:
                    self.duplicate_problems.append(
                        f"{trip.vehicle.vin} {request.kind} {message_id}: the second answer "
                        "differs from the first")
            else:
                self.extra_answers += 1
            return
        self.open.discard(message_id)
        if request.kind == "invalid":
            self._check_invalid(request, doc, topic)
            return
        self.latencies[request.kind].append(now - request.sent_at)
        if request.kind == "query":
            self.query_timeline.append((request.sent_at, now - request.sent_at))
        target = "query" if request.device is None else request.device.device_id
        if target in self.duplicate_targets.get(trip, ()):
            # A device that missed the answer sends the same request again.
            self.first_answers[message_id] = raw
            self.duplicates_sent += 1
            self.open.add(message_id)
            self.resend(request)

    def on_end(self, trip: Trip) -> None:
        if trip.failure is None and trip.ended_at is not None:
            self.latencies["vehicle"].append(trip.ended_at - trip.started_at)

    def on_other(self, topic: str, value: bytes) -> None:
        try:
            record = self.serde.decode("DeadLetter", value, topic=self.catalogue.deadletter)
        except Exception:  # noqa: BLE001 - someone else's record on a shared topic
            return
        request = self.dead_letters.pop(bytes(record["payload"]), None)
        if request is None:
            return
        self.open.discard(request.message_id)
        request.answers += 1
        expected = int(INVALID_KINDS[self.invalid[request.message_id][0]])
        if record["error_code"] != expected or record["source_topic"] != request.topic:
            self._invalid_answered(request, f"dead letter with {record['error_code']} from "
                                   f"{record['source_topic']}, expected {expected} from "
                                   f"{request.topic}")
        else:
            self._invalid_answered(request, None)

    def outstanding(self) -> bool:
        return bool(self.open)

    def trip_outstanding(self, trip: Trip) -> bool:
        return any(message_id in self.open for message_id in trip.sent)

    # --- phases --------------------------------------------------------------------------------

    def run(self) -> Report:
        began = time.monotonic()
        deadline = began + self.options.timeout
        machine_cpu: MachineCpu | None = None
        ensure_placed(self.config, self.catalogue.external())
        try:
            self.listen()
        except RuntimeError as exc:
            raise SimulationError(str(exc)) from None
        vehicles = [trip.vehicle for trip in self.runs]
        try:
            self.register(vehicles, self.serde, total=sum(len(v.devices) for v in vehicles))
            views = WorkerViews(self.options.global_url)
            try:
                indexed = wait_indexed(views, vehicles, deadline, self.progress_stream)
            finally:
                views.close()
            indexing = time.monotonic() - began
            started_at = time.monotonic()
            if indexed:
                watch = CpuWatch()
                self.drive(self.runs, rate=self.options.rate, until=deadline)
                machine_cpu = watch.stop()
            else:
                for trip in self.runs:
                    trip.failure, trip.failure_code = ("registration not indexed in time",
                                                       "not indexed")
            elapsed = time.monotonic() - started_at
        finally:
            self.close()
        for trip in self.runs:
            if not trip.ended and trip.failure is None:
                stage = "no answer to the query" if trip.region is None else \
                    "no answer from every device"
                trip.failure, trip.failure_code = f"timeout: {stage}", "timeout"
        for message_id in sorted(self.open):
            request = self.requests[message_id]
            vin = request.trip.vehicle.vin
            if request.kind == "invalid":
                self.invalid_problems.append(f"{vin} {self.invalid[message_id][0]}: no answer")
            elif request.answers:
                self.duplicate_problems.append(f"{vin} {request.kind}: no second answer to the "
                                               "duplicate")
        self.invalid_problems += [f"delivery failed: {e}" for e in list(self.delivery_errors)[:10]]
        last = max((r.last_answer_at for r in self.runs if r.last_answer_at), default=None)
        if last is not None:
            elapsed = last - started_at
        return Report(self.options, self.tag, self.runs, indexing, elapsed, self.latencies,
                      self.invalid_sent, self.invalid_ok, self.invalid_problems,
                      self.duplicates_sent, self.duplicates_identical, self.duplicate_problems,
                      self.catalogue.lifecycle, self.extra_answers, self.query_timeline,
                      machine_cpu)


def check_reachable(config: Config, options: SimOptions, timeout: float) -> None:
    """``Unreachable`` unless Kafka, Redis (the workers need it to answer) and the global
    worker each answer within ``timeout``."""
    reach.clusters_of(config, timeout)
    reach.redis_of(config, timeout)
    check_worker(options.global_url, timeout)
    if options.via == "mqtt":
        from vprov.core.outputs import GLOBAL_SCOPE
        from vprov.edge.mqtt import scope_endpoint

        for scope in (GLOBAL_SCOPE, *(options.regions or config.regions)):
            endpoint = scope_endpoint(config, scope)
            try:
                socket.create_connection((endpoint.host, endpoint.port), timeout=timeout).close()
            except OSError as exc:
                setting = "VPROV_EDGE_GLOBAL_ENDPOINT" if scope == GLOBAL_SCOPE else \
                    f"VPROV_GATEWAY_ENDPOINT_{scope}"
                raise Unreachable(f"the {scope} MQTT broker", str(endpoint), setting,
                                  reach.os_reason(exc, timeout, endpoint.host),
                                  "start the brokers with EDGE=mqtt scripts/stack.sh up") from None


def run_cli(config: Config, options: SimOptions, json_path: str | None, out: TextIO,
            err: TextIO, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> int:
    """The ``vprov simulate`` command; returns the exit code (2: a bad option, 3: Kafka, Redis
    or the global worker does not answer within ``connect_timeout``)."""
    try:
        simulator = Simulator(config, options, progress_stream=err)  # checks the options
        check_reachable(config, options, connect_timeout)  # before anything is sent
    except (SimulationError, ValueError) as exc:  # ValueError: --global-url is no http URL
        print(f"error: {exc}", file=err)
        return 2
    except Unreachable as exc:
        print(f"error: {exc}", file=err)
        return 3
    try:
        report = simulator.run()
    except (SimulationError, Unreachable) as exc:  # a worker lost on the way: WorkerUnreachable
        print(f"error: {exc}", file=err)
        return 3 if isinstance(exc, Unreachable) else 2
    print(report.format_text(), file=out)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=2, sort_keys=True)
    return 0 if report.ok else 1
