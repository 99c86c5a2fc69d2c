"""Registry mode against a real schema registry (Apicurio Registry's Confluent-compatible API,
started by `make test`): the Confluent wire format, the compatibility rule the schema history
promises, and the whole pipeline with a subscriber that knows only confluent-kafka."""

from __future__ import annotations

import copy
import io
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fastavro
import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.avro_samples import SAMPLES as AVRO_SAMPLES
from tests.integration.conftest import PORT_BASE, Flow, run_vprov
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    Bus,
    Fleet,
    WorkerProcess,
    isolated_config,
)
from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.avro import CONFLUENT_MAGIC, RECORD_NAMES, SCHEMA_DIR, AvroSerde, history_versions
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import consumer
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import running
from vprov.sim import fleet

# Web ports of this module's workers (a deployment of its own, in registry mode).
GLOBAL_PORT, NA_PORT = PORT_BASE + 144, PORT_BASE + 145

EVENT = AVRO_SAMPLES["LifecycleEvent"]
DEAD_LETTER = {
    "dead_letter_id": "0b5e2c1a-7d3f-5e8b-9a6c-4f1d2e3b5a70",
    "source_topic": "provisioning.device.NA",
    "source_partition": 2,
    "source_offset": 41,
    "key": b"1HGCM82633A004352",
    "payload": b"\xff not json",
    "error_code": 13113,
    "error_message": "payload is not JSON",
    "received_at": datetime(2025, 3, 14, 9, 26, 54, tzinfo=UTC),
}

REHOME_RESULT = {
    "request_id": "8d2f6a4e-1c3b-5f7a-9e2d-6b4c8a1f3e59",
    "vin": "1HGCM82633A004352",
    "system_id": "c2c-sys-00000001",
    "region": "NA",
    "outcome": "REGISTERED",
    "gateway_endpoint": "mqtts://na.iot.vprov.example:8883",
    "error_code": None,
    "error_message": None,
    "completed_at": datetime(2025, 3, 14, 9, 26, 54, tzinfo=UTC),
}
SAMPLES = {"LifecycleEvent": EVENT, "RehomeResult": REHOME_RESULT}


def fresh_topic(name: str) -> str:
    """A topic name no earlier run used: the subject ``<topic>-value`` starts empty."""
    return f"{name}.{uuid.uuid4().hex[:8]}"


def avsc(record_name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{record_name}.avsc").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def client(schema_registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry_url, "timeout": 10})


# --- the wire format ----------------------------------------------------------------------


@pytest.mark.parametrize(("record_name", "record"),
                         [("LifecycleEvent", EVENT), ("DeadLetter", DEAD_LETTER)])
def test_a_record_is_framed_with_the_id_the_registry_gave_its_schema(
        schema_registry_url: str, client: SchemaRegistryClient, record_name: str,
        record: dict[str, Any]) -> None:
    topic = fresh_topic("vehicle.lifecycle")
    payload = AvroSerde(registry_url=schema_registry_url).encode(record_name, record, topic=topic)

    assert payload[0] == CONFLUENT_MAGIC
    schema_id = int.from_bytes(payload[1:5], "big")
    latest = client.get_latest_version(f"{topic}-value")
    assert (latest.version, latest.schema_id) == (1, schema_id)
    # The registered schema is the .avsc itself; a plain reader needs nothing else.
    registered = json.loads(client.get_schema(schema_id).schema_str)
    assert registered == avsc(record_name)
    body = fastavro.schemaless_reader(io.BytesIO(payload[5:]),
                                      fastavro.parse_schema(registered, named_schemas={}))
    assert body == record

    fresh = AvroSerde(registry_url=schema_registry_url)  # nothing cached: fetches it by id
    assert fresh.decode(record_name, payload, topic=topic) == record


def test_serde_from_config_with_a_registry_url_writes_the_confluent_format(
        schema_registry_url: str) -> None:
    from vprov.kafka.avro import serde_from_config

    topic = fresh_topic("provisioning.deadletter")
    serde = serde_from_config(SimpleNamespace(schema_registry_url=schema_registry_url))
    payload = serde.encode("DeadLetter", DEAD_LETTER, topic=topic)
    assert payload[0] == CONFLUENT_MAGIC
    assert serde.decode("DeadLetter", payload, topic=topic) == DEAD_LETTER


# --- compatibility --------------------------------------------------------------------------


def test_the_registry_enforces_backward_compatibility(client: SchemaRegistryClient) -> None:
    assert client.get_compatibility() == "BACKWARD"


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_every_published_version_registers_in_order(
        client: SchemaRegistryClient, record_name: str) -> None:
    subject = f"{fresh_topic(record_name)}-value"
    versions = history_versions(record_name)
    for number, path in versions.items():
        schema = Schema(path.read_text(encoding="utf-8"), "AVRO")
        client.register_schema(subject, schema)
        assert client.get_versions(subject) == list(range(1, number + 1)), path.name
    assert json.loads(client.get_latest_version(subject).schema.schema_str) == avsc(record_name)


def _with_field(field: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(schema: dict[str, Any]) -> dict[str, Any]:
        schema["fields"].append(field)
        return schema
    return change


def _retyped(name: str, new_type: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(schema: dict[str, Any]) -> dict[str, Any]:
        for field in schema["fields"]:
            if field["name"] == name:
                field["type"] = new_type
                field.pop("default", None)  # a null default would not fit the new type
        return schema
    return change


def _enum_without(symbol: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(schema: dict[str, Any]) -> dict[str, Any]:
        for field in schema["fields"]:
            if isinstance(field["type"], dict) and field["type"].get("type") == "enum":
                field["type"]["symbols"].remove(symbol)
        return schema
    return change


INCOMPATIBLE_CHANGES = [
    pytest.param("LifecycleEvent", _with_field({"name": "tenant", "type": "string",
                                                "doc": "new, no default"}),
                 id="new field without a default"),
    pytest.param("LifecycleEvent", _retyped("sequence", "int"), id="long narrowed to int"),
    pytest.param("LifecycleEvent", _retyped("device_id", "string"),
                 id="nullable made mandatory"),
    pytest.param("RehomeResult", _enum_without("CANCELLED"), id="enum symbol removed"),
]


def _schema_dir(root: Path, record_name: str, schema: dict[str, Any]) -> Path:
    """The repository's schemas with ``record_name``'s current schema replaced."""
    target = root / "avro_schemas"
    shutil.copytree(SCHEMA_DIR, target)
    (target / f"{record_name}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return target


@pytest.mark.parametrize(("record_name", "change"), INCOMPATIBLE_CHANGES)
def test_an_incompatible_change_is_refused_by_the_registry(
        schema_registry_url: str, client: SchemaRegistryClient, tmp_path: Path,
        record_name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    changed = change(copy.deepcopy(avsc(record_name)))
    assert changed != avsc(record_name)
    topic = fresh_topic(record_name)
    subject = f"{topic}-value"
    client.register_schema(subject, Schema(json.dumps(avsc(record_name)), "AVRO"))

    assert client.test_compatibility(subject, Schema(json.dumps(changed), "AVRO")) is False
    # A deployment whose .avsc changed that way cannot write: its first record is refused.
    serde = AvroSerde(_schema_dir(tmp_path, record_name, changed),
                      registry_url=schema_registry_url)
    sample = SAMPLES[record_name]
    if any(field["name"] == "tenant" for field in changed["fields"]):
        sample = {**sample, "tenant": "acme"}  # the new field has no default
    with pytest.raises(SchemaRegistryError) as refused:
        serde.encode(record_name, sample, topic=topic)
    assert refused.value.http_status_code == 409
    assert client.get_versions(subject) == [1]


def test_a_new_nullable_field_with_a_default_is_accepted(client: SchemaRegistryClient) -> None:
    subject = f"{fresh_topic('LifecycleEvent')}-value"
    client.register_schema(subject, Schema(json.dumps(avsc("LifecycleEvent")), "AVRO"))
    changed = _with_field({"name": "tenant", "type": ["null", "string"], "default": None,
                           "doc": "new"})(avsc("LifecycleEvent"))
    client.register_schema(subject, Schema(json.dumps(changed), "AVRO"))
    assert client.get_versions(subject) == [1, 2]


# --- the whole pipeline in registry mode --------------------------------------------------


@pytest.fixture(scope="module")
def registry_deployment(schema_registry_url: str, tmp_path_factory: pytest.TempPathFactory,
                        ) -> Iterator[tuple[Flow, Path]]:
    """A global and an NA worker of a deployment of their own whose records go through the
    registry, and a bus that reads and writes the same way."""
    tmp = tmp_path_factory.mktemp("registry-mode")
    path = isolated_config(tmp / "vprov-registry.toml", f"r{uuid.uuid4().hex[:6]}")
    config: Config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                                   "REDIS_URL": REDIS_URL,
                                                   "SCHEMA_REGISTRY_URL": schema_registry_url})
    cat = Catalogue(config)
    ensure_topics(BOOTSTRAP, cat.all(), timeout=20)
    bus = Bus(config, [cat.query_response, cat.lifecycle, cat.deadletter, cat.rehome_result,
                       cat.rehome("NA"), cat.device_response("NA"), cat.onboarding("NA")],
              serde=AvroSerde(registry_url=schema_registry_url))
    env = {"SCHEMA_REGISTRY_URL": schema_registry_url}
    procs = {"global": WorkerProcess("global", GLOBAL_PORT, tmp, path, extra_env=env),
             "NA": WorkerProcess("regional", NA_PORT, tmp, path, region="NA", extra_env=env)}
    try:
        with running(procs):
            yield Flow(bus, procs), path
    finally:
        bus.close()


def raw_values(config: Config, topic: str, key: str) -> list[bytes]:
    """Every value on ``topic`` under ``key``, as the broker holds it."""
    reader = consumer(BOOTSTRAP)
    reader.assign([TopicPartition(topic, p, 0) for p in range(config.partitions)])
    found: list[bytes] = []
    eof: set[int] = set()
    while len(eof) < config.partitions:
        msg = reader.poll(10)
        assert msg is not None, f"no end of {topic} in sight"
        if msg.error():
            assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            eof.add(msg.partition())
        elif (msg.key() or b"").decode() == key:
            found.append(msg.value())
    reader.close()
    return found


def test_a_vehicle_goes_through_both_flows_in_registry_mode(
        registry_deployment: tuple[Flow, Path], client: SchemaRegistryClient) -> None:
    flow, _ = registry_deployment
    vehicle = Fleet(tag=fleet.run_tag(str(uuid.uuid4()))).vehicle("NA", ("TCU", "IVI"))
    flow.register(vehicle)  # DeviceRegistration records in the Confluent format
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    answers = [flow.provision(vehicle, device) for device in vehicle.devices]
    assert [a.value["status"] for a in answers] == ["SUCCESS", "SUCCESS"]

    events = flow.bus.wait(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, count=3)
    assert [(e.value["state"], e.value["sequence"]) for e in events] == [
        ("REGIONAL", 1), ("PROVISIONED", 2), ("PROVISIONED", 3)]
    [rehome] = flow.bus.wait(flow.cat.rehome("NA"), lambda r: r.key == vehicle.vin)
    assert rehome.value["vin"] == vehicle.vin
    onboarding = flow.bus.wait(flow.cat.onboarding("NA"), lambda r: r.key == vehicle.vin,
                               count=2)
    assert len(onboarding) == 2

    # Every Avro record the workers wrote carries the id of its topic's registered schema.
    for topic in (flow.cat.lifecycle, flow.cat.rehome("NA"), flow.cat.onboarding("NA")):
        values = raw_values(flow.bus.config, topic, vehicle.vin)
        assert values
        registered = client.get_latest_version(f"{topic}-value").schema_id
        assert {(v[0], int.from_bytes(v[1:5], "big")) for v in values} == {
            (CONFLUENT_MAGIC, registered)}, topic


def test_a_subscriber_with_only_confluent_kafka_reads_every_lifecycle_event(
        registry_deployment: tuple[Flow, Path], schema_registry_url: str) -> None:
    flow, _ = registry_deployment
    vehicle = Fleet(tag=fleet.run_tag(str(uuid.uuid4()))).vehicle("NA", ("TCU", "IVI"))
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    for device in vehicle.devices:
        assert flow.provision(vehicle, device).value["status"] == "SUCCESS"
    ours = flow.bus.wait(flow.cat.lifecycle, lambda r: r.key == vehicle.vin, count=3)

    # No project code below: the registry client and its deserializer, writer schema by id.
    # as a subscriber would set it up, with a bounded wait for the registry's answers
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": schema_registry_url,
                                                         "timeout": 10}))
    topic = flow.cat.lifecycle
    context = SerializationContext(topic, MessageField.VALUE)
    read = [deserialize(value, context)
            for value in raw_values(flow.bus.config, topic, vehicle.vin)]
    assert sorted(read, key=lambda e: e["sequence"]) == [e.value for e in ours]
    assert [e["state"] for e in sorted(read, key=lambda e: e["sequence"])] == [
        "REGIONAL", "PROVISIONED", "PROVISIONED"]


def test_a_dead_letter_is_written_and_listed_in_registry_mode(
        registry_deployment: tuple[Flow, Path], schema_registry_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    flow, path = registry_deployment
    topic = flow.cat.device("NA")
    marker = f"not json {uuid.uuid4()}".encode()
    flow.bus.send(topic, "1HGCM82633A004352", marker)
    flow.bus.flush()
    [letter] = flow.bus.wait(flow.cat.deadletter, lambda r: r.value["payload"] == marker)
    assert letter.value["error_code"] == 13113

    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", BOOTSTRAP), ("REDIS_URL", REDIS_URL),
                        ("SCHEMA_REGISTRY_URL", schema_registry_url)):
        monkeypatch.setenv(name, value)
    code, out, _ = run_vprov(path, capsys, "deadletter", "show",
                             "--id", letter.value["dead_letter_id"])
    assert code == 0
    assert marker.decode() in out
