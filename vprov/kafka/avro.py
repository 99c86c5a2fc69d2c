"""Avro serialization of the records the processor exchanges over Kafka.

Schemas live in ``avro_schemas/<RecordName>.avsc`` (current version) and
``avro_schemas/history/<RecordName>.v<N>.avsc`` (every published version, the current one
included); ``avro_schemas`` is a package that ships them as package data, so an installed wheel
reads its own copy. Two wire formats:

* ``registry_url`` empty (the default): Avro single-object encoding as the Avro specification
  defines it: marker ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
  schema's Parsing Canonical Form, then the Avro binary body. Any Avro consumer can read it with
  only the ``.avsc`` files; no registry is needed.
* ``registry_url`` set: the Confluent wire format (``00``, 4-byte schema id, body) through
  ``confluent_kafka.schema_registry``; subjects follow the topic-name strategy (``<topic>-value``).

Decoding resolves the writer's schema to the current one, so callers always see current field
names and defaults. ``timestamp-millis`` fields take a timezone-aware ``datetime`` or int epoch
milliseconds on encode and come back as timezone-aware UTC ``datetime`` on decode.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from io import BytesIO
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from vprov.config import Config

SCHEMA_DIR: Traversable = resources.files("avro_schemas")
NAMESPACE = "io.vprov.events"
RECORD_NAMES = (
    "DeviceRegistration",
    "RehomeRequest",
    "RehomeResult",
    "LifecycleEvent",
    "ChipsetOnboardingRequest",
    "DeadLetter",
    "AdminCommand",
    "AdminOutcome",
)

SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_SIZE = len(SINGLE_OBJECT_MARKER) + 8
CONFLUENT_MAGIC = 0
_HISTORY_NAME = re.compile(r"^(?P<record>[A-Za-z_]\w*)\.v(?P<version>[1-9]\d*)\.avsc$")


class SchemaError(ValueError):
    """A payload or record name the schemas in ``avro_schemas/`` cannot account for."""


def load_schema_file(path: Traversable) -> dict[str, Any]:
    """The JSON of one ``.avsc`` file, unparsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"schema file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schema file {path} is not valid JSON: {exc}") from None


def single_object_fingerprint(schema: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the schema's Parsing Canonical Form, as the 8 bytes the header carries.

    fastavro returns the hex of the little-endian bytes, matching the reference (Java)
    implementation; the ``avro`` package is not used here because its canonical form keeps
    ``{"type": "long"}`` for logical types where the specification strips it to ``"long"``.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def history_versions(record_name: str,
                     schema_dir: Traversable = SCHEMA_DIR) -> dict[int, Traversable]:
    """Published versions of one record: version number -> history file."""
    versions: dict[int, Traversable] = {}
    history = schema_dir.joinpath("history")
    for path in history.iterdir() if history.is_dir() else ():
        match = _HISTORY_NAME.match(path.name)
        if match and match["record"] == record_name:
            versions[int(match["version"])] = path
    return dict(sorted(versions.items()))


def _parse(raw: dict[str, Any], record_name: str, origin: Traversable) -> Any:
    if raw.get("type") != "record" or raw.get("name") != record_name:
        raise SchemaError(f"{origin} must define the record {record_name!r}")
    # A fresh named-type table per file: history versions redefine the same nested names.
    return parse_schema(raw, named_schemas={})


@dataclass(frozen=True, slots=True)
class _Codec:
    """Everything encode/decode need for one record, computed once."""

    name: str
    raw: dict[str, Any]
    parsed: Any
    header: bytes
    # writer fingerprint -> parsed writer schema; None when the writer is the current schema
    writers: dict[bytes, Any]
    # top-level timestamp-millis fields, checked on encode (no nested record has one)
    timestamp_fields: tuple[str, ...]


def _timestamp_fields(raw: dict[str, Any]) -> tuple[str, ...]:
    names = []
    for field in raw["fields"]:
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if any(isinstance(t, dict) and t.get("logicalType") == "timestamp-millis" for t in types):
            names.append(field["name"])
    return tuple(names)


def _load_codec(record_name: str, schema_dir: Traversable) -> _Codec:
    current_path = schema_dir.joinpath(f"{record_name}.avsc")
    raw = load_schema_file(current_path)
    parsed = _parse(raw, record_name, current_path)
    current_fp = single_object_fingerprint(raw)
    writers: dict[bytes, Any] = {}
    for path in history_versions(record_name, schema_dir).values():
        old_raw = load_schema_file(path)
        old_fp = single_object_fingerprint(old_raw)
        if old_fp != current_fp:
            writers[old_fp] = _parse(old_raw, record_name, path)
    writers[current_fp] = None
    return _Codec(
        name=record_name,
        raw=raw,
        parsed=parsed,
        header=SINGLE_OBJECT_MARKER + current_fp,
        writers=writers,
        timestamp_fields=_timestamp_fields(raw),
    )


REGISTRY_TIMEOUT_SECONDS = 10


class _Registry:
    """Confluent wire format; imported lazily so the default format needs no registry client."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import (
            SchemaRegistryClient,
            topic_subject_name_strategy,
        )

        # A bounded wait: the client's default is none, and one answer the registry never sends
        # would stall the worker for good; a request that times out is retried by the client.
        self._client = SchemaRegistryClient({"url": url, "timeout": REGISTRY_TIMEOUT_SECONDS})
        # Pinned: newer clients default to an association lookup before falling back to it.
        self._strategy = {"subject.name.strategy": topic_subject_name_strategy}
        self._serializers: dict[str, Any] = {}
        self._deserializers: dict[str, Any] = {}

    @staticmethod
    def _context(topic: str | None, record_name: str) -> Any:
        from confluent_kafka.serialization import MessageField, SerializationContext

        if not topic:
            raise SchemaError(
                f"{record_name}: a topic is required with a schema registry "
                "(subjects are named <topic>-value); pass topic=..."
            )
        return SerializationContext(topic, MessageField.VALUE)

    def encode(self, codec: _Codec, record: dict[str, Any], topic: str | None) -> bytes:
        ctx = self._context(topic, codec.name)
        serializer = self._serializers.get(codec.name)
        if serializer is None:
            from confluent_kafka.schema_registry.avro import AvroSerializer

            serializer = AvroSerializer(
                self._client,
                json.dumps(codec.raw),
                conf={**self._strategy, "validate.strict.allow.default": True},
            )
            self._serializers[codec.name] = serializer
        return serializer(record, ctx)

    def decode(self, codec: _Codec, payload: bytes, topic: str | None) -> dict[str, Any]:
        ctx = self._context(topic, codec.name)
        if not payload or payload[0] != CONFLUENT_MAGIC:
            raise SchemaError(
                f"{codec.name}: payload does not start with the schema registry magic byte 00 "
                f"(got {payload[:2].hex() or 'nothing'}); if it starts with c301 it is "
                "single-object encoded: leave schema_registry.url empty to read it"
            )
        deserializer = self._deserializers.get(codec.name)
        if deserializer is None:
            from confluent_kafka.schema_registry.avro import AvroDeserializer

            # The current schema as reader: registry data resolves like single-object data.
            deserializer = AvroDeserializer(
                self._client, json.dumps(codec.raw), conf=dict(self._strategy)
            )
            self._deserializers[codec.name] = deserializer
        return deserializer(payload, ctx)


class AvroSerde:
    """Encodes and decodes the project's records; schemas are loaded and parsed once."""

    def __init__(self, schema_dir: Traversable = SCHEMA_DIR, registry_url: str = "") -> None:
        self.schema_dir = schema_dir
        self._codecs = {name: _load_codec(name, self.schema_dir) for name in RECORD_NAMES}
        self._registry = _Registry(registry_url) if registry_url else None

    def _codec(self, record_name: str) -> _Codec:
        try:
            return self._codecs[record_name]
        except KeyError:
            raise SchemaError(
                f"unknown record {record_name!r}; known records: {', '.join(RECORD_NAMES)}"
            ) from None

    def schema(self, record_name: str) -> dict[str, Any]:
        """The current schema of ``record_name`` as parsed by fastavro (a copy: safe to modify)."""
        return copy.deepcopy(self._codec(record_name).parsed)

    def encode(self, record_name: str, record: dict[str, Any], topic: str | None = None) -> bytes:
        """Serialize ``record`` with the current schema of ``record_name``.

        ``topic`` names the subject when a registry is configured and is ignored otherwise.
        Fields missing from ``record`` take their schema default; unknown keys are an error.
        """
        codec = self._codec(record_name)
        for name in codec.timestamp_fields:
            value = record.get(name)
            # fastavro would read a naive datetime as host-local time: refuse the ambiguity.
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError(
                    f"{record_name}.{name}: naive datetime {value.isoformat()}; pass a "
                    "timezone-aware datetime (e.g. tzinfo=UTC) or int epoch milliseconds"
                )
        if self._registry is not None:
            return self._registry.encode(codec, record, topic)
        out = BytesIO()
        out.write(codec.header)
        schemaless_writer(out, codec.parsed, record, strict_allow_default=True)
        return out.getvalue()

    def decode(self, record_name: str, payload: bytes, topic: str | None = None) -> dict[str, Any]:
        """Deserialize ``payload`` into a plain dict shaped by the current schema.

        Data written with any version kept in ``avro_schemas/history`` is resolved to the
        current schema. ``timestamp-millis`` fields come back as timezone-aware UTC datetimes.
        A body that does not match its writer schema raises fastavro's error.
        """
        codec = self._codec(record_name)
        if self._registry is not None:
            return self._registry.decode(codec, payload, topic)
        if payload[:2] != SINGLE_OBJECT_MARKER:
            raise SchemaError(
                f"{record_name}: payload does not start with the Avro single-object marker c301 "
                f"(got {payload[:2].hex() or 'nothing'}); if it starts with 00 it was written "
                "through a schema registry: set schema_registry.url"
            )
        if len(payload) < HEADER_SIZE:
            raise SchemaError(
                f"{record_name}: payload of {len(payload)} bytes is cut inside the "
                f"{HEADER_SIZE}-byte single-object header; the producer or topic truncated it"
            )
        fp = payload[2:HEADER_SIZE]
        try:
            writer = codec.writers[fp]
        except KeyError:
            raise SchemaError(
                f"{record_name}: writer schema fingerprint {bytes(fp).hex()} matches neither "
                f"the current schema nor any version in "
                f"{self.schema_dir.joinpath('history')}; add the writer's schema there as "
                f"{record_name}.v<N>.avsc"
            ) from None
        body = BytesIO(payload)
        body.seek(HEADER_SIZE)
        # cast: every schema here is an Avro record, which fastavro reads as a dict
        if writer is None:
            return cast(dict[str, Any], schemaless_reader(body, codec.parsed, None))
        return cast(dict[str, Any], schemaless_reader(body, writer, codec.parsed))


def serde_from_config(config: Config) -> AvroSerde:
    """The serde a deployment uses: single-object encoding unless a registry URL is configured."""
    return AvroSerde(registry_url=config.schema_registry_url)
