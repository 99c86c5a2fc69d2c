"""Schema evolution: every current schema reads every published version, and the check can fail.

Compatibility is judged by the Apache Avro library's reader/writer checker, independent of the
fastavro code that does the actual reading.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import avro.schema
import pytest
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

from tests.avro_samples import SAMPLES as AVRO_SAMPLES
from vprov.kafka.avro import (
    NAMESPACE,
    RECORD_NAMES,
    SCHEMA_DIR,
    AvroSerde,
    SchemaError,
    history_versions,
)

HISTORY_FILES = sorted((SCHEMA_DIR / "history").glob("*.avsc"))
ALL_SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc")) + HISTORY_FILES

EVENT = AVRO_SAMPLES["LifecycleEvent"]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def current(record_name: str) -> dict[str, Any]:
    return load(SCHEMA_DIR / f"{record_name}.avsc")


def compatibility(reader: dict[str, Any], writer: dict[str, Any]) -> Any:
    return ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )


def test_history_is_not_empty() -> None:
    assert {path.name.split(".")[0] for path in HISTORY_FILES} == set(RECORD_NAMES)


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.name)
def test_current_schema_reads_data_written_with_history_version(path: Path) -> None:
    record_name = path.name.split(".")[0]
    result = compatibility(reader=current(record_name), writer=load(path))
    assert result.compatibility is SchemaCompatibilityType.compatible, (
        f"{record_name}.avsc cannot read data written with {path.name}: "
        f"{sorted(result.messages)} at {sorted(result.locations)}"
    )


@pytest.mark.parametrize("record_name", RECORD_NAMES)
def test_history_versions_are_numbered_from_1_and_the_latest_is_the_current_schema(
    record_name: str,
) -> None:
    versions = history_versions(record_name)
    assert list(versions) == list(range(1, len(versions) + 1))
    assert load(versions[len(versions)]) == current(record_name), (
        f"copy {record_name}.avsc to history/{record_name}.v{len(versions) + 1}.avsc when it "
        "changes"
    )


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"].append(field)
    return changed


def _retyped(schema: dict[str, Any], name: str, new_type: Any) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    for field in changed["fields"]:
        if field["name"] == name:
            field["type"] = new_type
    return changed


def _outcome_without_cancelled(schema: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    for field in changed["fields"]:
        if field["name"] == "outcome":
            field["type"]["symbols"] = ["REGISTERED", "FAILED"]
    return changed


INCOMPATIBLE_CHANGES = [
    pytest.param(
        "LifecycleEvent",
        lambda s: _with_field(s, {"name": "tenant", "type": "string", "doc": "new, no default"}),
        SchemaIncompatibilityType.reader_field_missing_default_value,
        id="new field without a default",
    ),
    pytest.param(
        "LifecycleEvent",
        lambda s: _retyped(s, "sequence", "int"),
        SchemaIncompatibilityType.type_mismatch,
        id="long narrowed to int",
    ),
    pytest.param(
        "LifecycleEvent",
        lambda s: _retyped(s, "device_id", "string"),
        SchemaIncompatibilityType.type_mismatch,
        id="nullable made mandatory",
    ),
    pytest.param(
        "RehomeResult",
        _outcome_without_cancelled,
        SchemaIncompatibilityType.missing_enum_symbols,
        id="enum symbol removed",
    ),
]


@pytest.mark.parametrize(("record_name", "change", "expected"), INCOMPATIBLE_CHANGES)
def test_an_incompatible_change_is_detected(
    record_name: str, change: Any, expected: SchemaIncompatibilityType
) -> None:
    result = compatibility(reader=change(current(record_name)), writer=current(record_name))
    assert result.compatibility is SchemaCompatibilityType.incompatible
    assert expected in result.incompatibilities


def test_a_new_nullable_field_with_default_is_compatible() -> None:
    schema = current("LifecycleEvent")
    field = {"name": "tenant", "type": ["null", "string"], "default": None, "doc": "new"}
    result = compatibility(reader=_with_field(schema, field), writer=schema)
    assert result.compatibility is SchemaCompatibilityType.compatible


def _schema_dir(root: Path, lifecycle_current: dict[str, Any], *history: dict[str, Any]) -> Path:
    """A copy of the repository's schemas with LifecycleEvent's current and history replaced."""
    target = root / "avro_schemas"
    shutil.copytree(SCHEMA_DIR, target)
    for old in (target / "history").glob("LifecycleEvent.v*.avsc"):
        old.unlink()
    (target / "LifecycleEvent.avsc").write_text(json.dumps(lifecycle_current), encoding="utf-8")
    for version, schema in enumerate(history, start=1):
        path = target / "history" / f"LifecycleEvent.v{version}.avsc"
        path.write_text(json.dumps(schema), encoding="utf-8")
    return target


def test_data_written_with_an_older_version_decodes_through_the_fingerprint(
    tmp_path: Path,
) -> None:
    newer = current("LifecycleEvent")
    older = copy.deepcopy(newer)
    older["fields"] = [f for f in older["fields"] if f["name"] != "previous_state"]

    old_writer = AvroSerde(_schema_dir(tmp_path / "then", older, older))
    old_event = {k: v for k, v in EVENT.items() if k != "previous_state"}
    payload = old_writer.encode("LifecycleEvent", old_event)

    reader = AvroSerde(_schema_dir(tmp_path / "now", newer, older, newer))
    assert reader.decode("LifecycleEvent", payload) == dict(old_event, previous_state=None)


def test_data_of_a_version_missing_from_history_is_refused(tmp_path: Path) -> None:
    newer = current("LifecycleEvent")
    older = copy.deepcopy(newer)
    older["fields"] = [f for f in older["fields"] if f["name"] != "previous_state"]
    payload = AvroSerde(_schema_dir(tmp_path / "then", older, older)).encode(
        "LifecycleEvent", {k: v for k, v in EVENT.items() if k != "previous_state"}
    )
    forgetful = AvroSerde(_schema_dir(tmp_path / "now", newer, newer))
    with pytest.raises(SchemaError, match="history"):
        forgetful.decode("LifecycleEvent", payload)


def _named_types(schema: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every record and enum defined in ``schema``, with where it sits."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, list):
        for branch in schema:
            found += _named_types(branch, path)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            found.append((f"{path}{schema['name']}", schema))
        for field in schema.get("fields", []):
            found += _named_types(field["type"], f"{path}{schema['name']}.")
        if schema.get("type") == "array":
            found += _named_types(schema["items"], path)
    return found


@pytest.mark.parametrize("path", ALL_SCHEMA_FILES, ids=lambda p: str(p.relative_to(SCHEMA_DIR)))
def test_every_schema_has_the_namespace_and_documents_every_record_and_field(path: Path) -> None:
    schema = load(path)
    assert schema["namespace"] == NAMESPACE
    assert avro.schema.parse(json.dumps(schema)).fullname == f"{NAMESPACE}.{schema['name']}"
    for where, named in _named_types(schema, ""):
        assert named.get("doc", "").strip(), f"{where} has no doc"
        for field in named.get("fields", []):
            assert field.get("doc", "").strip(), f"{where}.{field['name']} has no doc"
