"""The benchmark's own deployment on a shared broker: configuration, worker processes, topic
offsets, and the facts about the machine that the report needs.

Everything the benchmark creates carries one run prefix (``vbench-<run id>``): consumer groups,
topics, state directories. Cleaning up therefore only ever touches names with that prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.clients import admin_client
from vprov.kafka.settings import librdkafka

REPO = Path(__file__).resolve().parents[1]


# --- configuration ------------------------------------------------------------------------------

def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap`` and ``--redis-url``: where the stack is, from the environment by default."""
    env = os.environ
    parser.add_argument("--bootstrap",
                        default=env.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092",
                        help="Kafka bootstrap servers ($KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--redis-url", default=env.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
                        help="Redis URL ($REDIS_URL)")


STACK_REPLICATION = (("replication_factor", "VPROV_REPLICATION_FACTOR"),
                     ("min_insync_replicas", "VPROV_MIN_INSYNC_REPLICAS"))


def write_config(path: Path, prefix: str, bootstrap: str, redis_url: str, regions: tuple[str, ...],
                 partitions: int | None = None, producer_client: str | None = None,
                 edge: Mapping[str, str] | None = None,
                 gateways: Mapping[str, str] | None = None,
                 kafka: Mapping[str, object] | None = None) -> Config:
    """The packaged defaults with the run's own app prefix and topic names, and only the regions
    that get a worker (topics of regions nobody serves would only load the broker). ``edge``:
    keys of the ``[edge]`` table; ``gateways``: regions' ``gateway_endpoint`` (the edge phase's
    brokers); ``kafka``: keys of the ``[kafka]`` table to try (``--kafka``). A file with edge
    passwords is readable by its owner only."""
    doc = config_module.isolate(config_module.defaults_document(), prefix)
    doc["kafka"]["bootstrap_servers"] = bootstrap
    if partitions:
        doc["kafka"]["partitions"] = partitions
    if producer_client:
        doc["kafka"]["producer_client"] = producer_client
    # the stack's replication (`scripts/stack.sh env` on three brokers), unless --kafka says
    for key, variable in STACK_REPLICATION:
        if os.environ.get(variable):
            doc["kafka"][key] = int(os.environ[variable])
    doc["kafka"].update(kafka or {})
    doc["redis"]["url"] = redis_url
    doc["regions"] = {code: body for code, body in doc["regions"].items() if code in regions}
    doc["edge"].update(edge or {})
    for code, endpoint in (gateways or {}).items():
        doc["regions"][code]["gateway_endpoint"] = endpoint
    if edge:  # passwords: the owner's eyes only, before they are written
        path.touch(mode=0o600)
        path.chmod(0o600)
    path.write_text(config_module.dumps(doc), encoding="utf-8")
    # The file is complete: no environment variable may change what the workers read.
    return config_module.load(path, env={})


def setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of a configuration table, the value as TOML reads it (``200``, ``true``,
    ``"text"``; a bare word is text)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: expected KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


class ProcessSampler:
    """CPU time of processes we do not own (the brokers, Redis), summed; read only."""

    def __init__(self, *pids: int | None) -> None:
        self.procs: list[psutil.Process] = []
        for pid in pids:
            if pid is not None:
                with contextlib.suppress(psutil.Error):  # gone already: nothing to count
                    self.procs.append(psutil.Process(pid))

    def cpu_seconds(self) -> float:
        total = 0.0
        for ps in self.procs:
            try:
                times = ps.cpu_times()
            except psutil.Error:  # gone: what it used before is lost with it
                continue
            total += times.user + times.system
        return total


def listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port, when the OS lets us see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port \
                    and conn.pid:
                return conn.pid
    except (psutil.Error, PermissionError):
        return None
    return None


def port_of(address: str) -> int | None:
    match = re.search(r":(\d+)(?:/|$)", address)
    return int(match.group(1)) if match else None


# --- topics and offsets -------------------------------------------------------------------------

def worker_env(**extra: str) -> dict[str, str]:
    """The benchmark's environment for its workers, less the variables that override
    configuration keys (``SCHEMA_REGISTRY_URL`` left by `scripts/stack.sh env`, say): the
    workers read the run's configuration file and nothing else, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in config_module.ENV_OVERRIDES
           and not k.startswith((config_module.REGION_BOOTSTRAP_ENV,
                                 config_module.REGION_ENDPOINT_ENV))}
    return {**env, **extra}


class TopicUnknown(RuntimeError):
    """The broker's metadata does not have the topic (yet: just after its creation, for a
    moment)."""


class Broker:
    """Offsets and topic housekeeping through one AdminClient."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = admin_client(bootstrap)
        self._partitions: dict[str, int] = {}

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            meta = self.admin.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise TopicUnknown(f"topic {topic}: {meta.error}")
            self._partitions[topic] = len(meta.partitions)
        return self._partitions[topic]

    def end_offsets(self, topics: list[str]) -> dict[str, int]:
        """Sum of the end offsets of each topic's partitions: one request for all of them."""
        request = {TopicPartition(t, p): OffsetSpec.latest()
                   for t in topics for p in range(self.partitions(t))}
        totals = dict.fromkeys(topics, 0)
        for tp, future in self.admin.list_offsets(request, request_timeout=30).items():
            totals[tp.topic] += future.result().offset
        return totals

    def committed(self, group: str, topics: list[str]) -> dict[str, int]:
        """A group's committed offsets per topic (summed), read without joining the group."""
        from confluent_kafka import Consumer

        reader = Consumer({**librdkafka(self.bootstrap), "group.id": group,
                           "enable.auto.commit": False})
        try:
            parts = [TopicPartition(t, p) for t in topics for p in range(self.partitions(t))]
            totals = dict.fromkeys(topics, 0)
            for tp in reader.committed(parts, timeout=30):
                totals[tp.topic] += max(tp.offset, 0)
            return totals
        finally:
            reader.close()

    def run_topics(self, prefix: str) -> list[str]:
        names = self.admin.list_topics(timeout=10).topics
        return sorted(n for n in names if n.startswith(prefix + ".") or
                      n.startswith(prefix + "-"))

    def delete_run(self, prefix: str, groups: list[str]) -> list[str]:
        """Delete the run's topics and consumer groups: only names starting with ``prefix``."""
        topics = self.run_topics(prefix)
        if topics:
            for future in self.admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(KafkaException):
                    future.result()
        mine = [g for g in groups if g.startswith(prefix)]
        if mine:
            for future in self.admin.delete_consumer_groups(mine, request_timeout=30).values():
                with contextlib.suppress(KafkaException):
                    future.result()
        return topics


# --- the machine --------------------------------------------------------------------------------

@dataclass
class Machine:
    cpu_model: str
    logical_cpus: int
    physical_cores: int | None
    memory_gib: float
    os: str
    python: str
    packages: dict[str, str]
    kafka: str
    redis: str
    load_before: tuple[float, float, float]
    broker_jvm: str = "unknown"  # the broker's JIT and collector options (``jvm_options``)

    def rows(self) -> list[tuple[str, str]]:
        cores = f"{self.logical_cpus} logical"
        if self.physical_cores:
            cores += f" ({self.physical_cores} physical)"
        return [
            ("CPU", self.cpu_model),
            ("cores", cores),
            ("memory", f"{self.memory_gib:.1f} GiB"),
            ("OS", self.os),
            ("Python", self.python),
            ("Kafka broker", self.kafka),
            ("broker JVM options", self.broker_jvm),
            ("Redis", self.redis),
            ("client libraries", ", ".join(f"{k} {v}" for k, v in self.packages.items())),
            ("load average before the run", " / ".join(f"{x:.2f}" for x in self.load_before)),
        ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _kafka_version(broker_pid: int | None) -> str:
    """Read off the broker's command line (jar or installation directory names carry it)."""
    if broker_pid is None:
        return "unknown (broker process not visible)"
    try:
        cmdline = " ".join(psutil.Process(broker_pid).cmdline())
    except psutil.Error:
        return "unknown"
    for pattern in (r"kafka_[\d.]+-(\d+\.\d+\.\d+)", r"kafka-(\d+\.\d+\.\d+)"):
        match = re.search(pattern, cmdline)
        if match:
            return f"{match.group(1)} (pid {broker_pid})"
    for part in cmdline.split():
        for entry in part.split(":"):
            folder = Path(entry.rstrip("*")).parent if entry.endswith("*") else None
            if folder and folder.is_dir():
                for jar in folder.glob("kafka_*.jar"):
                    match = re.search(r"kafka_[\d.]+-(\d+\.\d+\.\d+)\.jar$", jar.name)
                    if match:
                        return f"{match.group(1)} (pid {broker_pid})"
    return f"unknown (pid {broker_pid})"


FIRST_TIER = "-XX:TieredStopAtLevel=1"


def jvm_options(cmdline: list[str]) -> str:
    """The JIT and collector options (``-XX:``) of a JVM's command line, the heap left out:
    the local stack's brokers run the first JIT tier only (``scripts/stack.sh``), which makes a
    demo's cold start cheaper and the steady state dearer (``bench/findings.md``)."""
    options = [part for part in cmdline if part.startswith("-XX:")]
    return " ".join(options) or "the JVM's defaults"


def _broker_jvm(broker_pid: int | None) -> str:
    if broker_pid is None:
        return "unknown (broker process not visible)"
    try:
        return jvm_options(psutil.Process(broker_pid).cmdline())
    except psutil.Error:
        return "unknown"


def _redis_version(redis_url: str) -> str:
    try:
        import redis

        info = redis.Redis.from_url(redis_url, socket_timeout=5).info("server")
        return str(info.get("redis_version", "unknown"))
    except Exception as exc:  # noqa: BLE001 - a report detail, never a reason to stop
        return f"unknown ({type(exc).__name__})"


def machine(broker_pid: int | None, redis_url: str) -> Machine:
    from importlib.metadata import PackageNotFoundError, version

    import confluent_kafka

    packages = {}
    for name in ("faust-streaming", "aiokafka", "confluent-kafka", "rocksdict", "fastavro"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    packages["librdkafka"] = confluent_kafka.libversion()[0]
    return Machine(
        cpu_model=_cpu_model(),
        logical_cpus=psutil.cpu_count() or 0,
        physical_cores=psutil.cpu_count(logical=False),
        memory_gib=psutil.virtual_memory().total / 2**30,
        os=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {platform.python_version()}",
        packages=packages,
        kafka=_kafka_version(broker_pid),
        broker_jvm=_broker_jvm(broker_pid),
        redis=_redis_version(redis_url),
        load_before=os.getloadavg(),
    )


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), for the share used by others."""
    times = psutil.cpu_times()
    # guest time is already part of user time on Linux: count only these.
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(getattr(times, name, 0.0) for name in fields)
