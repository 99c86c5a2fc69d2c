"""Pipeline benchmark: the whole provisioning flow on a real broker, at increasing offered load.

Starts a global worker and one regional worker of a deployment of its own (own app prefix,
topics, state directory under bench/out/), registers every vehicle it will use, optionally loads
``--state-vehicles`` vehicles as fast as the pipeline takes them, then runs open-loop load levels
and reports sustained vehicles/s, latency percentiles, worker CPU and peak RSS, one phase per
``--misrouted`` share (the cost of the ingress' forwarding hop), and a consume -> produce relay
baseline on the same broker. Writes docs/benchmarks.md and plots.

    make up && make bench BENCH_ARGS="--levels 50,100,150,200,300,400 --seconds 15"
    .venv/bin/python -m bench.pipeline_bench --state-vehicles 100000 --profile
    make bench EDGE=mqtt BENCH_ARGS=--edge   # also the device edge: MQTT beside Kafka-direct

The workers are stopped and the run's topics, consumer groups and Redis keys removed at the end,
whatever happens (``--keep`` leaves them for inspection).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pickle
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import profiles
from bench.client_floor import run_floor
from bench.deploy import (
    FIRST_TIER,
    REPO,
    Broker,
    Machine,
    ProcessSampler,
    add_stack_arguments,
    listener_pid,
    machine,
    machine_busy_seconds,
    port_of,
    setting,
    worker_env,
    write_config,
)
from bench.edge_bench import EdgeSettings, check_brokers, edge_settings, run_edge
from bench.loadgen import LoadGenerator, PhaseResult, summary_ms
from bench.page import markdown
from bench.relay import run_baseline
from bench.report import (
    MB,
    IngressPhase,
    Outcome,
    RunReport,
    StateLoad,
    Targets,
    Usage,
    console,
    plot_ingress,
    plot_latency,
    plot_rss,
)
from bench.restore import run_restore
from bench.settle import settled, wait_settled
from bench.standby_cost import run_standby_cost
from vprov.kafka.avro import serde_from_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.progress import progress
from vprov.ops.workers import WorkerProcess
from vprov.sim import fleet
from vprov.sim.fleet_driver import wait_indexed
from vprov.sim.synthetic_state import write_state

DEFAULT_LEVELS = "50,100,150,200,300,400"
FINDINGS = Path(__file__).with_name("findings.md")
# what aiokafka logs each time a consumer joins its group (a rebalance)
GROUP_JOINED = "Joined group "
SETTLE_TIMEOUT = 180.0  # after the large state's restore (bench/settle.py)
PROFILE_HZ = 50  # samples per second and thread: py-spy's own CPU competes for the two cores


class Interrupted(Exception):
    pass


class WorkerDied(RuntimeError):
    pass


def add_load_options(p: argparse.ArgumentParser) -> None:
    """Where the stack is, and the state load and levels."""
    add_stack_arguments(p)
    p.add_argument("--levels", default=DEFAULT_LEVELS, help="offered loads, vehicles/s")
    p.add_argument("--seconds", type=float, default=15.0, help="sending time per level")
    p.add_argument("--state-vehicles", type=int, default=2000,
                   help="vehicles loaded through the pipeline first, as fast as it goes "
                        "(the memory target is stated for 100000)")
    p.add_argument("--state-window", type=int, default=500,
                   help="vehicles in flight during the state load")
    p.add_argument("--drain-limit", type=float, default=5.0,
                   help="seconds a level's backlog may take to drain after sending stops")
    p.add_argument("--min-completion", type=float, default=0.95,
                   help="completion rate a sustained level reaches, as a share of offered")
    p.add_argument("--level-timeout", type=float, default=60.0,
                   help="seconds to wait for a level's last answers before giving up on it")
    p.add_argument("--max-unsustained", type=int, default=2,
                   help="skip the remaining (higher) levels after this many unsustained ones")
    p.add_argument("--pause", type=float, default=3.0, help="idle seconds between phases")


def add_phase_options(p: argparse.ArgumentParser) -> None:
    """The phases after the levels, and the workers' deployment."""
    p.add_argument("--misrouted", default="0,1",
                   help="shares of misrouted device-facing records, one paced phase each after "
                        "the levels (empty: no such phase)")
    p.add_argument("--ingress-rate", type=float, default=0.0,
                   help="offered vehicles/s of the misrouted phases (0: the highest sustained "
                        "level, else the lowest level)")
    p.add_argument("--baseline-seconds", type=float, default=5.0,
                   help="the relay baseline's timed window (each of its three runs)")
    p.add_argument("--floor-rates", default="300,2400",
                   help="records/s at which a bare relay on each Kafka client is measured "
                        "(the client floor; default: the workers' records/s at 50 and 400 "
                        "vehicles/s); empty: skip")
    p.add_argument("--restore-vehicles", type=int, default=1_000_000,
                   help="synthetic state for the empty-disk restore phase (0: no phase)")
    p.add_argument("--restore-faust-vehicles", type=int, default=25_000,
                   help="state for the same start with Faust's own recovery (0: none)")
    p.add_argument("--standby-vehicles", type=int, default=1200,
                   help="vehicles of the standby-cost phase, two workers per role, with and "
                        "without standbys (0: no phase)")
    p.add_argument("--standby-rate", type=float, default=40.0)
    p.add_argument("--edge", action="store_true",
                   help="the device edge phase: the same fleet over MQTT (Mosquitto brokers "
                        "with dynamic security, an edge bridge per broker) and straight onto "
                        "Kafka; needs the brokers (make up EDGE=mqtt)")
    p.add_argument("--edge-rate", type=float, default=10.0,
                   help="offered vehicles/s of both edge paths (modest: every rehome and "
                        "provisioning writes identities into the brokers)")
    p.add_argument("--edge-seconds", type=float, default=30.0,
                   help="sending time of each edge path")
    p.add_argument("--floor-seconds", type=float, default=10.0,
                   help="the client floor's timed window per client and rate")
    p.add_argument("--region", default="NA", help="the regional worker's region")
    p.add_argument("--ports", default="19066,19067", help="web ports: global,regional")
    p.add_argument("--partitions", type=int, default=0,
                   help="partitions per topic (0: the packaged default)")
    p.add_argument("--producer-client", choices=("librdkafka", "aiokafka"),
                   help="the workers' kafka.producer_client (default: the packaged default)")
    p.add_argument("--kafka", action="append", default=[], type=setting, metavar="KEY=VALUE",
                   help="a key of the workers' [kafka] table to try, e.g. fetch_min_bytes=16384 "
                        "(repeatable; the report's deployment names it)")
    p.add_argument("--scale-out", action="store_true",
                   help="after the other phases, start a second worker per role and run the "
                        "same levels again (the scale-out figure)")
    p.add_argument("--large-state-vehicles", type=int, default=0,
                   help="last: write this many synthetic vehicles into the workers' changelogs "
                        "(global and regional), restart the two workers on them and run the "
                        "levels again (0: no phase)")
    p.add_argument("--profile", action="store_true",
                   help="sample both workers with py-spy during an extra, unscored phase")
    p.add_argument("--profile-rate", type=float, default=0.0,
                   help="offered load of the profiled phase (0: the highest sustained "
                        "level, else the lowest level)")
    p.add_argument("--profile-seconds", type=float, default=30.0)
    p.add_argument("--py-spy", help="path of the py-spy executable (default: on PATH or next "
                                    "to this Python)")


def add_target_and_output_options(p: argparse.ArgumentParser) -> None:
    """The targets the verdicts judge by, and what the run writes where."""
    p.add_argument("--target-rate", type=float, default=200.0,
                   help="vehicles/s of the highest sustained level")
    p.add_argument("--target-cpu-rate", type=float, default=100.0,
                   help="offered vehicles/s of the level the CPU, p99 and bare-agent targets "
                        "are judged at (one of --levels)")
    p.add_argument("--target-cpu-ms", type=float, default=9.0,
                   help="both workers' CPU per completed vehicle at --target-cpu-rate")
    p.add_argument("--target-p99-ms", type=float, default=150.0,
                   help="p99 query -> answer at --target-cpu-rate")
    p.add_argument("--target-agent-ratio", type=float, default=1.25,
                   help="each worker's CPU per consumed record over a bare Faust agent's at "
                        "the same records/s (the client floor)")
    p.add_argument("--target-rss-mb", type=float, default=500.0,
                   help="peak RSS per worker with --target-state vehicles of state")
    p.add_argument("--target-state", type=int, default=1_000_000)
    p.add_argument("--out", default=str(REPO / "bench" / "out"),
                   help="run directory parent (git-ignored)")
    p.add_argument("--doc", default=str(REPO / "docs" / "benchmarks.md"))
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--note", action="append", default=[],
                   help="a sentence for the report's notes (repeatable)")
    p.add_argument("--render", metavar="RUN_ID",
                   help="only rewrite the doc and plots from a finished run in --out")
    p.add_argument("--keep", action="store_true",
                   help="keep the run's topics, consumer groups, Redis keys and worker state")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_load_options(p)
    add_phase_options(p)
    add_target_and_output_options(p)
    args = p.parse_args(argv)
    try:
        args.level_rates = [float(x) for x in args.levels.split(",") if x.strip()]
        args.web_ports = [int(x) for x in args.ports.split(",")]
        args.misrouted_shares = [float(x) for x in args.misrouted.split(",") if x.strip()]
        args.floor_rates = [float(x) for x in args.floor_rates.split(",") if x.strip()]
    except ValueError:
        p.error("--levels, --ports, --misrouted and --floor-rates take comma-separated numbers")
    if len(args.web_ports) != 2 or any(r <= 0 for r in args.level_rates + args.floor_rates):
        p.error("--ports takes two ports; --levels and --floor-rates positive rates")
    if any(not 0 <= x <= 1 for x in args.misrouted_shares) or args.ingress_rate < 0:
        p.error("--misrouted takes shares between 0 and 1; --ingress-rate a rate (0: default)")
    return args


def command_line(argv: list[str]) -> tuple[str, str]:
    """The exact command, and the same through ``make bench``."""
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
           if os.environ.get(k)]
    exact = " ".join([*env, python_path(), "-m", "bench.pipeline_bench",
                      *map(shlex.quote, argv)])
    make = "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(argv))}" if argv else "")
    return exact, make


def python_path() -> str:
    """The interpreter as a reader runs it: relative to the checkout when it lives in it (the
    project's .venv), so the page names no directory of the machine it ran on."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(REPO))
    except ValueError:
        return str(executable)


def code_revision() -> str:
    """The commit the workers run, and whether their code differs from it (read-only git)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "streams", "vprov", "tables", "avro_schemas"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git checkout)"
    return f"`{head.strip()}`" + (" with uncommitted changes" if dirty.strip() else "")


class Monitor:
    """Samples the workers' RSS (called from the load generator's loop) and fails fast when a
    worker died: a benchmark of a dead worker would only measure timeouts."""

    def __init__(self, workers: dict[str, WorkerProcess]) -> None:
        self.workers = workers
        self.peak = dict.fromkeys(workers, 0)
        self.phase_peak = dict.fromkeys(workers, 0)
        self.trend: list[tuple[int, dict[str, int]]] = []  # (vehicles in state, RSS)
        self._last_trend = 0.0

    def sample(self) -> dict[str, int]:
        now = {}
        for name, worker in self.workers.items():
            if not worker.alive():
                raise WorkerDied(f"the {name} worker exited; see {worker.log_path}\n"
                                 f"{worker.log_tail()}")
            rss = worker.rss()
            now[name] = rss
            self.peak[name] = max(self.peak.get(name, 0), rss)
            self.phase_peak[name] = max(self.phase_peak.get(name, 0), rss)
        return now

    def start_phase(self) -> None:
        self.phase_peak = dict.fromkeys(self.workers, 0)

    def tick(self, now: float, phase: PhaseResult) -> None:
        rss = self.sample()
        if phase.name == "state" and now - self._last_trend >= 2.0:
            self._last_trend = now
            self.trend.append((phase.completed, rss))


class Bench:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.argv = argv
        self.run_id = datetime.now().strftime("%m%d%H%M%S")
        self.prefix = f"vbench-{self.run_id}"
        self.tag = fleet.run_tag(self.prefix)
        self.dir = Path(args.out) / self.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.region = args.region
        self.workers: dict[str, WorkerProcess] = {}
        self.broker = Broker(args.bootstrap)
        self.gen: LoadGenerator | None = None
        self.next_index = 1
        self.notes: list[str] = []  # observations for the report, made while running
        self.me = psutil.Process()
        # every broker of the bootstrap list (three on a three-broker stack): their CPU is the
        # cluster's, not other work's
        broker_ports = [port_of(address) for address in args.bootstrap.split(",")]
        broker_pids = [listener_pid(port) for port in broker_ports if port]
        self.broker_pid = broker_pids[0] if broker_pids else None
        redis_port = port_of(args.redis_url)
        self.redis_pid = listener_pid(redis_port) if redis_port else None
        self.samplers = {"broker": ProcessSampler(*broker_pids),
                         "redis": ProcessSampler(self.redis_pid)}
        self.edge_settings: EdgeSettings | None = None

    # --- set-up and tear-down ---------------------------------------------------------------

    def start(self) -> None:
        a = self.args
        for port in a.web_ports:
            if listener_pid(port) is not None:
                raise SystemExit(f"port {port} is in use; pick others with --ports")
        self.config = write_config(self.dir / "config.toml", self.prefix, a.bootstrap,
                                   a.redis_url, (self.region,), a.partitions or None,
                                   a.producer_client, kafka=dict(a.kafka))
        self.cat = Catalogue(self.config)
        ensure_topics(a.bootstrap, self.cat.all())
        env = worker_env(PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        config_path = self.dir / "config.toml"
        data = self.dir / "data"
        self.workers = {
            name: WorkerProcess(name, port, config_path, data,
                                self.dir / f"worker-{region or name}.log", region, env, cwd=REPO)
            for name, port, region in (("global", a.web_ports[0], None),
                                       ("regional", a.web_ports[1], self.region))}
        print(f"run {self.run_id}: starting workers (logs in {self.dir})", file=sys.stderr)
        for worker in self.workers.values():
            worker.start()
        for worker in self.workers.values():
            worker.wait_ready(180)
        self.monitor = Monitor(self.workers)
        self.gen = LoadGenerator(self.config, self.region, self.tag)

    def stop(self) -> None:
        if self.gen is not None:
            with contextlib.suppress(Exception):  # tear-down goes on whatever happens
                self.gen.close()
        for worker in self.workers.values():
            worker.stop()
        if not hasattr(self, "cat"):
            return  # nothing was created yet
        if self.args.keep:
            print(f"kept topics and groups with prefix {self.prefix} and the state in "
                  f"{self.dir / 'data'}", file=sys.stderr)
            return
        # The workers' RocksDB state is large after a state load; logs and figures stay.
        for data in ("data", "data-2"):
            shutil.rmtree(self.dir / data, ignore_errors=True)
        try:
            groups = [self.cat.global_app_id, self.cat.regional_app_id(self.region),
                      *(f"{self.prefix}-baseline-{run}" for run in range(3))]
            deleted = self.broker.delete_run(self.prefix, groups)
            print(f"removed {len(deleted)} topics of {self.prefix}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001
            print(f"could not remove the run's topics: {exc}", file=sys.stderr)
        self._clean_redis()

    def _clean_redis(self) -> None:
        """The identities this run's devices left (device ids carry the run tag)."""
        try:
            import redis

            client = redis.Redis.from_url(self.args.redis_url, socket_timeout=10)
            batch: list[bytes] = []
            removed = 0
            for key in client.scan_iter(match=f"vprov:identity:*:d{self.tag.lower()}*",
                                        count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    removed += client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += client.unlink(*batch)
            print(f"removed {removed} identities from Redis", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001
            print(f"could not clean Redis: {exc}", file=sys.stderr)

    # --- measuring --------------------------------------------------------------------------

    def cpu_snapshot(self) -> dict[str, float]:
        snap: dict[str, float] = {}
        for worker in self.workers.values():
            # Per role: with a second worker per role (--scale-out) both count together.
            user, system = worker.cpu_split()
            snap[worker.role] = snap.get(worker.role, 0.0) + user + system
            snap[f"{worker.role}.system"] = snap.get(f"{worker.role}.system", 0.0) + system
        snap.update({name: s.cpu_seconds() for name, s in self.samplers.items()})
        times = self.me.cpu_times()
        snap["client"] = times.user + times.system
        snap["machine"] = machine_busy_seconds()
        snap["wall"] = time.monotonic()
        return snap

    @staticmethod
    def usage(before: dict[str, float], after: dict[str, float]) -> Usage:
        cpu = {k: after[k] - before.get(k, 0.0) for k in after
               if k not in ("machine", "wall") and "." not in k}
        system = {k.split(".")[0]: after[k] - before.get(k, 0.0) for k in after
                  if k.endswith(".system")}
        return Usage(wall=after["wall"] - before["wall"], cpu=cpu,
                     machine=after["machine"] - before["machine"], system=system)

    def input_topics(self) -> tuple[list[str], list[str]]:
        """(topics the workers consume, topics only the client writes to)."""
        c = self.cat
        consumed = [c.registrations, c.system_registrations, c.query, c.query_by_system,
                    c.query_by_device, c.vehicle_commands, c.rehome_result,
                    *c.ingress_routes().values(),
                    c.rehome(self.region), c.device(self.region),
                    *c.ingress_routes(self.region).values()]
        return consumed, [c.query, c.device(self.region), c.registrations]

    def regional_topics(self) -> list[str]:
        """The topics the regional worker's consumer group reads."""
        return [self.cat.rehome(self.region), self.cat.device(self.region),
                *self.cat.ingress_routes(self.region).values()]

    def forwarded(self) -> dict[str, int | None]:
        """Each worker's ``forwarded`` counter (/health); None when it does not answer."""
        counts: dict[str, int | None] = {}
        for name, worker in self.workers.items():
            value = None
            for _ in range(3):  # a busy worker may miss the 2 s timeout once
                health = worker.health()
                if health is not None:
                    value = health.get("forwarded")
                    break
                time.sleep(0.5)
            counts[name] = value if isinstance(value, int) else None
        return counts

    def wait_idle(self, timeout: float = 900.0, quiet_seconds: float = 5.0) -> None:
        """Until the workers have no backlog, so that no phase inherits another's.

        Idle is: both consumer groups committed the end of every topic they consume, or, when
        a commit is stuck behind processed records, neither worker's processed count moved for
        ``quiet_seconds``. The second case is written into the report's notes."""
        consumed, _ = self.input_topics()
        regional = self.regional_topics()
        groups = {self.cat.global_app_id: [t for t in consumed if t not in regional],
                  self.cat.regional_app_id(self.region): regional}
        deadline = time.monotonic() + timeout
        said = False
        last: tuple[int | None, ...] = ()
        still_since = time.monotonic()
        while True:
            self.monitor.sample()
            lag: dict[str, int] = {}
            for group, topics in groups.items():
                ends = self.broker.end_offsets(topics)
                done = self.broker.committed(group, topics)
                lag.update({t: ends[t] - done[t] for t in topics if ends[t] > done[t]})
            if not lag:
                return
            counts = tuple((w.health() or {}).get("processed") for w in self.workers.values())
            now = time.monotonic()
            if counts != last or None in counts:  # no answer from a busy worker: not quiet
                last, still_since = counts, now
            elif now - still_since >= quiet_seconds:
                note = ("Committed offsets stayed behind records the workers had processed "
                        "(idle, yet the group lagged: " + ", ".join(
                            f"`{t}` {n:,}" for t, n in sorted(lag.items())) + ").")
                if note not in self.notes:
                    self.notes.append(note)
                print(f"workers idle although their commits lag: {lag}", file=sys.stderr)
                return
            if not said:
                print(f"waiting for the workers to finish a backlog ({sum(lag.values()):,} "
                      "records)", file=sys.stderr)
                said = True
            if now > deadline:
                raise TimeoutError(f"workers still behind after {timeout:.0f}s: {lag}")
            time.sleep(1.0)

    def phase(self, result: PhaseResult, *, rate: float | None = None, window: int = 0
              ) -> Outcome:
        assert self.gen is not None
        self.wait_idle()
        topics = [s.name for s in self.cat.all()]
        forwarded_before = self.forwarded()
        before_offsets = self.broker.end_offsets(topics)
        self.monitor.start_phase()
        joins_before = self.group_joins()
        before = self.cpu_snapshot()
        first = self.next_index
        self.next_index += result.vehicles
        self.gen.run(result, first, rate=rate, window=window, timeout=self.args.level_timeout,
                     tick=self.monitor.tick)
        after = self.cpu_snapshot()
        self.monitor.sample()
        after_offsets = self.broker.end_offsets(topics)
        forwarded_after = self.forwarded()
        records = {t: after_offsets[t] - before_offsets[t] for t in topics}
        consumed_topics, client_topics = self.input_topics()
        consumed = sum(records[t] for t in consumed_topics)
        produced = sum(n for t, n in records.items() if t not in client_topics)
        forwarded: dict[str, int | None] = {}
        for name, start in forwarded_before.items():
            end = forwarded_after.get(name)
            forwarded[name] = end - start if start is not None and end is not None else None
        regional = set(self.regional_topics())
        by_worker = {"regional": sum(records[t] for t in consumed_topics if t in regional)}
        by_worker["global"] = consumed - by_worker["regional"]
        return Outcome(result=result, usage=self.usage(before, after), records=records,
                       consumed=consumed, produced=produced,
                       rss_peak=dict(self.monitor.phase_peak), forwarded=forwarded,
                       rejoins=self.group_joins() - joins_before, consumed_by=by_worker)

    def group_joins(self) -> int:
        """How often the workers joined their groups so far, from their logs."""
        return sum(w.log_path.read_text(errors="replace").count(GROUP_JOINED)
                   for w in self.workers.values() if w.log_path.exists())

    def judge(self, outcome: Outcome) -> None:
        r = outcome.result
        a = self.args
        reasons = []
        if r.failed or r.unanswered:
            reasons.append(f"{r.failed + r.unanswered} not completed")
        if r.rate and r.achieved_rate < a.min_completion * r.rate:
            reasons.append(f"completion {r.achieved_rate / r.rate * 100:.0f}% of offered")
        if r.drain_seconds > a.drain_limit:
            reasons.append(f"drain {r.drain_seconds:.1f} s")
        outcome.sustained = not reasons
        outcome.verdict = ", ".join(reasons)

    # --- phases -----------------------------------------------------------------------------

    def register(self, vehicles: int) -> float:
        assert self.gen is not None
        began = time.monotonic()
        topic = self.cat.system_registrations
        before = self.broker.end_offsets([topic])[topic]
        self.gen.register_range(1, vehicles, serde_from_config(self.config))
        self.wait_indexed(vehicles, before, timeout=max(300.0, vehicles / 50))
        return time.monotonic() - began

    def wait_indexed(self, vehicles: int, before: int, timeout: float) -> None:
        """Registration is ingested once the internal system-registrations topic holds one
        record per registered device, and indexed once the workers are idle; a sample of the
        systems is then read back over HTTP."""
        deadline = time.monotonic() + timeout
        topic = self.cat.system_registrations
        wanted = vehicles * len(fleet.make_vehicle(self.tag, 1, self.region).devices)
        bar = progress("indexing registrations", total=wanted)
        try:
            while True:
                self.monitor.sample()
                done = self.broker.end_offsets([topic])[topic] - before
                bar.update(min(done, wanted) - bar.n)
                if done >= wanted:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"registrations not ingested after {timeout:.0f}s "
                                       f"({done:,}/{wanted:,} on {topic})")
                time.sleep(1.0)
        finally:
            bar.close()
        self.wait_idle(timeout=max(60.0, deadline - time.monotonic()))
        sample = random.Random(self.run_id).sample(range(1, vehicles + 1), min(20, vehicles))
        assert self.gen is not None
        if not wait_indexed(self.workers["global"].web,
                            [self.gen.vehicle(i) for i in sorted({*sample, vehicles})], deadline):
            raise TimeoutError("a sample of the registered systems is not indexed")

    def run(self) -> RunReport:
        a = self.args
        began = time.monotonic()
        report = self.new_report()
        if FIRST_TIER in report.machine.broker_jvm:
            note = (f"The broker ran with {FIRST_TIER} (the local stack's default, for a "
                    "demo's cold start): its steady state costs more CPU than with the JVM's "
                    "defaults. For steady-state figures: make down; KAFKA_JVM_OPTS= make up.")
            print(note, file=sys.stderr)
            self.notes.append(note)
        client_cpu0 = sum(self.me.cpu_times()[:2])
        if a.edge:  # before anything is measured: the brokers must be there
            self.edge_settings = edge_settings(self.region)
            check_brokers(self.edge_settings)
        self.start()
        report.deployment = self.deployment()
        level_vehicles = [max(1, round(rate * a.seconds)) for rate in a.level_rates]
        total = self.vehicles_needed(level_vehicles)
        report.registered_vehicles = total
        report.registration_seconds = self.register(total)
        print(f"registered {total:,} vehicles in {report.registration_seconds:.0f} s",
              file=sys.stderr)
        if a.state_vehicles > 0:
            self.load_state(report)
        self.levels(report, level_vehicles)
        self.other_phases(report, level_vehicles)
        self.finish(report, client_cpu0, began)
        return report

    def new_report(self) -> RunReport:
        a = self.args
        exact, make = command_line(self.argv)
        host: Machine = machine(self.broker_pid, a.redis_url)
        return RunReport(
            run_id=self.run_id,
            started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            command=exact, make_command=make, machine=host, deployment=[],
            settings={"region": self.region, "seconds": a.seconds,
                      "state_vehicles": a.state_vehicles, "state_window": a.state_window,
                      "drain_limit": a.drain_limit, "min_completion": a.min_completion,
                      "level_timeout": a.level_timeout,
                      "max_unsustained": a.max_unsustained,
                      "misrouted": a.misrouted_shares,
                      "ingress_rate_given": bool(a.ingress_rate)},
            targets=Targets(rate=a.target_rate, p99_ms=a.target_p99_ms, rss_mb=a.target_rss_mb,
                            state_vehicles=a.target_state, reference_rate=a.target_cpu_rate,
                            cpu_ms=a.target_cpu_ms, agent_ratio=a.target_agent_ratio),
            notes=list(a.note),
        )

    def deployment(self) -> list[tuple[str, str]]:
        a = self.args
        tried = [("settings tried", ", ".join(f"`kafka.{k} = {v!r}`" for k, v in a.kafka))
                 ] if a.kafka else []
        return tried + [
            ("code under test", code_revision()),
            ("workers", f"`vprov worker --role global`, `vprov worker --role regional --region "
                        f"{self.region}`; one process each, web ports {a.ports}"),
            ("app prefix / topics", f"`{self.prefix}` (topics `{self.prefix}.*`, "
                                    f"{self.config.partitions} partitions, replication "
                                    f"{self.config.replication_factor})"),
            ("broker", f"{a.bootstrap}"),
            ("Redis", a.redis_url),
            ("levels", f"{a.levels} vehicles/s, {a.seconds:g} s each"),
            ("devices per vehicle", "2 (TCU primary, IVI), two chipsets each"),
        ]

    def vehicles_needed(self, level_vehicles: list[int]) -> int:
        """Every vehicle the run's phases will use: all are registered before the first."""
        a = self.args
        profile_vehicles = round(max(a.level_rates + [a.profile_rate]) * a.profile_seconds) \
            if a.profile else 0
        scale_vehicles = sum(level_vehicles) * (bool(a.scale_out) + bool(a.large_state_vehicles))
        # The ingress rate may be chosen after the levels: register for the highest it can be.
        ingress_vehicles = len(a.misrouted_shares) * max(
            1, round(max(a.level_rates + [a.ingress_rate]) * a.seconds))
        return (a.state_vehicles + sum(level_vehicles) + profile_vehicles + ingress_vehicles
                + scale_vehicles)

    def load_state(self, report: RunReport) -> None:
        a = self.args
        time.sleep(a.pause)
        outcome = self.phase(PhaseResult("state", None, a.state_vehicles),
                             window=a.state_window)
        time.sleep(5.0)  # let the workers settle (flushes, commits) before reading RSS
        rss_after = self.monitor.sample()
        report.state = StateLoad(outcome, rss_after, list(self.monitor.trend))
        print(f"state load: {outcome.result.completed:,} vehicles, RSS after: "
              + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in rss_after.items()),
              file=sys.stderr)

    def levels(self, report: RunReport, level_vehicles: list[int]) -> None:
        a = self.args
        for rate, vehicles in zip(a.level_rates, level_vehicles, strict=True):
            failed = [o for o in report.levels if not o.sustained]
            if len(failed) >= a.max_unsustained or any(o.result.unanswered for o in failed):
                report.skipped_levels.append(rate)
                self.next_index += vehicles
                continue
            time.sleep(a.pause)
            outcome = self.phase(PhaseResult(f"{rate:g}/s", rate, vehicles), rate=rate)
            self.judge(outcome)
            report.levels.append(outcome)
            q = summary_ms(outcome.result.query_latency)
            print(f"level {rate:g}/s: achieved {outcome.result.achieved_rate:.1f}/s, query p99 "
                  f"{q['p99']:.0f} ms, sustained: {outcome.sustained} {outcome.verdict}",
                  file=sys.stderr)

    def other_phases(self, report: RunReport, level_vehicles: list[int]) -> None:
        """After the levels, in this order: ingress, baseline, client floor, restore, standby
        cost, edge, profile, scale-out."""
        a = self.args
        if a.misrouted_shares:
            self.ingress(report)
        time.sleep(a.pause)
        self.baseline(report)
        if a.floor_rates:
            self.wait_idle()
            report.floor = run_floor(a.bootstrap, self.broker, self.prefix,
                                     self.config.partitions, a.floor_rates, a.floor_seconds,
                                     self.dir)
        if a.restore_vehicles or a.restore_faust_vehicles:
            self.wait_idle()
            report.restore = run_restore(a.bootstrap, a.redis_url, self.dir / "restore",
                                         a.restore_vehicles, a.restore_faust_vehicles,
                                         a.web_ports[0] + 10)
        if a.standby_vehicles:
            self.wait_idle()
            report.standby_cost = run_standby_cost(a.bootstrap, a.redis_url,
                                                   self.dir / "standby", a.standby_vehicles,
                                                   a.standby_rate, a.web_ports[0] + 20)
        if a.edge:
            self.edge(report)
        if a.profile:
            time.sleep(a.pause)
            self.profile(report)
        if a.scale_out:
            time.sleep(a.pause)
            self.scale_out(report, level_vehicles)
        if a.large_state_vehicles:
            self.large_state(report, level_vehicles)

    def finish(self, report: RunReport, client_cpu0: float, began: float) -> None:
        report.rss_peak = dict(self.monitor.peak)
        report.client_cpu_seconds = sum(self.me.cpu_times()[:2]) - client_cpu0
        report.wall_seconds = time.monotonic() - began
        report.notes += self.notes
        report.notes.append(rejoins_note(report, self.config.session_timeout_ms))
        disturbed = [(f"{o.result.rate:g}/s", o) for o in report.levels]
        disturbed += [(f"misrouted share {p.share:g}", p.outcome) for p in report.ingress]
        disturbed = [(name, o) for name, o in disturbed if o.usage.other_percent > 10]
        if disturbed:
            report.notes.append(
                "Processes outside the benchmark used more than 10% of a core during "
                + ", ".join(f"{name} ({o.usage.other_percent:.0f}%)" for name, o in disturbed)
                + ": figures of those phases are disturbed by other work on the machine.")

    def edge(self, report: RunReport) -> None:
        """Its own deployment, with Mosquitto identities: the fleet over MQTT and straight onto
        Kafka at the same rate (bench/edge_bench.py)."""
        a = self.args
        assert self.edge_settings is not None
        self.wait_idle()
        port = a.web_ports[0] + 30
        report.deployment.append(
            ("edge phase", f"{max(1, round(a.edge_rate * a.edge_seconds))} vehicles per path at "
                           f"{a.edge_rate:g} vehicles/s, over MQTT then Kafka-direct; workers "
                           f"on web ports {port},{port + 1}, brokers "
                           f"{self.edge_settings.edge['global_endpoint']} and "
                           + ", ".join(self.edge_settings.gateways.values())))
        report.edge = run_edge(a.bootstrap, a.redis_url, self.dir / "edge", self.region,
                               a.edge_rate, a.edge_seconds, port, self.edge_settings,
                               timeout=max(120.0, a.level_timeout))

    def scale_out(self, report: RunReport, level_vehicles: list[int]) -> None:
        """A second worker per role joins each consumer group (the partitions split between
        the two, the new one restores its tables from the changelogs); then the levels again."""
        a = self.args
        config_path = self.dir / "config.toml"
        extra = {f"{w.role}-2": WorkerProcess(w.role, port, config_path, self.dir / "data-2",
                                              self.dir / f"worker-{w.role}-2.log", w.region,
                                              w.env, cwd=REPO)
                 for w, port in zip(list(self.workers.values()),
                                    (a.web_ports[0] + 2, a.web_ports[1] + 2), strict=True)}
        print("scale-out: starting a second worker per role", file=sys.stderr)
        began = time.monotonic()
        for name, worker in extra.items():
            self.workers[name] = worker.start()
        for worker in self.workers.values():
            worker.wait_ready(300)
        self.wait_idle()
        report.scale_out_seconds = time.monotonic() - began
        report.deployment.append(
            ("scale-out phases", f"a second worker per role (web ports {a.web_ports[0] + 2},"
                                 f"{a.web_ports[1] + 2}), then the levels again"))
        report.scale_out = self.levels_again(report, level_vehicles, "2 per role",
                                             "two workers per role")

    def levels_again(self, report: RunReport, level_vehicles: list[int], name: str,
                     label: str) -> list[Outcome]:
        """The levels the first pass ran, again (a level skipped there is skipped here)."""
        a = self.args
        outcomes = []
        for rate, vehicles in zip(a.level_rates, level_vehicles, strict=True):
            if rate not in [o.result.rate for o in report.levels]:
                self.next_index += vehicles
                continue
            time.sleep(a.pause)
            outcome = self.phase(PhaseResult(f"{name} {rate:g}/s", rate, vehicles), rate=rate)
            self.judge(outcome)
            outcomes.append(outcome)
            q = summary_ms(outcome.result.query_latency)
            print(f"{label}, level {rate:g}/s: achieved {outcome.result.achieved_rate:.1f}/s, "
                  f"query p99 {q['p99']:.0f} ms, sustained: {outcome.sustained} "
                  f"{outcome.verdict}", file=sys.stderr)
        return outcomes

    def large_state(self, report: RunReport, level_vehicles: list[int]) -> None:
        """The levels again with a large state: synthetic vehicles written straight into the
        global and regional changelogs, the two workers restarted (they read the state in bulk,
        streams/repairs/bulk_restore.py), then the same levels; peak RSS throughout."""
        a = self.args
        self.wait_idle()
        for name in [n for n in self.workers if n not in ("global", "regional")]:
            self.workers.pop(name).stop()  # the scale-out's second workers
        for worker in self.workers.values():
            worker.stop()
        vehicles = a.large_state_vehicles
        print(f"large state: writing {vehicles:,} vehicles into the changelogs",
              file=sys.stderr)
        # a short tag: the synthetic ids keep their index digits (vprov.sim.synthetic_state)
        written = write_state(self.config, vehicles, f"L{self.run_id[-5:]}", self.region)
        began = time.monotonic()
        self.monitor.start_phase()
        for worker in self.workers.values():
            worker.start()
        for worker in self.workers.values():
            worker.wait_ready(900, tick=self.monitor.sample)  # the restore's memory counts too
        report.large_state_ready_seconds = time.monotonic() - began
        report.large_state_write_rate = written
        print(f"large state: workers ready after {report.large_state_ready_seconds:.0f} s; "
              f"waiting up to {SETTLE_TIMEOUT:.0f} s for the machine to settle", file=sys.stderr)
        report.large_state_settle = wait_settled(
            machine_busy_seconds, self.samplers["broker"].cpu_seconds, SETTLE_TIMEOUT,
            tick=self.monitor.sample)
        restore_peak = dict(self.monitor.phase_peak)
        last = report.large_state_settle[-1]
        print(f"large state: {'settled' if settled(report.large_state_settle) else 'not settled'}"
              f" after {last.seconds:.0f} s (machine {last.busy_cores:.2f} cores, "
              f"{last.writeback_mb:.0f} MB to write back)", file=sys.stderr)
        report.large_state = self.levels_again(report, level_vehicles, "large state",
                                               "large state")
        report.large_state_vehicles = vehicles
        report.large_state_rss_peak = {
            name: max([restore_peak.get(name, 0),
                       *(o.rss_peak.get(name, 0) for o in report.large_state)])
            for name in self.workers}

    def ingress(self, report: RunReport) -> None:
        """One paced phase per misrouted share: what the ingress' forwarding hop costs."""
        a = self.args
        if self.config.partitions < 2:
            report.ingress_note = ("Not run: with one partition per topic no record can be "
                                   "misrouted.")
            print(report.ingress_note, file=sys.stderr)
            return
        rate = a.ingress_rate or report.sustained_rate or min(a.level_rates)
        report.ingress_rate = rate
        vehicles = max(1, round(rate * a.seconds))
        routes = self.cat.ingress_routes()
        routes.update(self.cat.ingress_routes(self.region))
        report.deployment.append(
            ("ingress phases", f"misrouted shares {a.misrouted} at {rate:g} vehicles/s, "
                               f"{a.seconds:g} s each"))
        for share in a.misrouted_shares:
            time.sleep(a.pause)
            result = PhaseResult(f"misrouted {share:g}", rate, vehicles, misrouted=share)
            outcome = self.phase(result, rate=rate)
            self.judge(outcome)
            phase = IngressPhase(share, outcome, sorted(routes.values()))
            report.ingress.append(phase)
            q = summary_ms(result.query_latency)
            print(f"misrouted share {share:g} at {rate:g}/s: achieved "
                  f"{result.achieved_rate:.1f}/s, query p99 {q['p99']:.0f} ms, worker CPU "
                  f"{phase.worker_cpu_ms_per_vehicle:.1f} ms/vehicle, forwarded "
                  f"{phase.forwarded_total:,} ({result.misrouted_records:,} sent misrouted), "
                  f"sustained: {outcome.sustained} {outcome.verdict}", file=sys.stderr)

    def baseline(self, report: RunReport) -> None:
        ref = report.reference_level()
        self.wait_idle()
        print(f"baseline relay: three {self.args.baseline_seconds:g} s windows", file=sys.stderr)
        before = self.cpu_snapshot()
        report.baseline = run_baseline(self.args.bootstrap, self.broker.admin, self.prefix,
                                       self.config.partitions, self.region, self.dir,
                                       seconds=self.args.baseline_seconds)
        usage = self.usage(before, self.cpu_snapshot())
        if ref is not None:
            report.baseline_reference = (
                f"Pipeline: {ref.consumed:,} worker-consumed records in the "
                f"{ref.result.window:.0f} s of the {ref.result.rate:g} vehicles/s level "
                f"({'sustained' if ref.sustained else 'not sustained'}) = "
                f"{ref.consumed_rate:,.0f} records/s "
                f"({ref.per_vehicle(ref.consumed):.1f} per vehicle); relay: "
                f"{report.baseline.records:,} records at {report.baseline.rate:,.0f} records/s "
                f"(broker CPU during the relay phase: {usage.percent('broker'):.0f}% of a core)")

    def profile(self, report: RunReport) -> None:
        a = self.args
        py_spy = profiles.find_py_spy(a.py_spy)
        if py_spy is None:
            report.profile_note = ("Not run: py-spy was not found (`pip install py-spy`, or "
                                   "`--py-spy PATH`).")
            print(report.profile_note, file=sys.stderr)
            return
        rate = a.profile_rate
        if not rate:
            # Below saturation: on a saturated machine the samples would mostly show threads
            # waiting for a core, not what they do with one.
            rate = report.sustained_rate or min(a.level_rates)
        vehicles = round(rate * a.profile_seconds)
        print(f"profiling both workers at {rate:g} vehicles/s for {a.profile_seconds:g} s",
              file=sys.stderr)
        spies = {}
        for name, worker in self.workers.items():
            out = self.dir / f"profile-{name}.txt"
            spies[name] = (profiles.record(py_spy, worker.pid, a.profile_seconds + 1, out,
                                           PROFILE_HZ), out)
        time.sleep(1.0)  # py-spy attaches
        threads_before = {name: w.thread_cpu() for name, w in self.workers.items()}
        report.profile_phase = self.phase(PhaseResult(f"profile {rate:g}/s", rate, vehicles),
                                          rate=rate)
        wall = report.profile_phase.usage.wall
        for name, worker in self.workers.items():
            after = worker.thread_cpu()
            used = {t: after[t] - threads_before[name].get(t, 0.0) for t in after}
            report.thread_cpu[name] = {t: 100 * v / wall for t, v in
                                       sorted(used.items(), key=lambda kv: -kv[1]) if v > 0}
        self.judge(report.profile_phase)
        for name, (proc, out) in spies.items():
            try:
                proc.wait(60)
            except Exception:  # noqa: BLE001 - a hung sampler must not hang the run
                proc.kill()
            label = "global" if name == "global" else f"regional {self.region}"
            report.profiles.append(profiles.parse(out, label, a.profile_seconds + 1,
                                                  PROFILE_HZ))


def rejoins_note(report: RunReport, session_timeout_ms: int) -> str:
    """Whether a worker was evicted from its group while busy: the guard rail of the session
    timeout (a paced phase changes no group, so any join in one is an eviction)."""
    phases = [*report.levels, *report.scale_out]
    rejoined = [f"{o.result.name} ({o.rejoins})" for o in phases if o.rejoins]
    if not rejoined:
        return (f"No worker rejoined its group during the {len(phases)} paced phases "
                f"(kafka.session_timeout_ms = {session_timeout_ms}): no eviction under load.")
    return (f"Workers rejoined their groups during {', '.join(rejoined)} with "
            f"kafka.session_timeout_ms = {session_timeout_ms}: a worker was evicted under load, "
            "or the group changed; their figures include a rebalance.")


def plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses by field (``asdict`` would turn a Counter's items into
    keys), NaN as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def save_json(report: RunReport, path: Path) -> None:
    doc = plain(report)
    cost = report.ingress_cost()
    doc["summary"] = plain({
        "verdicts": report.verdicts(),
        "ratio": report.ratio,
        "vehicles_per_1000_relay_records": report.vehicles_per_krecords,
        "closed_loop_ratio": report.closed_loop_ratio,
        "ingress": [{"share": p.share, "sustained": p.outcome.sustained,
                     "achieved": p.outcome.result.achieved_rate,
                     "query_ms": summary_ms(p.outcome.result.query_latency),
                     "vehicle_ms": summary_ms(p.outcome.result.vehicle_latency),
                     "cpu_ms_per_vehicle": {w: p.outcome.cpu_ms_per_vehicle(w)
                                            for w in ("global", "regional")},
                     "consumed_per_vehicle": p.outcome.per_vehicle(p.outcome.consumed),
                     "forwarded": p.outcome.forwarded,
                     "forwarded_total": p.forwarded_total,
                     "misrouted_sent": p.outcome.result.misrouted_records}
                    for p in report.ingress],
        "extra_worker_cpu_ms_per_forwarded_record": cost[2] if cost else None,
        "edge": None if report.edge is None else {
            "rate": report.edge.rate, "vehicles_per_path": report.edge.vehicles,
            "paths": {p.via: {"completed": p.result.completed,
                              "query_ms": summary_ms(p.result.query_latency),
                              "device_ms": summary_ms(p.result.device_latency),
                              "load_average": p.load, "other_percent": p.other_percent}
                      for p in report.edge.paths},
            "bridges": {b.scope: {"cpu_seconds": b.cpu_seconds, "to_kafka": b.to_kafka,
                                  "to_devices": b.to_devices,
                                  "us_per_message": b.us_per_message,
                                  "idle_cpu_percent": b.idle_cpu_percent}
                        for b in report.edge.bridges},
            "bridge_us_per_message": report.edge.us_per_message},
        "levels": [{"rate": o.result.rate, "sustained": o.sustained,
                    "achieved": o.result.achieved_rate,
                    "query_ms": summary_ms(o.result.query_latency),
                    "vehicle_ms": summary_ms(o.result.vehicle_latency)}
                   for o in report.levels],
    })
    path.write_text(json.dumps(doc, indent=1))


# Runs saved before bench/ was a package name its modules bare ("report.RunReport").
BARE_MODULES = {"client_floor", "deploy", "loadgen", "misroute", "profiles", "relay", "report",
                "restore", "standby_cost"}  # modules added since (edge_bench, settle) never are


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(f"bench.{module}" if module in BARE_MODULES else module, name)


def load_report(run_dir: Path) -> RunReport:
    """The figures a finished run saved (``report.pickle``), in the current classes."""
    with (run_dir / "report.pickle").open("rb") as handle:
        report: RunReport = _Unpickler(handle).load()
    # A run saved before a field existed: give it the field's default.
    for f in dataclasses.fields(RunReport):
        if f.name not in vars(report):
            setattr(report, f.name, f.default_factory()
                    if f.default_factory is not dataclasses.MISSING else f.default)
    return report


def write_doc(report: RunReport, doc: Path) -> None:
    img = doc.parent / "img"
    latency_png = img / "pipeline-latency.png"
    rss_png = img / "pipeline-state-rss.png"
    ingress_png = img / "pipeline-ingress.png"
    if report.levels:
        plot_latency(report, latency_png)
    if report.ingress:
        plot_ingress(report, ingress_png)
    has_trend = report.state is not None and bool(report.state.trend)
    if has_trend:
        plot_rss(report, rss_png)
    findings = FINDINGS.read_text(encoding="utf-8") if FINDINGS.exists() else None
    doc.write_text(markdown(
        report,
        os.path.relpath(latency_png, doc.parent) if report.levels else None,
        os.path.relpath(rss_png, doc.parent) if has_trend else None,
        findings,
        os.path.relpath(ingress_png, doc.parent) if report.ingress else None), encoding="utf-8")
    print(f"wrote {doc} and plots in {img}")


def render(run_dir: Path, doc: Path) -> int:
    """Same figures, new text (e.g. after editing bench/findings.md): no measuring."""
    report = load_report(run_dir)
    # Summaries of the raw samples follow the current code.
    report.profiles = [profiles.parse(run_dir / f"profile-{p.name.split()[0]}.txt",
                                      p.name, p.seconds, p.rate) for p in report.profiles]
    print(console(report))
    write_doc(report, doc)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.render:
        return render(Path(args.out) / args.render, Path(args.doc))

    def on_term(signum: int, frame: object) -> None:
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args, argv)
    try:
        report = bench.run()
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted: stopping the workers", file=sys.stderr)
        return 130
    except (WorkerDied, TimeoutError, RuntimeError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
    print(console(report))
    try:
        save_json(report, bench.dir / "results.json")
        with (bench.dir / "report.pickle").open("wb") as handle:
            pickle.dump(report, handle)
        print(f"\nraw figures: {bench.dir / 'results.json'}")
    except (OSError, TypeError, ValueError, pickle.PicklingError) as exc:
        print(f"could not save the figures: {exc}", file=sys.stderr)
    if not args.no_doc:
        write_doc(report, Path(args.doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
