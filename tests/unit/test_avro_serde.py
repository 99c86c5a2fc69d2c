"""Avro serde: round trips, the single-object wire format, and the schema registry path."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import avro.io
import avro.schema
import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.avro_samples import SAMPLES, T0
from tests.ports import closed_port
from vprov.kafka.avro import (
    HEADER_SIZE,
    RECORD_NAMES,
    SCHEMA_DIR,
    SINGLE_OBJECT_MARKER,
    AvroSerde,
    SchemaError,
    serde_from_config,
)

SERDE = AvroSerde()


@pytest.fixture()
def serde() -> AvroSerde:
    return SERDE


def avsc(record_name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{record_name}.avsc").read_text(encoding="utf-8"))


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification's "Schema Fingerprints" section gives it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_every_record_has_a_sample() -> None:
    assert set(SAMPLES) == set(RECORD_NAMES)


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_each_record_round_trips(serde: AvroSerde, record_name: str) -> None:
    record = SAMPLES[record_name]
    assert serde.decode(record_name, serde.encode(record_name, record)) == record


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_nullable_fields_round_trip_as_null(serde: AvroSerde, record_name: str) -> None:
    record = dict(SAMPLES[record_name])
    for field in avsc(record_name)["fields"]:
        if isinstance(field["type"], list) and "null" in field["type"]:
            record[field["name"]] = None
    assert serde.decode(record_name, serde.encode(record_name, record)) == record


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=40),
    optional=st.one_of(st.none(), st.text(max_size=20)),
    error_code=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    sequence=st.integers(-(2**63), 2**63 - 1),
    millis=st.integers(-(10**12), 10**13),
)
def test_lifecycle_event_round_trips_for_any_values(
    text: str, optional: str | None, error_code: int | None, sequence: int, millis: int
) -> None:
    record = {
        "event_id": text,
        "vin": text,
        "system_id": text,
        "device_id": optional,
        "partition": "global",
        "state": text,
        "previous_state": optional,
        "error_code": error_code,
        "cause_message_id": text,
        "sequence": sequence,
        "occurred_at": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis),
    }
    assert SERDE.decode("LifecycleEvent", SERDE.encode("LifecycleEvent", record)) == record


def test_timestamps_accept_epoch_millis_and_decode_to_utc_datetimes(serde: AvroSerde) -> None:
    millis = 1_741_944_413_589
    record = dict(SAMPLES["LifecycleEvent"], occurred_at=millis)
    decoded = serde.decode("LifecycleEvent", serde.encode("LifecycleEvent", record))
    assert decoded["occurred_at"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        milliseconds=millis
    )
    assert decoded["occurred_at"].utcoffset() == timedelta(0)


def test_aware_datetimes_in_other_zones_keep_their_instant(serde: AvroSerde) -> None:
    tokyo = T0.astimezone(ZoneInfo("Asia/Tokyo"))
    record = dict(SAMPLES["LifecycleEvent"], occurred_at=tokyo)
    decoded = serde.decode("LifecycleEvent", serde.encode("LifecycleEvent", record))
    assert decoded["occurred_at"] == T0


def test_naive_datetime_is_refused(serde: AvroSerde) -> None:
    record = dict(SAMPLES["LifecycleEvent"], occurred_at=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="occurred_at: naive datetime"):
        serde.encode("LifecycleEvent", record)


def test_missing_nullable_field_takes_its_default(serde: AvroSerde) -> None:
    record = {k: v for k, v in SAMPLES["LifecycleEvent"].items() if k != "previous_state"}
    decoded = serde.decode("LifecycleEvent", serde.encode("LifecycleEvent", record))
    assert decoded["previous_state"] is None


def test_unknown_field_is_refused_rather_than_dropped(serde: AvroSerde) -> None:
    record = dict(SAMPLES["LifecycleEvent"], previous_sate="REGIONAL")
    with pytest.raises(ValueError, match="previous_sate"):
        serde.encode("LifecycleEvent", record)


def test_crc64_avro_matches_the_specification_test_vector() -> None:
    # "int" -> 8247732601305521295 (0x7275d51a3f395c8f) in the Avro project's schema-tests data.
    assert crc64_avro(b'"int"') == 8247732601305521295
    assert bytes.fromhex(fingerprint('"int"', "CRC-64-AVRO")) == (8247732601305521295).to_bytes(
        8, "little"
    )


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_single_object_header(serde: AvroSerde, record_name: str) -> None:
    payload = serde.encode(record_name, SAMPLES[record_name])
    canonical = to_parsing_canonical_form(avsc(record_name))
    # fastavro's fingerprint() is the hex of the little-endian bytes, which is what the header
    # carries; the independent spec implementation pins that byte order down.
    expected = crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) == expected
    assert payload[:2] == SINGLE_OBJECT_MARKER == b"\xc3\x01"
    assert payload[2:HEADER_SIZE] == expected


def test_canonical_form_strips_logical_types_as_the_specification_says() -> None:
    canonical = json.loads(to_parsing_canonical_form(avsc("LifecycleEvent")))
    occurred_at = next(f for f in canonical["fields"] if f["name"] == "occurred_at")
    assert occurred_at["type"] == "long"


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_plain_fastavro_reads_it_with_only_the_avsc_file(
    serde: AvroSerde, record_name: str
) -> None:
    payload = serde.encode(record_name, SAMPLES[record_name])
    schema = fastavro.parse_schema(avsc(record_name), named_schemas={})
    body = io.BytesIO(payload[HEADER_SIZE:])
    assert fastavro.schemaless_reader(body, schema) == SAMPLES[record_name]


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_the_apache_avro_library_reads_it_with_only_the_avsc_file(
    serde: AvroSerde, record_name: str
) -> None:
    payload = serde.encode(record_name, SAMPLES[record_name])
    schema = avro.schema.parse((SCHEMA_DIR / f"{record_name}.avsc").read_text(encoding="utf-8"))
    decoder = avro.io.BinaryDecoder(io.BytesIO(payload[HEADER_SIZE:]))
    assert avro.io.DatumReader(schema).read(decoder) == SAMPLES[record_name]


def test_wrong_marker_is_a_schema_error(serde: AvroSerde) -> None:
    payload = serde.encode("LifecycleEvent", SAMPLES["LifecycleEvent"])
    with pytest.raises(SchemaError, match="single-object marker c301"):
        serde.decode("LifecycleEvent", b"\xc3\x02" + payload[2:])


def test_registry_framed_payload_points_at_the_registry_setting(serde: AvroSerde) -> None:
    with pytest.raises(SchemaError, match="schema_registry.url"):
        serde.decode("LifecycleEvent", b"\x00\x00\x00\x00\x01" + b"\x02" * 20)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [(b"", "marker"), (b"\xc3", "marker"), (b"\xc3\x01\x01\x02", "cut inside")],
)
def test_truncated_header_is_a_schema_error(serde: AvroSerde, payload: bytes, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem):
        serde.decode("LifecycleEvent", payload)


def test_unknown_fingerprint_is_a_schema_error(serde: AvroSerde) -> None:
    payload = serde.encode("LifecycleEvent", SAMPLES["LifecycleEvent"])
    forged = payload[:2] + bytes(8) + payload[HEADER_SIZE:]
    with pytest.raises(SchemaError, match=r"fingerprint 0000000000000000 .*LifecycleEvent\.v<N>"):
        serde.decode("LifecycleEvent", forged)


def test_data_of_another_record_is_an_unknown_fingerprint(serde: AvroSerde) -> None:
    payload = serde.encode("RehomeResult", SAMPLES["RehomeResult"])
    with pytest.raises(SchemaError, match="fingerprint"):
        serde.decode("LifecycleEvent", payload)


def test_unknown_record_name_is_a_schema_error(serde: AvroSerde) -> None:
    with pytest.raises(SchemaError, match="unknown record 'Nope'"):
        serde.encode("Nope", {})
    with pytest.raises(SchemaError, match="known records: DeviceRegistration"):
        serde.decode("Nope", b"")
    with pytest.raises(SchemaError):
        serde.schema("Nope")


def test_schema_returns_the_parsed_current_schema(serde: AvroSerde) -> None:
    schema = serde.schema("RehomeRequest")
    schema["fields"].clear()  # a copy: the serde keeps working
    assert serde.decode("RehomeRequest", serde.encode("RehomeRequest", SAMPLES["RehomeRequest"]))
    schema = serde.schema("RehomeRequest")
    assert schema["name"] == "io.vprov.events.RehomeRequest"
    assert [f["name"] for f in schema["fields"]] == [
        f["name"] for f in avsc("RehomeRequest")["fields"]
    ]


def test_serde_from_config_without_registry_uses_single_object_encoding() -> None:
    serde = serde_from_config(SimpleNamespace(schema_registry_url=""))
    assert serde.encode("LifecycleEvent", SAMPLES["LifecycleEvent"])[:2] == SINGLE_OBJECT_MARKER


# --- schema registry path (the real registry: tests/integration/test_schema_registry.py) ---


@pytest.fixture
def unreachable_registry() -> AvroSerde:
    """Registry mode with nothing listening: these refusals must come before any request."""
    return AvroSerde(registry_url=f"http://127.0.0.1:{closed_port()}")


def test_registry_requires_a_topic(unreachable_registry: AvroSerde) -> None:
    with pytest.raises(SchemaError, match="topic is required"):
        unreachable_registry.encode("LifecycleEvent", SAMPLES["LifecycleEvent"])
    with pytest.raises(SchemaError, match="topic is required"):
        unreachable_registry.decode("LifecycleEvent", b"\x00\x00\x00\x00\x01\x02")


def test_registry_mode_refuses_single_object_payloads(unreachable_registry: AvroSerde) -> None:
    single_object = AvroSerde().encode("LifecycleEvent", SAMPLES["LifecycleEvent"])
    with pytest.raises(SchemaError, match="leave schema_registry.url empty"):
        unreachable_registry.decode("LifecycleEvent", single_object, topic="vehicle.lifecycle")


def test_schema_dir_points_at_the_repository_schemas() -> None:
    repository = Path(__file__).resolve().parents[2]
    assert repository / "avro_schemas" == SCHEMA_DIR
