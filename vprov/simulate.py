"""``vprov simulate``: a fleet's edge software, driving the workers through the topics.

Two phases. First every device of the fleet is registered (DeviceRegistration on the registration
topic) and the simulator waits, polling the global worker's ``/systems/{system_id}/`` view, until
each system is indexed with all its devices: registration happens before provisioning in the
real world too, and a query racing its own registration would measure the race, not the flow.

Then vehicles start at the offered rate. A vehicle's primary sends PROVISION_QUERY; on the answer
the vehicle follows ``iot_gateway_endpoint`` to its region and every device sends
DEVICE_PROVISION there (primary first, or shuffled). Every answer is checked: status, correlation
id, state. Some vehicles also send one invalid message (each must get its own error answer or
dead letter); some requests are sent a second time, with the same message_id, after their answer
arrived, as a device that missed it would (the second answer must be byte-identical).

One thread: produce at the offered rate, poll the answers, react. Answers are read by a consumer
assigned at the response topics' end offsets before anything is sent, so none is missed and no
older run's answer is read.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException, Message

from vprov import envelope, fleet, reach
from vprov.admin import ensure_placed
from vprov.avro import serde_from_config
from vprov.codes import ErrorCode
from vprov.config import Cluster, Config
from vprov.kafka_clients import ClusterProducer, ClusterReader
from vprov.lifecycle import PROVISION_PENDING_REGIONAL
from vprov.progress import Progress
from vprov.reach import DEFAULT_CONNECT_TIMEOUT, Unreachable
from vprov.registration_file import to_record
from vprov.status import DEFAULT_GLOBAL_URL, WorkerViews, check_worker
from vprov.topics import Catalogue

# Invalid message kinds, with the code each must be answered with.
INVALID_KINDS: dict[str, ErrorCode] = {
    "not_json": ErrorCode.NOT_JSON,  # no device id to answer: a dead letter
    "bad_vin": ErrorCode.QUERY_VIN_INVALID,
    "chipsets_mismatch": ErrorCode.CHIPSETS_COUNT_MISMATCH,
    "wrong_type": ErrorCode.WRONG_MESSAGE_TYPE,
}
BAD_VIN = "1V0000000000000IO"  # I and O are outside the VIN alphabet
INDEX_POLL_SECONDS = 0.05


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


@dataclass
class VehicleRun:
    sim: fleet.SimVehicle
    invalid_kind: str | None = None
    duplicate_targets: set[str] = field(default_factory=set)  # "query" and/or device ids
    started_at: float | None = None
    finished_at: float | None = None
    region: str | None = None  # home region, from the query answer's endpoint
    waiting: set[str] = field(default_factory=set)  # message ids of provisioning requests
    failure: str | None = None
    failure_code: str | None = None
    last_answer_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass
class Sent:
    """One request awaiting its answer (and, when duplicated, its second answer)."""

    message_id: str
    run: VehicleRun
    kind: str  # query, device, invalid
    topic: str  # where the request went
    answer_topic: str
    raw: bytes
    sent_at: float
    device: fleet.SimDevice | None = None
    invalid_kind: str | None = None
    duplicate: bool = False
    answer: bytes | None = None
    duplicate_sent_at: float | None = None


@dataclass
class Report:
    options: SimOptions
    tag: str
    vehicles: list[VehicleRun]
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

    @property
    def done(self) -> list[VehicleRun]:
        return [v for v in self.vehicles if v.finished and v.failure is None]

    @property
    def failed(self) -> list[VehicleRun]:
        return [v for v in self.vehicles if v.failure is not None or not v.finished]

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
        return pick[0].sim.vin if pick else None

    def to_dict(self) -> dict[str, Any]:
        opts = self.options
        return {
            "ok": self.ok,
            "run": {"tag": self.tag, "vehicles": opts.vehicles, "devices": list(opts.devices),
                    "regions": list(opts.regions or ()), "rate": opts.rate,
                    "invalid": opts.invalid, "duplicates": opts.duplicates,
                    "shuffle": opts.shuffle, "seed": opts.seed},
            "vehicles_done": len(self.done),
            "vehicles_failed": len(self.failed),
            "failures_by_code": dict(self.failures_by_code),
            "failed_vehicles": [{"vin": v.sim.vin, "reason": v.failure or "timeout"}
                                for v in self.failed],
            "invalid": {"sent": dict(self.invalid_sent), "as_expected": dict(self.invalid_ok),
                        "problems": self.invalid_problems},
            "duplicates": {"sent": self.duplicates_sent, "identical": self.duplicates_identical,
                           "problems": self.duplicate_problems},
            "extra_answers": self.extra_answers,
            "indexing_seconds": round(self.indexing_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "throughput_vehicles_per_second": round(self.throughput, 2),
            "latency_ms": {name: percentiles(values) for name, values in self.latencies.items()},
            "vehicles": [{"vin": v.sim.vin, "region": v.region or v.sim.region,
                          "devices": [d.device_id for d in v.sim.devices],
                          "ok": v.finished and v.failure is None} for v in self.vehicles],
            "lifecycle_topic": self.lifecycle_topic,
            "sample_vin": self.sample_vin,
        }

    def format_text(self) -> str:
        opts = self.options
        rate = f"{opts.rate:g}/s" if opts.rate else "unlimited"
        invalid_total = sum(self.invalid_sent.values())
        lines = [
            f"simulated {opts.vehicles} vehicles ({','.join(opts.devices)}) over "
            f"{','.join(opts.regions or ())}, rate {rate}, run {self.tag}",
            f"  vehicles done                    {len(self.done)}",
            f"  vehicles failed                  {len(self.failed)}",
            f"  invalid answered as expected     {sum(self.invalid_ok.values())}/{invalid_total}",
            f"  duplicates answered identically  {self.duplicates_identical}/"
            f"{self.duplicates_sent}",
            f"  throughput                       {self.throughput:.1f} vehicles/s "
            f"({self.elapsed_seconds:.1f} s; registration indexed in "
            f"{self.indexing_seconds:.1f} s)",
            "  latency (ms)                  p50      p95      p99      max   count",
        ]
        names = {"query": "query -> answer", "device": "device -> answer",
                 "vehicle": "vehicle first -> last"}
        for key, label in names.items():
            p = percentiles(self.latencies[key])
            lines.append(f"    {label:<22} {p['p50']:>8.1f} {p['p95']:>8.1f} {p['p99']:>8.1f} "
                         f"{p['max']:>8.1f} {p['count']:>7}")
        if self.failed:
            lines.append("  failures by error code:")
            for code, count in self.failures_by_code.most_common():
                lines.append(f"    {code:<10} {count}")
            for v in self.failed[:5]:
                lines.append(f"    e.g. {v.sim.vin}: {v.failure or 'timeout'}")
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


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank p50/p95/p99/max in milliseconds (values in seconds)."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "count": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))
        return round(ordered[int(index)] * 1000, 1)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99),
            "max": round(ordered[-1] * 1000, 1), "count": len(ordered)}


class Simulator:
    """Run one simulated fleet against running workers; ``run()`` returns the ``Report``."""

    def __init__(self, config: Config, options: SimOptions,
                 progress_stream: TextIO | None = None) -> None:
        regions = options.regions or tuple(config.regions)
        for region in regions:
            if region not in config.regions:
                raise SimulationError(f"unknown region {region}; configured: "
                                      f"{', '.join(config.regions)}")
        for ecu in options.devices:
            if ecu not in config.ecu_states:
                raise SimulationError(f"unknown ECU type {ecu}; configured: "
                                      f"{', '.join(config.ecu_states)}")
        if not options.devices:
            raise SimulationError("--devices needs at least one ECU type")
        if options.vehicles < 1:
            raise SimulationError("--vehicles must be at least 1")
        for name in ("invalid", "duplicates"):
            if not 0.0 <= getattr(options, name) <= 1.0:
                raise SimulationError(f"--{name} is a fraction between 0 and 1")
        if options.rate is not None and options.rate <= 0:
            raise SimulationError("--rate must be greater than 0")
        self.config = config
        self.options = replace(options, regions=regions)
        self.catalogue = Catalogue(config)
        self.serde = serde_from_config(config)
        self.rng = random.Random(options.seed)
        self.progress_stream = progress_stream or sys.stderr
        # VINs are unique per run whatever the seed: a second run must not meet the first's.
        self.tag = fleet.run_tag(f"{options.seed}-{time.time_ns()}-{uuid.uuid4()}")
        self.endpoints = {r.gateway_endpoint: r.code for r in config.regions.values()}
        self.runs = self._plan()
        self.by_vin = {run.sim.vin: run for run in self.runs}
        self.failed_count = 0
        self.sent: dict[str, Sent] = {}
        self.dead_letters: dict[bytes, Sent] = {}
        self.latencies: dict[str, list[float]] = {"query": [], "device": [], "vehicle": []}
        self.invalid_sent: Counter[str] = Counter()
        self.invalid_ok: Counter[str] = Counter()
        self.invalid_problems: list[str] = []
        self.duplicates_sent = 0
        self.duplicates_identical = 0
        self.duplicate_problems: list[str] = []
        self.extra_answers = 0
        self.delivery_errors: list[str] = []
        self.open: set[str] = set()  # message ids (and dead-letter payload ids) awaiting answers
        self.producer = ClusterProducer(self.catalogue)
        self.progress: Progress | None = None

    # --- plan ----------------------------------------------------------------------------------

    def _plan(self) -> list[VehicleRun]:
        opts = self.options
        regions = opts.regions or ()
        runs = [VehicleRun(fleet.make_vehicle(self.tag, i + 1, regions[i % len(regions)],
                                              tuple(opts.devices)))
                for i in range(opts.vehicles)]
        picked = self.rng.sample(range(len(runs)), round(opts.invalid * len(runs)))
        kinds = list(INVALID_KINDS)
        for n, index in enumerate(picked):
            runs[index].invalid_kind = kinds[n % len(kinds)]
        targets = [(i, t) for i, run in enumerate(runs)
                   for t in ["query", *(d.device_id for d in run.sim.devices)]]
        for i, target in self.rng.sample(targets, round(opts.duplicates * len(targets))):
            runs[i].duplicate_targets.add(target)
        return runs

    # --- sending -------------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.delivery_errors.append(f"{msg.topic()}: {err}")
            run = self.by_vin.get((msg.key() or b"").decode(errors="replace"))
            if run is not None:
                self._fail(run, f"not delivered to {msg.topic()}: {err}", "delivery")

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value,
                                      on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let it drain
                self.producer.poll(0.05)

    def _send(self, run: VehicleRun, kind: str, topic: str, answer_topic: str, raw: bytes,
              message_id: str, device: fleet.SimDevice | None = None,
              invalid_kind: str | None = None, duplicate: bool = False) -> Sent:
        now = time.monotonic()
        sent = Sent(message_id, run, kind, topic, answer_topic, raw, now, device, invalid_kind,
                    duplicate)
        self.sent[message_id] = sent
        self.open.add(message_id)
        if run.started_at is None:
            run.started_at = now
        self._produce(topic, run.sim.vin, raw)
        return sent

    def _send_invalid(self, run: VehicleRun, kind: str) -> None:
        sim = run.sim
        now_s = int(time.time())
        message_id = str(uuid.uuid4())
        self.invalid_sent[kind] += 1
        if kind == "not_json":
            raw = f"not json from {sim.vin} {message_id}".encode()
            sent = Sent(message_id, run, "invalid", self.catalogue.query,
                        self.catalogue.deadletter, raw, time.monotonic(), invalid_kind=kind)
            self.dead_letters[raw] = sent
            self.sent[message_id] = sent
            self.open.add(message_id)
            if run.started_at is None:
                run.started_at = sent.sent_at
            self._produce(self.catalogue.query, sim.vin, raw)
        elif kind == "bad_vin":
            raw = fleet.query(sim, message_id, now_s, vin=BAD_VIN)
            self._send(run, "invalid", self.catalogue.query, self.catalogue.query_response, raw,
                       message_id, invalid_kind=kind)
        elif kind == "wrong_type":
            raw = fleet.device_provision(sim, sim.primary, message_id, now_s)
            self._send(run, "invalid", self.catalogue.query, self.catalogue.query_response, raw,
                       message_id, invalid_kind=kind)
        else:  # chipsets_mismatch, in the region the vehicle was sent to
            region = run.region or sim.region
            device = sim.devices[-1]
            raw = fleet.device_provision(sim, device, message_id, now_s,
                                         chipsets_count=len(device.chipsets) + 1)
            self._send(run, "invalid", self.catalogue.device(region),
                       self.catalogue.device_response(region), raw, message_id, device=device,
                       invalid_kind=kind)

    def _start(self, run: VehicleRun) -> None:
        if run.invalid_kind and run.invalid_kind != "chipsets_mismatch":
            self._send_invalid(run, run.invalid_kind)
        message_id = str(uuid.uuid4())
        raw = fleet.query(run.sim, message_id, int(time.time()))
        self._send(run, "query", self.catalogue.query, self.catalogue.query_response, raw,
                   message_id, duplicate="query" in run.duplicate_targets)
        run.waiting.add(message_id)

    def _provision_devices(self, run: VehicleRun) -> None:
        region = run.region
        assert region is not None
        if run.invalid_kind == "chipsets_mismatch":
            self._send_invalid(run, run.invalid_kind)
        devices = list(run.sim.devices)
        if self.options.shuffle:
            self.rng.shuffle(devices)
        now_s = int(time.time())
        for device in devices:
            message_id = str(uuid.uuid4())
            raw = fleet.device_provision(run.sim, device, message_id, now_s)
            self._send(run, "device", self.catalogue.device(region),
                       self.catalogue.device_response(region), raw, message_id, device=device,
                       duplicate=device.device_id in run.duplicate_targets)
            run.waiting.add(message_id)

    # --- answers -------------------------------------------------------------------------------

    def _fail(self, run: VehicleRun, reason: str, code: str) -> None:
        if run.failure is None:
            run.failure, run.failure_code = reason, code
            self.failed_count += 1

    def _check(self, sent: Sent, doc: dict[str, Any], topic: str) -> tuple[str, str] | None:
        """Why a provisioning answer is not the expected success, as (reason, code)."""
        if topic != sent.answer_topic:
            return f"answered on {topic}, not {sent.answer_topic}", "wrong topic"
        bag = doc.get("property_bag") or {}
        if doc.get("status") != envelope.STATUS_SUCCESS:
            code = bag.get("error_code")
            what = "query" if sent.kind == "query" else f"device {sent.device.device_id}"  # type: ignore[union-attr]
            return f"{what}: {code} {bag.get('error_message', '')}".strip(), str(code)
        body = doc.get("body") or {}
        sim = sent.run.sim
        if doc.get("vin") != sim.vin:
            return f"answer names vin {doc.get('vin')}", "bad answer"
        if sent.kind == "query":
            if doc.get("device_id") != sim.primary.device_id:
                return f"query answer names device {doc.get('device_id')}", "bad answer"
            if body.get("lifecyclestate") != PROVISION_PENDING_REGIONAL:
                return f"query answer state {body.get('lifecyclestate')}", "bad answer"
            if body.get("iot_gateway_endpoint") not in self.endpoints:
                return (f"query answer endpoint {body.get('iot_gateway_endpoint')!r} is no "
                        "configured region's", "bad answer")
            return None
        device = sent.device
        assert device is not None
        expected = self.config.ecu_states[device.ecu_type]
        if doc.get("device_id") != device.device_id:
            return f"device answer names device {doc.get('device_id')}", "bad answer"
        if body.get("lifecycyclestate") != expected:
            return (f"device {device.device_id}: state {body.get('lifecycyclestate')}, expected "
                    f"{expected}", "bad answer")
        return None

    def _check_invalid(self, sent: Sent, doc: dict[str, Any], topic: str) -> None:
        kind = sent.invalid_kind or ""
        expected = int(INVALID_KINDS[kind])
        code = (doc.get("property_bag") or {}).get("error_code")
        if topic != sent.answer_topic:
            self.invalid_problems.append(f"{sent.run.sim.vin} {kind}: answered on {topic}")
        elif doc.get("status") != envelope.STATUS_FAIL or code != expected:
            self.invalid_problems.append(f"{sent.run.sim.vin} {kind}: expected {expected}, got "
                                         f"{doc.get('status')} {code}")
        else:
            self.invalid_ok[kind] += 1

    def _on_answer(self, topic: str, raw: bytes) -> None:
        try:
            doc = envelope.parse_response(raw)
        except ValueError:
            return
        sent = self.sent.get(doc.get("correlation_id") or "")
        if sent is None:
            return  # another client's answer
        now = time.monotonic()
        if sent.answer is not None:
            if sent.duplicate and sent.duplicate_sent_at is not None and sent.message_id in \
                    self.open:
                self.open.discard(sent.message_id)
                if raw == sent.answer:
                    self.duplicates_identical += 1
                else:
                    self.duplicate_problems.append(
                        f"{sent.run.sim.vin} {sent.kind} {sent.message_id}: the second answer "
                        "differs from the first")
            else:
                self.extra_answers += 1
            return
        sent.answer = raw
        self.open.discard(sent.message_id)
        if sent.kind == "invalid":
            self._check_invalid(sent, doc, topic)
            return
        run = sent.run
        run.last_answer_at = now
        self.latencies[sent.kind].append(now - sent.sent_at)
        run.waiting.discard(sent.message_id)
        problem = self._check(sent, doc, topic)
        if problem is not None:
            self._fail(run, *problem)
        elif sent.kind == "query":
            run.region = self.endpoints[doc["body"]["iot_gateway_endpoint"]]
            self._provision_devices(run)
        if sent.kind == "query" and problem is not None and run.invalid_kind == \
                "chipsets_mismatch":
            self._send_invalid(run, run.invalid_kind)  # still owed, to the requested region
        if sent.duplicate:
            # A device that missed the answer sends the same request again.
            sent.duplicate_sent_at = now
            self.duplicates_sent += 1
            self.open.add(sent.message_id)
            self._produce(sent.topic, run.sim.vin, sent.raw)
        if not run.waiting and not run.finished:
            run.finished_at = now
            if run.failure is None and run.started_at is not None:
                self.latencies["vehicle"].append(now - run.started_at)
            if self.progress is not None:
                self.progress.advance(extra=f"failed {self.failed_count}")

    def _on_dead_letter(self, value: bytes) -> None:
        try:
            record = self.serde.decode("DeadLetter", value, topic=self.catalogue.deadletter)
        except Exception:  # noqa: BLE001 - someone else's record on a shared topic
            return
        sent = self.dead_letters.pop(bytes(record["payload"]), None)
        if sent is None:
            return
        self.open.discard(sent.message_id)
        sent.answer = value
        kind = sent.invalid_kind or ""
        expected = int(INVALID_KINDS[kind])
        if record["error_code"] != expected or record["source_topic"] != sent.topic:
            self.invalid_problems.append(
                f"{sent.run.sim.vin} {kind}: dead letter with {record['error_code']} from "
                f"{record['source_topic']}, expected {expected} from {sent.topic}")
        else:
            self.invalid_ok[kind] += 1

    # --- phases --------------------------------------------------------------------------------

    def _answer_reader(self) -> ClusterReader:
        """Answers and dead letters from now on, each topic on its cluster (the regions' device
        answers on theirs, dead letters wherever a worker writes them)."""
        cat = self.catalogue
        placed: dict[Cluster, list[str]] = {}
        for topic in [cat.query_response, *(cat.device_response(r) for r in self.config.regions)]:
            placed.setdefault(cat.home(topic), []).append(topic)
        for cluster in cat.clusters_of(cat.deadletter):
            placed.setdefault(cluster, []).append(cat.deadletter)
        reader = ClusterReader(placed, **{"enable.partition.eof": False, "fetch.wait.max.ms": 20})
        try:
            reader.assign_ends()
        except KafkaException as exc:
            reader.close()
            raise SimulationError(f"answer topics: {exc}") from None
        return reader

    def _register(self) -> None:
        topic = self.catalogue.registrations
        for run in self.runs:
            for reg in fleet.registrations(run.sim):
                value = self.serde.encode("DeviceRegistration", to_record(reg), topic=topic)
                self._produce(topic, reg["device_id"], value)
            self.producer.poll(0)
        self.producer.flush(30)

    def _wait_indexed(self, deadline: float) -> bool:
        views = WorkerViews(self.options.global_url)
        progress = Progress("indexing registrations", total=len(self.runs),
                            stream=self.progress_stream)
        try:
            for run in self.runs:
                path = f"/systems/{run.sim.system_id}/"
                while True:
                    status, body = views.get(path)
                    if status == 200 and isinstance(body, dict) and \
                            len(body.get("devices") or ()) == len(run.sim.devices):
                        break
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(INDEX_POLL_SECONDS)
                progress.advance()
            return True
        finally:
            progress.close()
            views.close()

    def run(self) -> Report:
        began = time.monotonic()
        deadline = began + self.options.timeout
        ensure_placed(self.config, self.catalogue.external())
        reader = self._answer_reader()
        try:
            self._register()
            indexed = self._wait_indexed(deadline)
            indexing = time.monotonic() - began
            started_at = time.monotonic()
            if indexed:
                self._provision(reader, deadline)
            else:
                for run in self.runs:
                    self._fail(run, "registration not indexed in time", "not indexed")
            elapsed = time.monotonic() - started_at
        finally:
            reader.close()
            self.producer.flush(10)
        for run in self.runs:
            if not run.finished:
                stage = "no answer to the query" if run.region is None else \
                    "no answer from every device"
                self._fail(run, f"timeout: {stage}", "timeout")
        for message_id in sorted(self.open):
            sent = self.sent[message_id]
            if sent.kind == "invalid":
                self.invalid_problems.append(f"{sent.run.sim.vin} {sent.invalid_kind}: no answer")
            elif sent.answer is not None:
                self.duplicate_problems.append(f"{sent.run.sim.vin} {sent.kind}: no second "
                                               "answer to the duplicate")
        self.invalid_problems += [f"delivery failed: {e}" for e in self.delivery_errors[:10]]
        last = max((r.last_answer_at for r in self.runs if r.last_answer_at), default=None)
        if last is not None:
            elapsed = last - started_at
        return Report(self.options, self.tag, self.runs, indexing, elapsed, self.latencies,
                      self.invalid_sent, self.invalid_ok, self.invalid_problems,
                      self.duplicates_sent, self.duplicates_identical, self.duplicate_problems,
                      self.catalogue.lifecycle, self.extra_answers)

    def _provision(self, reader: ClusterReader, deadline: float) -> None:
        self.progress = Progress("provisioning", total=len(self.runs),
                                 stream=self.progress_stream)
        rate = self.options.rate
        start = time.monotonic()
        answer_topics = {self.catalogue.query_response} | {
            self.catalogue.device_response(r) for r in self.config.regions}
        started = 0
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                while started < len(self.runs) and (rate is None or start + started / rate <= now):
                    self._start(self.runs[started])
                    started += 1
                self.producer.poll(0)
                if started == len(self.runs) and not self.open and \
                        all(r.finished for r in self.runs):
                    break
                wait = 0.05
                if rate is not None and started < len(self.runs):
                    wait = max(0.0, min(wait, start + started / rate - now))
                for msg in reader.consume(1000, wait):
                    if msg.error() or msg.value() is None:
                        continue
                    if msg.topic() == self.catalogue.deadletter:
                        self._on_dead_letter(msg.value())
                    elif msg.topic() in answer_topics:
                        self._on_answer(msg.topic(), msg.value())
        finally:
            self.progress.close()


def check_reachable(config: Config, options: SimOptions, timeout: float) -> None:
    """``Unreachable`` unless Kafka, Redis (the workers need it to answer) and the global
    worker each answer within ``timeout``."""
    reach.clusters_of(config, timeout)
    reach.redis_of(config, timeout)
    check_worker(options.global_url, timeout)


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
