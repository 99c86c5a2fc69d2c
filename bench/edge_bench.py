"""The device edge's cost: the same fleet at the same offered rate over MQTT, through the edge
bridges, and straight onto Kafka (``--edge`` of ``bench.pipeline_bench``, or alone).

A deployment of its own (own app prefix, topics and state; a global and one regional worker) with
``edge.identity = "mosquitto"``: on both paths the flows write the device identities into the
Mosquitto brokers (registration creates each device's global identity, the rehome and the
provisioning its regional ones), so both paths pay the same identity writes and differ only in
how the devices reach Kafka. The brokers are expected, as Kafka is: their settings come from the
environment (``VPROV_EDGE_*``, ``VPROV_GATEWAY_ENDPOINT_<R>``), else from ``scripts/stack.sh env``
(``make up EDGE=mqtt`` starts them).

The MQTT path runs first: one ``vprov edge`` bridge per broker (global and the region) and the
fleet's primaries as MQTT clients (``FleetDriver.use_mqtt``). The bridges' CPU is read from
``/proc/<pid>/stat`` right before and after the fleet; the messages they forwarded are the records
appended meanwhile to each scope's request topic (device -> Kafka: only the bridges write there)
and answer topic (Kafka -> device: each answer is published to its device). Then the bridges stop
(they would publish the Kafka path's answers to no one), the run's identities are removed from
the brokers, and the Kafka-direct path drives fresh vehicles. Each path registers its own vehicles
just before it, so each starts with the same identities in the brokers.

    eval "$(EDGE=mqtt scripts/stack.sh env)"
    .venv/bin/python -m bench.edge_bench --rate 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.deploy import (
    REPO,
    Broker,
    ProcessSampler,
    add_stack_arguments,
    listener_pid,
    machine_busy_seconds,
    port_of,
    worker_env,
    write_config,
)
from bench.loadgen import LoadGenerator, PhaseResult, summary_ms
from vprov.config import Config
from vprov.core.outputs import GLOBAL_SCOPE
from vprov.edge.dynsec import ROLE_PREFIX, ControlChannel
from vprov.edge.mqtt import OUT_FILTER, parse_endpoint, scope_endpoint
from vprov.kafka.avro import serde_from_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import WorkerProcess, start_all
from vprov.sim import fleet
from vprov.sim.fleet_driver import wait_indexed

# [edge] key -> the variable `scripts/stack.sh env` prints for it
EDGE_ENV = {
    "global_endpoint": "VPROV_EDGE_GLOBAL_ENDPOINT",
    "ca_location": "VPROV_EDGE_CA_LOCATION",
    "admin_username": "VPROV_EDGE_ADMIN_USERNAME",
    "admin_password": "VPROV_EDGE_ADMIN_PASSWORD",
    "bridge_username": "VPROV_EDGE_BRIDGE_USERNAME",
    "bridge_password": "VPROV_EDGE_BRIDGE_PASSWORD",
    "credential_secret": "VPROV_EDGE_CREDENTIAL_SECRET",
}
REQUIRED = ("global_endpoint", "admin_password", "bridge_password", "credential_secret")
PATHS = ("mqtt", "kafka")
CONTROL_BATCH = 50  # identity commands per control message at clean-up


class EdgeUnavailable(RuntimeError):
    """The Mosquitto brokers' settings are missing or a broker does not answer."""


# --- settings -----------------------------------------------------------------------------------

def parse_env(text: str) -> dict[str, str]:
    """``NAME=value`` lines, with or without ``export`` (what ``scripts/stack.sh env`` prints)."""
    found = {}
    for raw in text.splitlines():
        line = raw.strip()
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            try:
                found[name] = " ".join(shlex.split(value))
            except ValueError:
                found[name] = value
    return found


def stack_env() -> str:
    """What ``scripts/stack.sh env`` prints for the stack of this environment (empty on error)."""
    try:
        return subprocess.run([str(REPO / "scripts" / "stack.sh"), "env"], capture_output=True,
                              text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass
class EdgeSettings:
    edge: dict[str, str]  # keys of the [edge] table, identity = "mosquitto"
    gateways: dict[str, str]  # region -> its broker (regions.<R>.gateway_endpoint)
    source: str  # where they came from


def edge_settings(region: str, env: Mapping[str, str] | None = None,
                  fallback: Callable[[], str] = stack_env) -> EdgeSettings:
    """The brokers' settings: from ``env`` (default: the environment) when it names the global
    broker, else from ``fallback()`` (``scripts/stack.sh env``)."""
    values = dict(os.environ if env is None else env)
    source = "the environment"
    if not values.get(EDGE_ENV["global_endpoint"]):
        values.update(parse_env(fallback()))
        source = "`scripts/stack.sh env`"
    edge = {key: values[name] for key, name in EDGE_ENV.items() if values.get(name)}
    edge["identity"] = "mosquitto"
    gateway_name = f"VPROV_GATEWAY_ENDPOINT_{region}"
    missing = [EDGE_ENV[key] for key in REQUIRED if key not in edge]
    if not values.get(gateway_name):
        missing.append(gateway_name)
    if missing:
        raise EdgeUnavailable(
            f"the edge phase needs the Mosquitto brokers (global and {region}): "
            f"{', '.join(missing)} not set and not printed by scripts/stack.sh env; start them "
            f"with `make up EDGE=mqtt` (EDGE_REGIONS must include {region}) or "
            f"`EDGE=mqtt scripts/stack.sh up`, then eval \"$(scripts/stack.sh env)\"")
    return EdgeSettings(edge, {region: values[gateway_name]}, source)


def check_brokers(settings: EdgeSettings, timeout: float = 5.0) -> None:
    for url in (settings.edge["global_endpoint"], *settings.gateways.values()):
        endpoint = parse_endpoint(url)
        try:
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout).close()
        except OSError as exc:
            raise EdgeUnavailable(f"the MQTT broker at {endpoint} does not answer ({exc}); "
                                  "start it with `EDGE=mqtt scripts/stack.sh up`") from None


# --- the bridges --------------------------------------------------------------------------------

def proc_cpu_seconds(stat: str, ticks_per_second: int) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat`` (fields 14 and 15; the
    command name in parentheses may hold spaces and parentheses itself)."""
    fields = stat[stat.rindex(")") + 1:].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


class BridgeProcess:
    """``vprov edge --scope SCOPE`` in a process group of its own, logging to ``log_path``."""

    def __init__(self, scope: str, config_path: Path, log_path: Path,
                 env: Mapping[str, str]) -> None:
        self.scope = scope
        self.log_path = log_path
        self.env = dict(env)
        self.args = [sys.executable, "-m", "vprov.cli", "--config", str(config_path), "edge",
                     "--scope", scope]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the bridge says it is subscribed and consuming (the line scripts/demo.sh waits
        for)."""
        ready = f"edge bridge {self.scope}: {OUT_FILTER}"
        deadline = time.monotonic() + timeout
        while ready not in self.log_path.read_text(errors="replace"):
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.scope} edge bridge did not start; log: "
                                   f"{self.log_path}\n{self.log_tail()}")
            time.sleep(0.3)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            raise RuntimeError(f"the {self.scope} edge bridge exited; log: {self.log_path}\n"
                               f"{self.log_tail()}") from None
        return proc_cpu_seconds(stat, os.sysconf("SC_CLK_TCK"))

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


# --- what the phase found -----------------------------------------------------------------------

def us_per_message(cpu_seconds: float, messages: int) -> float | None:
    """CPU microseconds per message; None when nothing was forwarded."""
    return 1e6 * cpu_seconds / messages if messages > 0 else None


@dataclass
class BridgeCost:
    """One bridge over the MQTT path."""

    scope: str
    cpu_seconds: float
    to_kafka: int  # device messages written to the scope's request topic
    to_devices: int  # answers on the scope's answer topic, each published to its device
    idle_cpu_percent: float  # % of a core before the fleet started (the polling loop alone)
    wall: float = 0.0  # seconds of the MQTT path, over which ``cpu_seconds`` was spent

    @property
    def messages(self) -> int:
        return self.to_kafka + self.to_devices

    @property
    def us_per_message(self) -> float | None:
        return us_per_message(self.cpu_seconds, self.messages)

    @property
    def us_per_message_above_idle(self) -> float | None:
        """CPU per message less what the bridge would have spent idle over the same time: the
        cost a further message adds."""
        if self.wall <= 0:
            return None
        busy = max(0.0, self.cpu_seconds - self.idle_cpu_percent / 100 * self.wall)
        return us_per_message(busy, self.messages)


def combined(bridges: list[BridgeCost]) -> BridgeCost:
    """Every bridge together, as one."""
    return BridgeCost("both", sum(b.cpu_seconds for b in bridges),
                      sum(b.to_kafka for b in bridges), sum(b.to_devices for b in bridges),
                      sum(b.idle_cpu_percent for b in bridges),
                      max((b.wall for b in bridges), default=0.0))


@dataclass
class EdgePath:
    """The fleet on one path, and the CPU every process spent meanwhile."""

    via: str  # "mqtt" or "kafka"
    result: PhaseResult
    cpu: dict[str, float]  # CPU seconds per component over the path
    wall: float
    machine: float  # busy CPU seconds of the whole machine (all cores)
    load: tuple[float, float, float]  # load average as the path began
    records: dict[str, int] = field(default_factory=dict)  # appended per edge topic
    # seconds each device connection took to open (TCP and TLS, on the driver's one thread)
    connects: list[float] = field(default_factory=list)

    def percent(self, name: str) -> float:
        return 100.0 * self.cpu.get(name, 0.0) / self.wall if self.wall > 0 else 0.0

    @property
    def machine_percent(self) -> float:
        return 100.0 * self.machine / self.wall if self.wall > 0 else 0.0

    @property
    def other_percent(self) -> float:
        """Busy time of processes outside the phase (other work on the machine)."""
        known = sum(self.cpu.values())
        return max(0.0, 100.0 * (self.machine - known) / self.wall) if self.wall > 0 else 0.0

    def ms_per_vehicle(self, *names: str) -> float:
        """CPU milliseconds of the components ``names`` per completed vehicle."""
        return 1000 * sum(self.cpu.get(n, 0.0) for n in names) / max(self.result.completed, 1)


@dataclass
class EdgeReport:
    region: str
    rate: float
    seconds: float
    vehicles: int  # per path
    paths: list[EdgePath] = field(default_factory=list)
    bridges: list[BridgeCost] = field(default_factory=list)
    settings_from: str = ""
    identities_removed: int = 0

    def path(self, via: str) -> EdgePath | None:
        return next((p for p in self.paths if p.via == via), None)

    @property
    def us_per_message(self) -> float | None:
        """Both bridges' CPU per message they forwarded, both ways together."""
        return combined(self.bridges).us_per_message


PATH_LABEL = {"mqtt": "MQTT (device → broker → bridge → Kafka)", "kafka": "Kafka-direct"}
PATH_NAME = {"mqtt": "MQTT", "kafka": "Kafka-direct"}
PATH_HEADER = ["path", "completed", "achieved v/s", "query p50 ms", "query p95 ms",
               "query p99 ms", "query max ms", "device p50 ms", "device p95 ms",
               "device p99 ms", "device max ms", "sender lag p99 ms", "worker CPU ms/vehicle",
               "Mosquitto CPU ms/vehicle", "load avg (1 min)", "CPU other"]
BRIDGE_HEADER = ["bridge", "device → Kafka", "Kafka → device", "messages", "CPU s",
                 "µs CPU per message", "idle CPU (% of a core)", "µs per message above idle"]


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.0f}"  # NaN: no samples


def path_rows(report: EdgeReport) -> list[list[str]]:
    rows = []
    for p in report.paths:
        r = p.result
        q = summary_ms(r.query_latency)
        d = summary_ms(r.device_latency)
        rows.append([PATH_LABEL.get(p.via, p.via), f"{r.completed:,}/{r.vehicles:,}",
                     f"{r.achieved_rate:.1f}", *(_ms(q[k]) for k in ("p50", "p95", "p99", "max")),
                     *(_ms(d[k]) for k in ("p50", "p95", "p99", "max")),
                     _ms(summary_ms(r.send_lag)["p99"]),
                     f"{p.ms_per_vehicle('global', 'regional'):.1f}",
                     f"{p.ms_per_vehicle('mosquitto'):.1f}", f"{p.load[0]:.1f}",
                     f"{p.other_percent:.0f}%"])
    return rows


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def bridge_rows(report: EdgeReport) -> list[list[str]]:
    """One row per bridge, and one for all of them when there are several."""
    bridges = report.bridges + ([combined(report.bridges)] if len(report.bridges) > 1 else [])
    return [[b.scope, f"{b.to_kafka:,}", f"{b.to_devices:,}", f"{b.messages:,}",
             f"{b.cpu_seconds:.2f}", _us(b.us_per_message), f"{b.idle_cpu_percent:.1f}%",
             _us(b.us_per_message_above_idle)] for b in bridges]


def difference(over: float, under: float) -> str:
    """How much longer ``over`` took than ``under`` (ms), in words."""
    if over != over or under != under:
        return "not measured"
    gap = over - under
    if abs(gap) < 0.5:
        return "the same"
    return f"{abs(gap):.0f} ms {'more' if gap > 0 else 'less'}"


def differences(report: EdgeReport) -> dict[str, str] | None:
    """MQTT against Kafka-direct, per latency and percentile: ``query_p50``, ``device_p99``..."""
    mqtt, kafka = report.path("mqtt"), report.path("kafka")
    if mqtt is None or kafka is None:
        return None
    out = {}
    for kind in ("query", "device"):
        over = summary_ms(getattr(mqtt.result, f"{kind}_latency"))
        under = summary_ms(getattr(kafka.result, f"{kind}_latency"))
        for q in ("p50", "p99"):
            out[f"{kind}_{q}"] = difference(over[q], under[q])
    return out


def console_lines(report: EdgeReport) -> list[str]:
    out = [f"device edge: {report.vehicles} vehicles per path at {report.rate:g}/s "
           f"(global + {report.region}, Mosquitto identities)"]
    for p, row in zip(report.paths, path_rows(report), strict=True):
        out.append(f"  {p.via:>5}: {row[1]} completed, query p50/p95/p99/max {'/'.join(row[3:7])}"
                   f" ms, device {'/'.join(row[7:11])} ms, sender lag p99 {row[11]} ms, CPU "
                   f"ms/vehicle workers {row[12]} Mosquitto {row[13]}, load {row[14]}, "
                   f"other {row[15]}")
    for row in bridge_rows(report):
        out.append(f"  bridge {row[0]}: {row[3]} messages ({row[1]} to Kafka, {row[2]} to "
                   f"devices), {row[4]} CPU s = {row[5]} µs/message ({row[7]} above idle), "
                   f"idle {row[6]}")
    return out


# --- identities ---------------------------------------------------------------------------------

async def _remove_identities(config: Config, scope: str, device_prefix: str) -> int:
    """Delete every client and role of the devices whose id starts with ``device_prefix`` from
    the scope's broker; the number of clients deleted."""
    edge = config.edge
    channel = ControlChannel(scope, scope_endpoint(config, scope), edge.admin_username,
                             edge.admin_password, edge.ca_location, timeout=60.0)
    try:
        listed = await channel.call([
            {"command": "listClients", "verbose": False, "count": -1, "offset": 0},
            {"command": "listRoles", "verbose": False, "count": -1, "offset": 0}])
        clients = [c for c in (listed[0].get("data") or {}).get("clients") or ()
                   if isinstance(c, str) and c.startswith(device_prefix)]
        roles = [r for r in (listed[1].get("data") or {}).get("roles") or ()
                 if isinstance(r, str) and r.startswith(ROLE_PREFIX + device_prefix)]
        commands = [{"command": "deleteClient", "username": c} for c in clients]
        commands += [{"command": "deleteRole", "rolename": r} for r in roles]
        for i in range(0, len(commands), CONTROL_BATCH):
            await channel.call(commands[i:i + CONTROL_BATCH])
        return len(clients)
    finally:
        channel.close()


def remove_identities(config: Config, scopes: list[str], tag: str) -> int:
    """The identities a run's devices left in the brokers (device ids carry the run tag)."""
    return sum(asyncio.run(_remove_identities(config, scope, f"d{tag.lower()}"))
               for scope in scopes)


# --- the run ------------------------------------------------------------------------------------

class EdgeRun:
    """The edge phase's deployment, its two paths and its clean-up."""

    def __init__(self, bootstrap: str, redis_url: str, workdir: Path, region: str, rate: float,
                 seconds: float, port: int, settings: EdgeSettings, timeout: float) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.prefix = f"eb{uuid.uuid4().hex[:6]}"
        self.tag = fleet.run_tag(self.prefix)
        self.config_path = workdir / f"{self.prefix}.toml"
        self.config = write_config(self.config_path, self.prefix, bootstrap, redis_url,
                                   (region,), edge=settings.edge, gateways=settings.gateways)
        self.cat = Catalogue(self.config)
        self.broker = Broker(bootstrap)
        self.region, self.rate, self.timeout = region, rate, timeout
        self.scopes = [GLOBAL_SCOPE, region]
        self.vehicles = max(1, round(rate * seconds))
        self.report = EdgeReport(region, rate, seconds, self.vehicles,
                                 settings_from=settings.source)
        env = worker_env()
        self.data = workdir / f"data-{self.prefix}"
        self.workers = {
            role: WorkerProcess(role, port + i, self.config_path, self.data,
                                workdir / f"{self.prefix}-{role}.log", reg, env, cwd=REPO)
            for i, (role, reg) in enumerate((("global", None), ("regional", region)))}
        self.bridges = [BridgeProcess(scope, self.config_path,
                                      workdir / f"{self.prefix}-edge-{scope}.log", env)
                        for scope in self.scopes]
        self.gens: dict[str, LoadGenerator] = {}
        self.connects: list[float] = []
        self.me = psutil.Process()
        self.samplers = {"kafka": [ProcessSampler(_pid_of(bootstrap.split(",")[0]))],
                         "redis": [ProcessSampler(_pid_of(redis_url))],
                         "mosquitto": [ProcessSampler(_pid_of(url)) for url in
                                       (settings.edge["global_endpoint"],
                                        *settings.gateways.values())]}

    def topics(self, scope: str) -> tuple[str, str]:
        """(request topic, answer topic) of a scope: what its bridge carries."""
        if scope == GLOBAL_SCOPE:
            return self.cat.query, self.cat.query_response
        return self.cat.device(scope), self.cat.device_response(scope)

    def start(self) -> None:
        ensure_topics(self.config, self.cat.all())
        print(f"edge phase {self.prefix}: starting a global and a {self.region} worker "
              "(Mosquitto identities)", file=sys.stderr)
        start_all(*self.workers.values(), timeout=300)
        for via in PATHS:
            self.gens[via] = LoadGenerator(self.config, self.region, self.tag)
        self.gens["mqtt"].use_mqtt()
        time_connects(self.gens["mqtt"], self.connects)

    def snapshot(self) -> dict[str, float]:
        snap = {name: sum(w.cpu_split()) for name, w in self.workers.items()}
        for bridge in self.bridges:
            if bridge.alive():
                snap[f"bridge {bridge.scope}"] = bridge.cpu_seconds()
        snap.update({name: sum(s.cpu_seconds() for s in group)
                     for name, group in self.samplers.items()})
        times = self.me.cpu_times()
        snap["client"] = times.user + times.system
        snap["machine"] = machine_busy_seconds()
        snap["wall"] = time.monotonic()
        return snap

    def register(self, gen: LoadGenerator, first: int) -> None:
        began = time.monotonic()
        gen.register_range(first, self.vehicles, serde_from_config(self.config))
        vehicles = [gen.vehicle(i) for i in range(first, first + self.vehicles)]
        if not wait_indexed(self.workers["global"].web, vehicles,
                            time.monotonic() + max(300.0, self.vehicles)):
            raise TimeoutError("the edge phase's registrations were not indexed in time")
        print(f"edge phase: {self.vehicles} vehicles registered and their global identities "
              f"written in {time.monotonic() - began:.0f} s", file=sys.stderr)

    def drive(self, via: str, first: int) -> tuple[EdgePath, dict[str, float]]:
        """Register the path's vehicles, then drive them; the path and the snapshot taken as
        its fleet started."""
        gen = self.gens[via]
        self.register(gen, first)
        time.sleep(2.0)  # the last registrations' effects settle
        edge_topics = [t for scope in self.scopes for t in self.topics(scope)]
        load = os.getloadavg()
        offsets = self.broker.end_offsets(edge_topics)
        self.connects.clear()
        before = self.snapshot()
        result = gen.run(PhaseResult(via, self.rate, self.vehicles), first, rate=self.rate,
                         timeout=self.timeout)
        after = self.snapshot()
        records = {t: n - offsets[t] for t, n in self.broker.end_offsets(edge_topics).items()}
        cpu = {k: after[k] - before.get(k, 0.0) for k in after if k not in ("machine", "wall")}
        path = EdgePath(via, result, cpu, after["wall"] - before["wall"],
                        after["machine"] - before["machine"], load, records,
                        list(self.connects))
        q = summary_ms(result.query_latency)
        print(f"edge phase, {via}: {result.completed}/{result.vehicles} completed, query p99 "
              f"{q['p99']:.0f} ms", file=sys.stderr)
        return path, before

    def mqtt_path(self) -> None:
        """The bridges up, the fleet over MQTT, the bridges' cost; then the bridges stop."""
        for bridge in self.bridges:
            bridge.start()
        for bridge in self.bridges:
            bridge.wait_ready()
        ready = self.snapshot()  # the bridges idle from here until the fleet starts
        path, before = self.drive("mqtt", 1)
        self.report.paths.append(path)
        idle_wall = before["wall"] - ready["wall"]
        for scope in self.scopes:
            key = f"bridge {scope}"
            idle = before[key] - ready[key]
            request, answer = self.topics(scope)
            self.report.bridges.append(BridgeCost(
                scope, path.cpu.get(key, 0.0), path.records.get(request, 0),
                path.records.get(answer, 0),
                100.0 * idle / idle_wall if idle_wall > 0 else 0.0, path.wall))
        for bridge in self.bridges:
            bridge.stop()

    def run(self) -> EdgeReport:
        self.start()
        self.mqtt_path()
        self.report.identities_removed += remove_identities(self.config, self.scopes, self.tag)
        path, _ = self.drive("kafka", 1 + self.vehicles)
        self.report.paths.append(path)
        return self.report

    def close(self) -> None:
        """Everything the phase started stops, everything it created goes (logs stay)."""
        for gen in self.gens.values():
            with contextlib.suppress(Exception):
                gen.close()
        for bridge in self.bridges:
            bridge.stop()
        for worker in self.workers.values():
            worker.stop()
        try:
            self.report.identities_removed += remove_identities(self.config, self.scopes,
                                                                self.tag)
        except Exception as exc:  # noqa: BLE001 - clean-up goes on whatever happens
            print(f"could not remove the edge phase's identities: {exc}", file=sys.stderr)
        shutil.rmtree(self.data, ignore_errors=True)
        try:
            self.broker.delete_run(self.prefix, [self.cat.global_app_id,
                                                 self.cat.regional_app_id(self.region)])
            gateways = [f"vprov-gateway-{self.prefix}-{scope}" for scope in self.scopes]
            for future in self.broker.admin.delete_consumer_groups(
                    gateways, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()
        except Exception as exc:  # noqa: BLE001
            print(f"could not remove the edge phase's topics: {exc}", file=sys.stderr)


def time_connects(gen: LoadGenerator, into: list[float]) -> None:
    """Append to ``into`` how long each device connection of ``gen`` (its MQTT devices) takes to
    open: TCP and the TLS handshake, done in the driver's one thread, where no other vehicle is
    served meanwhile."""
    net = gen.edge.net
    opener = net.open

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        try:
            return opener(*args, **kwargs)
        finally:
            into.append(time.monotonic() - began)

    net.open = timed


def _pid_of(address: str) -> int | None:
    port = port_of(address)
    return listener_pid(port) if port else None


def run_edge(bootstrap: str, redis_url: str, workdir: Path, region: str, rate: float,
             seconds: float, port: int, settings: EdgeSettings,
             timeout: float = 120.0) -> EdgeReport:
    """Both paths on a deployment of its own, removed afterwards."""
    check_brokers(settings)
    run = EdgeRun(bootstrap, redis_url, workdir, region, rate, seconds, port, settings, timeout)
    try:
        return run.run()
    finally:
        run.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_stack_arguments(p)
    p.add_argument("--region", default="NA")
    p.add_argument("--rate", type=float, default=10.0, help="offered vehicles/s on both paths")
    p.add_argument("--seconds", type=float, default=30.0, help="sending time per path")
    p.add_argument("--port", type=int, default=19096, help="web ports: this and the next")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "edge"))
    args = p.parse_args(argv)
    try:
        settings = edge_settings(args.region)
        report = run_edge(args.bootstrap, args.redis_url, Path(args.out), args.region,
                          args.rate, args.seconds, args.port, settings)
    except EdgeUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print("\n".join(console_lines(report)))
    summary = {p.via: {"query_ms": summary_ms(p.result.query_latency),
                       "device_ms": summary_ms(p.result.device_latency)} for p in report.paths}
    print(json.dumps({"paths": summary, "bridge_us_per_message": report.us_per_message},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
