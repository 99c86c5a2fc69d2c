"""Crash, scaling, broker restart, Redis outage and bad input, each on a fleet in flight; after
each, the same invariants (tests/reliability/driver.py) and the audit `vprov replay --verify`.
The registration crash scenario (tests/reliability/registration_crash.py) is repeated."""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import redis

from tests.integration.conftest import Flow
from tests.integration.harness import BOOTSTRAP, REDIS_URL, WorkerProcess, wait_until
from tests.reliability.conftest import (
    Deployment,
    Sizes,
    assert_down,
    input_partitions,
    restart_after_kill,
    stack,
    wait_settled,
)
from tests.reliability.driver import FleetDriver, Outcome, check_invariants
from tests.reliability.registration_crash import run_once
from vprov.cli import main
from vprov.identity import identity_key
from vprov.ops.workers import start_all
from vprov.sim import fleet

FINISH_TIMEOUT = 600
# Lines a worker may log from an outage's start until the fleet is done (a flood is thousands).
OUTAGE_LOG_LINES = 150


def audit(dep: Deployment, glob: WorkerProcess, na: WorkerProcess) -> tuple[int, str]:
    """`vprov replay --verify` over the deployment's lifecycle topic against its tables (on the
    cluster its environment names, when it is not the suite's)."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out), mock.patch.dict(os.environ, dep.env):
        code = main(["--config", str(dep.config_path), "replay", "--verify", "-q",
                     "--global-url", glob.url, "--region-url", f"NA={na.url}"])
    return code, out.getvalue()


def assert_clean(dep: Deployment, outcome: Outcome, glob: WorkerProcess,
                 na: WorkerProcess) -> None:
    dep.figures.update(outcome.as_dict())
    assert outcome.provisioned == outcome.vehicles, outcome
    assert outcome.lost_answers == 0, outcome
    assert outcome.conflicting_answers == 0, outcome
    assert outcome.duplicate_events == 0, outcome
    assert outcome.wrong_histories == [], outcome
    code, text = audit(dep, glob, na)
    dep.figures["audit"] = "clean" if code == 0 else text[-2000:]
    assert code == 0, text


def up(dep: Deployment) -> tuple[WorkerProcess, WorkerProcess, Flow]:
    """A global and an NA worker, ready, and the flow that drives them."""
    glob, na = dep.worker("global"), dep.worker("regional", "NA")
    start_all(glob, na)
    return glob, na, dep.flow(glob, na)


def when(driver: FleetDriver, fraction: float, timeout: float = 300) -> None:
    wait_until(lambda: driver.progress >= fraction or driver.finished_at, timeout=timeout,
               interval=0.1, what=f"{fraction:.0%} of the fleet provisioned")


def test_sigkill_workers_at_random_moments(deployment: Deployment, sizes: Sizes) -> None:
    dep = deployment
    glob, na, flow = up(dep)
    vehicles = dep.fleet(sizes.vehicles)
    flow.register(*vehicles)
    driver = FleetDriver(flow, vehicles, sizes.rate).start()
    rng = random.Random(7)
    victims = [glob, na] * sizes.kills
    rng.shuffle(victims)
    moments = sorted(rng.uniform(0.05, 0.85) for _ in victims)
    recovery = []
    for victim, moment in zip(victims, moments, strict=True):
        when(driver, moment)
        recovery.append(restart_after_kill(victim))
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({
        "kills": len(victims), "restarts": len(victims),
        "recovery_seconds_median": round(statistics.median(recovery), 2),
        "recovery_seconds_max": round(max(recovery), 2),
        "run_seconds": round(driver.seconds, 1),
    })
    assert_clean(dep, check_invariants(flow, driver), glob, na)


def test_scale_out_and_back_during_a_run(deployment: Deployment, sizes: Sizes) -> None:
    dep = deployment
    glob, na, flow = up(dep)
    totals = {"global": input_partitions(glob), "NA": input_partitions(na)}
    vehicles = dep.fleet(sizes.vehicles)
    flow.register(*vehicles)
    extra = 2 if sizes.vehicles >= 1000 else 1  # 1 -> 3 -> 1 in the long run, 1 -> 2 -> 1 quick
    driver = FleetDriver(flow, vehicles, sizes.rate).start()
    when(driver, 0.2)
    added_glob = [dep.worker("global") for _ in range(extra)]
    added_na = [dep.worker("regional", "NA") for _ in range(extra)]
    began = time.monotonic()
    start_all(*added_glob, *added_na)
    wait_settled([glob, *added_glob], totals["global"])
    wait_settled([na, *added_na], totals["NA"])
    settle_out = time.monotonic() - began
    when(driver, 0.6)
    began = time.monotonic()
    for proc in added_glob + added_na:
        proc.stop()
    wait_settled([glob], totals["global"])
    wait_settled([na], totals["NA"])
    settle_back = time.monotonic() - began
    driver.wait(FINISH_TIMEOUT)
    dep.figures.update({"workers_per_role_max": 1 + extra,
                        "settle_seconds_scale_out": round(settle_out, 2),
                        "settle_seconds_scale_back": round(settle_back, 2),
                        "run_seconds": round(driver.seconds, 1)})
    assert_clean(dep, check_invariants(flow, driver), glob, na)


def through_outage(
    dep: Deployment, sizes: Sizes, service: str, url: str, down_for: float,
) -> tuple[WorkerProcess, WorkerProcess, FleetDriver, list[fleet.SimVehicle], float]:
    """A fleet in flight; at 30% of it the stack's ``service`` stops for ``down_for`` seconds
    and starts again; the run goes on to its end. Returns the workers, the driver, the fleet and
    the seconds from the stop until the service was up again."""
    glob, na, flow = up(dep)
    vehicles = dep.fleet(sizes.vehicles)
    flow.register(*vehicles)
    driver = FleetDriver(flow, vehicles, sizes.rate).start()
    when(driver, 0.3)
    began = time.monotonic()
    seen = {w.name: log_lines(w) for w in (glob, na)}
    stack("stop", service)
    assert_down(service, url)
    time.sleep(down_for)
    stack("up")
    down_seconds = time.monotonic() - began
    driver.wait(FINISH_TIMEOUT)
    dep.figures["run_seconds"] = round(driver.seconds, 1)
    # the fleet's own Kafka clients replaced after the outage (vprov/kafka/clients.py)
    dep.figures["fleet_clients_renewed"] = dict(driver.clients_renewed)
    # The outage is reported, not flooded: each of the Kafka client's repeated errors once per
    # 30 s, an input held up once (streams/run.py, streams/shell.py); no tracebacks.
    during = {w.name: log_lines(w)[len(seen[w.name]):] for w in (glob, na)}
    dep.figures["outage_log_lines"] = {name: len(lines) for name, lines in during.items()}
    for name, lines in during.items():
        assert len(lines) <= OUTAGE_LOG_LINES, (name, len(lines), lines[-20:])
        assert not [line for line in lines if "Traceback" in line], (name, lines[-40:])
    return glob, na, driver, vehicles, down_seconds


def log_lines(worker: WorkerProcess) -> list[str]:
    return worker.log_path.read_text(errors="replace").splitlines()


def test_broker_restart_in_the_middle_of_a_run(deployment: Deployment, sizes: Sizes) -> None:
    dep = deployment
    glob, na, driver, _, down_seconds = through_outage(dep, sizes, "kafka", BOOTSTRAP, 3)
    dep.figures["broker_down_seconds"] = round(down_seconds, 1)
    assert glob.proc and glob.proc.poll() is None, glob.log_tail()
    assert na.proc and na.proc.poll() is None, na.log_tail()
    assert_clean(dep, check_invariants(driver.flow, driver), glob, na)


def test_redis_outage_of_ten_seconds(deployment: Deployment, sizes: Sizes) -> None:
    dep = deployment
    glob, na, driver, vehicles, _ = through_outage(dep, sizes, "redis", REDIS_URL, 10)
    dep.figures["redis_down_seconds"] = 10
    assert_clean(dep, check_invariants(driver.flow, driver), glob, na)
    # no vehicle half-provisioned: regional identity there, global identity of the primary gone
    client = redis.Redis.from_url(REDIS_URL)
    for vehicle in vehicles:
        assert client.exists(identity_key("NA", vehicle.primary.device_id)), vehicle.vin
        assert not client.exists(identity_key("global", vehicle.primary.device_id)), vehicle.vin


def hostile_messages(count: int, victims: list[fleet.SimVehicle], rng: random.Random,
                     max_payload: int) -> list[tuple[str, str, bytes, dict[str, str] | None,
                                                    str, str]]:
    """(class, record key, payload, headers, topic kind, message id) of ``count`` hostile
    messages. Keys are unique per message except where the attack needs a victim's VIN."""
    out = []
    classes = ["random bytes", "truncated JSON", "deeply nested JSON", "wrong types",
               "oversize payload", "wrong message type", "injection in identifiers",
               "spoofed authenticated-device-id", "VIN of another vehicle"]
    now = int(time.time())
    for n in range(count):
        kind = classes[n % len(classes)]
        victim = victims[rng.randrange(len(victims))]
        message_id = f"hostile-{uuid.uuid4()}"
        key = f"X{n:09d}"
        headers = None
        topic = rng.choice(["query", "device"])
        valid_query = fleet.query(victim, message_id, now)
        if kind == "random bytes":
            payload = rng.randbytes(rng.randrange(1, 300))
        elif kind == "truncated JSON":
            payload = valid_query[: rng.randrange(1, len(valid_query) - 1)]
        elif kind == "deeply nested JSON":
            depth = rng.randrange(500, 5000)
            payload = b'{"device_id":"d1","a":' + b"[" * depth + b"]" * depth + b"}"
        elif kind == "wrong types":
            doc = json.loads(valid_query)
            doc[rng.choice(["time", "property_bag", "body", "version"])] = \
                rng.choice([[], {}, "x", 1.5, True])
            payload = json.dumps(doc).encode()
            key = victim.vin
        elif kind == "oversize payload":
            payload = b'{"device_id":"d1","pad":"' + b"A" * (max_payload + 10) + b'"}'
        elif kind == "wrong message type":
            doc = json.loads(valid_query)
            doc["message_type"] = "PROVISION_QUERY_RESPONSE"
            payload = json.dumps(doc).encode()
            key = victim.vin
        elif kind == "injection in identifiers":
            doc = json.loads(valid_query)
            doc["system_id"] = rng.choice(["'; DROP TABLE vehicles; --", "$(reboot)",
                                           "../../etc/passwd", "<script>x</script>", "\u0000"])
            payload = json.dumps(doc).encode()
            key = victim.vin
        elif kind == "spoofed authenticated-device-id":
            other = victims[(victims.index(victim) + 1) % len(victims)]
            payload = (fleet.query(victim, message_id, now) if topic == "query" else
                       fleet.device_provision(victim, victim.primary, message_id, now))
            headers = {"authenticated-device-id": other.primary.device_id}
            key = victim.vin
        else:  # a device of one vehicle provisioning under another vehicle's VIN
            other = victims[(victims.index(victim) + 1) % len(victims)]
            thief = other.__class__(**{**other.__dict__, "vin": victim.vin})
            payload = fleet.device_provision(thief, thief.primary, message_id, now)
            headers = {"authenticated-device-id": thief.primary.device_id}
            topic = "device"
            key = victim.vin
        out.append((kind, key, payload, headers, topic, message_id))
    return out


def test_hostile_input_interleaved_with_valid_traffic(deployment: Deployment,
                                                      sizes: Sizes) -> None:
    dep = deployment
    glob, na, flow = up(dep)
    cat = flow.cat
    # victims: provisioned vehicles the attacks aim at; their state must not move
    victims = dep.fleet(20)
    flow.register(*victims)
    warmup = FleetDriver(flow, victims, sizes.rate).start()
    warmup.wait(FINISH_TIMEOUT)
    assert check_invariants(flow, warmup).provisioned == len(victims)
    before = {v.vin: (glob.get(f"/vehicles/{v.vin}/"), na.get(f"/vehicles/{v.vin}/"))
              for v in victims}
    events_before = len(flow.bus.records(cat.lifecycle))

    vehicles = dep.fleet(sizes.vehicles)
    flow.register(*vehicles)
    rng = random.Random(11)
    hostile = hostile_messages(sizes.hostile, victims, rng, dep.config.max_payload_bytes)
    driver = FleetDriver(flow, vehicles, sizes.rate).start()
    began = time.monotonic()
    for i, (_, key, payload, headers, topic, _) in enumerate(hostile):
        target = cat.query if topic == "query" else cat.device("NA")
        flow.bus.send(target, key, payload, headers)
        if i % 500 == 0:
            flow.bus.producer.poll(0)
    flow.bus.flush()
    driver.wait(FINISH_TIMEOUT)

    # every hostile message answered (FAIL) or dead-lettered
    ids = {m[5] for m in hostile}
    keys = {m[1] for m in hostile if m[1].startswith("X")}
    answer_topics = [cat.query_response, cat.device_response("NA")]

    def accounted() -> tuple[set[str], set[str]]:
        by_id: set[str] = set()
        by_key: set[str] = set()
        for topic in answer_topics:
            for rec in flow.bus.records(topic):
                if not isinstance(rec.value, dict):
                    continue
                if rec.value.get("correlation_id") in ids:
                    assert rec.value["status"] == "FAIL", rec.value
                    by_id.add(rec.value["correlation_id"])
                elif rec.key in keys:
                    assert rec.value["status"] == "FAIL", rec.value
                    by_key.add(rec.key)
        for rec in flow.bus.records(cat.deadletter):
            if rec.key in keys:
                by_key.add(rec.key)
        return by_id, by_key

    def all_accounted() -> bool:
        by_id, by_key = accounted()
        return all(m[5] in by_id or m[1] in by_key for m in hostile)

    try:
        wait_until(all_accounted, timeout=FINISH_TIMEOUT, interval=1.0,
                   what="an answer or dead letter for every hostile message")
    finally:
        by_id, by_key = accounted()
        per_class: dict[str, dict[str, int]] = {}
        for kind, key, _, _, _, message_id in hostile:
            row = per_class.setdefault(kind, {"sent": 0, "answered": 0, "dead_lettered": 0})
            row["sent"] += 1
            if message_id in by_id or (key in by_key and not any(
                    r.key == key for r in flow.bus.records(cat.deadletter))):
                row["answered"] += 1
            elif key in by_key:
                row["dead_lettered"] += 1
        dep.figures.update({"hostile_sent": len(hostile), "hostile_classes": per_class,
                            "hostile_seconds": round(time.monotonic() - began, 1)})

    # workers alive and healthy, valid traffic finished, victims untouched
    for proc in (glob, na):
        assert proc.proc and proc.proc.poll() is None, proc.log_tail()
        assert (proc.health() or {}).get("ready"), proc.name
    assert_clean(dep, check_invariants(flow, driver), glob, na)
    for vehicle in victims:
        assert (glob.get(f"/vehicles/{vehicle.vin}/"), na.get(f"/vehicles/{vehicle.vin}/")) \
            == before[vehicle.vin], vehicle.vin
    new_events = [r for r in flow.bus.records(cat.lifecycle)[events_before:]
                  if r.key in {v.vin for v in victims}]
    assert new_events == [], "a rejected message changed a victim's lifecycle"


def test_registration_crash_repeated(deployment: Deployment, sizes: Sizes) -> None:
    """Registrations not waited for, a query burst with the global worker killed in it, a device
    burst with the regional worker killed in it: every device of every queried vehicle ends
    provisioned. Repeated on fresh fleets (RELIABILITY_REGISTRATION_RUNS), one deployment."""
    dep = deployment
    glob, na, flow = up(dep)
    runs: list[dict] = []
    failed: dict[int, list[str]] = {}
    dep.figures["runs"] = runs
    for index in range(sizes.registration_runs):
        result = run_once(dep, flow, glob, na, index)
        code, text = audit(dep, glob, na)
        result.figures["audit"] = "clean" if code == 0 else "PROBLEMS"
        if code != 0:
            result.problems.append(f"vprov replay --verify: {text[-1500:]}")
        result.figures["clean"] = not result.problems
        runs.append(result.figures)
        if result.problems:
            failed[index + 1] = result.problems
        summarize_registration_runs(dep, runs)
        for proc in (glob, na):
            assert proc.proc and proc.proc.poll() is None, proc.log_tail()
    assert not failed, "\n".join(f"run {n}: {p}" for n, ps in failed.items() for p in ps)


def summarize_registration_runs(dep: Deployment, runs: list[dict]) -> None:
    """The report row: the invariants summed over the runs, and the figures of each run."""
    total = {key: sum(r[key] for r in runs) for key in (
        "vehicles", "provisioned", "devices", "devices_provisioned", "lost_answers",
        "conflicting_answers", "duplicate_events", "lifecycle_records", "query_retries",
        "vehicles_retried", "joins", "joins_after_primary_provisioned",
        "indexed_before_queries")}
    restarts = [r[k] for r in runs for k in ("global_restart_seconds",
                                             "regional_restart_seconds")]
    dep.figures.update(total)
    dep.figures.update({
        "registration_runs": len(runs),
        "runs_clean": sum(1 for r in runs if r["clean"]),
        "registered_vehicles_per_run": runs[0]["registered_vehicles"],
        "vehicles_per_run": runs[0]["vehicles"],
        "recovery_seconds_median": round(statistics.median(restarts), 2),
        "recovery_seconds_max": round(max(restarts), 2),
        "audit": "clean" if all(r["audit"] == "clean" for r in runs) else "PROBLEMS",
    })
