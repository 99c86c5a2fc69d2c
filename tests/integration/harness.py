"""Drive real worker processes through a real broker and Redis, the way devices and
subscribers would: produce device JSON, read answers and Avro events back from the topics."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError
from confluent_kafka.admin import NewTopic

from vprov import config as config_module
from vprov.config import Cluster, Config
from vprov.core import envelope
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import ClusterReader, admin_client, close_producer, producer
from vprov.kafka.settings import KafkaAccess, access
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops import workers
from vprov.ops.registration_file import to_record
from vprov.sim import fleet
from vprov.sim.fleet_driver import QUIET_SECONDS

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def kafka_security_env() -> dict[str, str]:
    """The environment's Kafka security settings (`make test SECURITY=sasl_ssl`), for a
    command run with an environment of its own."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(("KAFKA_SECURITY_", "KAFKA_SASL_", "KAFKA_SSL_"))}


def topic_names(bootstrap: str = BOOTSTRAP) -> set[str]:
    with admin_client(bootstrap) as admin:
        return set(admin.list_topics(timeout=10).topics)


def delete_topics(names: Iterable[str], bootstrap: str = BOOTSTRAP) -> None:
    """Delete ``names`` and wait for the broker to take it; best effort (a topic already gone,
    or a broker a test has stopped, is no failure of the test that ran)."""
    names = sorted(names)
    if not names:
        return
    with admin_client(bootstrap) as admin:  # open until the answers came
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # clean-up must never fail a test
                future.result(timeout=60)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    value: Any  # a parsed device response, a decoded Avro record, or raw bytes


class WorkerProcess(workers.WorkerProcess):
    """A worker of the suite's broker and Redis, its log and state under ``workdir``."""

    def __init__(self, role: str, web_port: int, workdir: Path, config_path: Path,
                 region: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        name = f"{role}-{region or 'global'}-{web_port}"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "REDIS_URL": REDIS_URL,
               **(extra_env or {})}
        super().__init__(role, web_port, config_path, workdir / "data", workdir / f"{name}.log",
                         region, env, cwd=REPO)
        self.name = name


class Bus:
    """A producer, and a reader that follows every output topic from the beginning in a
    background thread, so tests wait for records instead of sleeping."""

    def __init__(self, config: Config, topics: Iterable[str],
                 serde: AvroSerde | None = None, kafka: KafkaAccess | str = BOOTSTRAP) -> None:
        self.config = config
        self.catalogue = Catalogue(config)
        # The deployment's wire format: single-object unless given a registry-backed serde.
        self.serde = serde or AvroSerde()
        self.kafka = kafka  # the broker, and the principal on a secured one
        self.producer = producer(kafka)
        self.topics = list(topics)
        self._records: dict[str, list[Record]] = defaultdict(list)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._avro = {
            self.catalogue.lifecycle: "LifecycleEvent",
            self.catalogue.deadletter: "DeadLetter",
            self.catalogue.rehome_result: "RehomeResult",
            self.catalogue.admin_outcome: "AdminOutcome",
        }
        for region in config.regions:
            self._avro[self.catalogue.onboarding(region)] = "ChipsetOnboardingRequest"
            self._avro[self.catalogue.rehome(region)] = "RehomeRequest"
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _decode(self, topic: str, value: bytes | None) -> Any:
        if value is None:
            return None
        if topic in self._avro:
            return self.serde.decode(self._avro[topic], value, topic=topic)
        try:
            return envelope.parse_response(value)
        except ValueError:
            return value

    def _follow(self) -> None:
        kafka = access(self.kafka)
        reader = ClusterReader({Cluster("bus", kafka.bootstrap_servers, kafka.kafka_security):
                                self.topics}, **{"enable.partition.eof": False})
        reader.assign_beginnings(self.config.partitions)
        last_look = time.monotonic()
        while not self._stop.is_set():
            batch = reader.consume(500, 0.2)
            now = time.monotonic()
            if now - last_look >= QUIET_SECONDS:
                # a consumer that stopped fetching some partitions after a broker's restart is
                # replaced (vprov.kafka.clients): records a test misses are not the stack's loss
                last_look = now
                reader.renew_stuck()
            if not batch:
                continue
            decoded = []
            for msg in batch:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        decoded.append(None)
                    continue
                decoded.append(Record(msg.topic(), msg.partition(), msg.offset(),
                                      (msg.key() or b"").decode(errors="replace"),
                                      self._decode(msg.topic(), msg.value())))
            with self._cond:
                for rec in decoded:
                    if rec is not None:
                        self._records[rec.topic].append(rec)
                self._cond.notify_all()
        reader.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        close_producer(self.producer, 10)

    def records(self, topic: str, where: Callable[[Record], bool] = lambda r: True
                ) -> list[Record]:
        with self._cond:
            return [r for r in self._records[topic] if where(r)]

    def wait(self, topic: str, where: Callable[[Record], bool], count: int = 1,
             timeout: float = 45.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self._records[topic] if where(r)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)}/{count} records on {topic} after "
                                       f"{timeout}s")
                self._cond.wait(min(left, 0.5))

    def since(self, topic: str, position: int) -> tuple[list[Record], int]:
        """Records of ``topic`` from ``position`` on, and the position after them."""
        with self._cond:
            found = self._records[topic][position:]
            return list(found), position + len(found)

    def wait_all(self, topic: str, field: Callable[[Record], Any], wanted: set[Any],
                 timeout: float = 120.0) -> list[Record]:
        """Wait until records carrying every value in ``wanted`` (by ``field``) arrived; returns
        all of them, repeats included."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self._records[topic] if field(r) in wanted]
                missing = wanted - {field(r) for r in found}
                if not missing:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(missing)} of {len(wanted)} still missing on "
                                       f"{topic} after {timeout}s")
                self._cond.wait(min(left, 0.5))

    def settle(self, topic: str, where: Callable[[Record], bool], seconds: float = 3.0
               ) -> list[Record]:
        """What arrived on ``topic`` after waiting ``seconds`` more (to check nothing extra)."""
        time.sleep(seconds)
        return self.records(topic, where)

    # producing -----------------------------------------------------------------------------

    def send(self, topic: str, key: str | bytes | None, value: bytes | None,
             headers: dict[str, str] | None = None) -> None:
        self.producer.produce(topic, key=key.encode() if isinstance(key, str) else key,
                              value=value,
                              headers=list(headers.items()) if headers else None)
        self.producer.poll(0)

    def flush(self) -> None:
        self.producer.flush(30)

    def register(self, vehicles: Iterable[fleet.SimVehicle]) -> None:
        topic = self.catalogue.registrations
        for vehicle in vehicles:
            for reg in fleet.registrations(vehicle):
                value = self.serde.encode("DeviceRegistration", to_record(reg), topic=topic)
                self.send(topic, reg["device_id"], value)
        self.flush()


@dataclass
class Fleet:
    """Unique vehicles for one test."""

    tag: str
    count: int = 0
    made: list[fleet.SimVehicle] = field(default_factory=list)

    def vehicle(self, region: str = "NA", ecu_types: tuple[str, ...] = ("TCU", "IVI"),
                country: str | None = None) -> fleet.SimVehicle:
        self.count += 1
        vehicle = fleet.make_vehicle(self.tag, self.count, region, ecu_types, country)
        self.made.append(vehicle)
        return vehicle


@contextlib.contextmanager
def scratch_topic(prefix: str, partitions: int = 2) -> Iterator[str]:
    """A topic of its own for a test, served in the metadata before the test uses it, deleted
    after it."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = admin_client(BOOTSTRAP)  # held until the answer came: a dropped client sends nothing
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result()
    # created is not yet known to every connection: wait until its metadata is served
    wait_until(lambda: admin.list_topics(name, timeout=5).topics[name].error is None,
               timeout=30, what=f"topic {name} in the metadata")
    try:
        yield name
    finally:
        delete_topics([name])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not met after {timeout}s")


# The environment's replication settings, and the names of the keys they set.
REPLICATION_ENV = {"VPROV_REPLICATION_FACTOR": "replication_factor",
                   "VPROV_MIN_INSYNC_REPLICAS": "min_insync_replicas"}
# What a single-node cluster beside the suite's stack needs (a worker's environment: empty
# values leave the configuration file's).
SINGLE_NODE = {"replication_factor": 1, "min_insync_replicas": 1}
NO_REPLICATION_ENV = dict.fromkeys(REPLICATION_ENV, "")


def stack_replication() -> dict[str, int]:
    """kafka.replication_factor and min_insync_replicas of the suite's stack, as
    `scripts/stack.sh env` exported them (a three-broker stack sets both); else nothing."""
    return {key: int(os.environ[name]) for name, key in REPLICATION_ENV.items()
            if os.environ.get(name)}


def broker_count(bootstrap: str = BOOTSTRAP) -> int:
    with admin_client(bootstrap) as admin:
        return len(admin.list_topics(timeout=10).brokers)


def isolated_config(path: Path, prefix: str, regions: dict[str, dict] | None = None,
                    kafka: dict[str, Any] | None = None, **flow: Any) -> Path:
    """A configuration for a deployment of its own on the shared broker: its own consumer
    groups, internal topics and external topic names, so its workers meet no one else's. Its
    topics are replicated as the suite's stack says (``stack_replication``) unless ``kafka``
    sets keys of its own."""
    doc = config_module.isolate(config_module.defaults_document(), prefix)
    doc["kafka"].update(stack_replication() if kafka is None else kafka)
    doc["flow"].update(flow)
    doc["regions"].update(regions or {})
    path.write_text(config_module.dumps(doc))
    return path


def own_deployment(tmp: Path, prefix: str, bootstrap: str = BOOTSTRAP,
                   kafka: dict[str, Any] | None = None, **flow: Any
                   ) -> tuple[Path, Config, Bus]:
    """A deployment of its own (``isolated_config`` in ``tmp``, on the suite's broker unless
    ``bootstrap`` names another) with its topics created, and a bus on its outputs, NA's
    included."""
    path = isolated_config(tmp / f"{prefix}.toml", prefix, kafka=kafka, **flow)
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    cat = Catalogue(config)
    ensure_topics(bootstrap, cat.all())
    return path, config, Bus(config, [cat.query_response, cat.lifecycle, cat.deadletter,
                                      cat.device_response("NA"), cat.onboarding("NA")],
                             kafka=bootstrap)
