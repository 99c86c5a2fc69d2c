"""The benchmark's own deployment on a shared broker: configuration, worker processes, topic
offsets, and the facts about the machine that the report needs.

Everything the benchmark creates carries one run prefix (``vbench-<run id>``): consumer groups,
topics, state directories. Cleaning up therefore only ever touches names with that prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from vprov import config as config_module
from vprov.admin import admin_client
from vprov.config import Config
from vprov.kafka_settings import librdkafka

REPO = Path(__file__).resolve().parents[1]


# --- configuration ------------------------------------------------------------------------------

def write_config(path: Path, prefix: str, bootstrap: str, redis_url: str, regions: tuple[str, ...],
                 partitions: int | None = None) -> Config:
    """The packaged defaults with the run's own app prefix and topic names, and only the regions
    that get a worker (topics of regions nobody serves would only load the broker)."""
    doc = config_module.isolate(config_module.defaults_document(), prefix)
    doc["kafka"]["bootstrap_servers"] = bootstrap
    if partitions:
        doc["kafka"]["partitions"] = partitions
    doc["redis"]["url"] = redis_url
    doc["regions"] = {code: body for code, body in doc["regions"].items() if code in regions}
    path.write_text(config_module.dumps(doc), encoding="utf-8")
    # The file is complete: no environment variable may change what the workers read.
    return config_module.load(path, env={})


# --- worker processes ---------------------------------------------------------------------------

class Worker:
    """One ``vprov worker`` subprocess in its own process group, so stopping it stops all of it."""

    def __init__(self, name: str, args: list[str], port: int, log_path: Path,
                 env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    @classmethod
    def vprov(cls, role: str, region: str | None, port: int, config_path: Path, data_dir: Path,
              log_dir: Path, env: dict[str, str]) -> Worker:
        args = [sys.executable, "-m", "vprov.cli", "--config", str(config_path), "worker",
                "--role", role, "--web-port", str(port), "--data-dir", str(data_dir)]
        if region:
            args += ["--region", region]
        name = region or role
        return cls(name, args, port, log_dir / f"worker-{name}.log", env)

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health",
                                        timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def processed(self) -> int | None:
        """Inputs the worker has handled so far (its health page), None when unreachable."""
        health = self.health()
        value = health.get("processed") if health else None
        return value if isinstance(value, int) else None

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (urllib.error.URLError, OSError, ValueError):
            return 0, None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited; log: {self.log_path}\n"
                                   f"{self.log_tail()}")
            health = self.health()
            if health and health.get("ready"):
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker {self.name} not ready after {timeout:.0f}s; log: "
                           f"{self.log_path}\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _tree(self) -> list[psutil.Process]:
        if self.ps is None:
            return []
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        """Resident memory of the worker and any child it started, in bytes."""
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds: system time is the kernel's share (socket I/O, polling)."""
        user = system = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                user += times.user
                system += times.system
            except psutil.Error:
                pass
        return user, system

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds per thread of the worker process, keyed by thread id (the main thread
        is the process id)."""
        if self.ps is None:
            return {}
        try:
            return {("main" if t.id == self.ps.pid else f"thread {t.id}"):
                    t.user_time + t.system_time for t in self.ps.threads()}
        except psutil.Error:
            return {}

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


class ProcessSampler:
    """CPU time of processes we do not own (the broker and Redis); read only."""

    def __init__(self, pid: int | None) -> None:
        self.ps: psutil.Process | None = None
        if pid is not None:
            try:
                self.ps = psutil.Process(pid)
            except psutil.Error:
                self.ps = None

    def cpu_seconds(self) -> float:
        if self.ps is None:
            return 0.0
        try:
            times = self.ps.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0


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


def port_busy(port: int) -> bool:
    return listener_pid(port) is not None


# --- topics and offsets -------------------------------------------------------------------------

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
                raise RuntimeError(f"topic {topic}: {meta.error}")
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
        redis=_redis_version(redis_url),
        load_before=os.getloadavg(),
    )


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), for the share used by others."""
    times = psutil.cpu_times()
    # guest time is already part of user time on Linux: count only these.
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(getattr(times, name, 0.0) for name in fields)
