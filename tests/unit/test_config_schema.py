"""One schema: each key of the document is reachable on ``Config``, and each environment variable
sets a key of the document and is listed with it in docs/configuration.md."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from vprov import config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
RENAMED = {"ecu_types": "ecu_states"}  # document table -> Config attribute
NOT_OVERRIDES = {"VPROV_INSTANCE"}  # named beside a key, but read by `vprov worker`


def sections() -> dict[str, type]:
    """The document's tables whose keys are Config's attributes, by table name."""
    return {name: info.annotation for name, info in config.Document.model_fields.items()
            if isinstance(info.annotation, type) and issubclass(info.annotation, config._Section)}


def keys(table: type = config.Document, prefix: str = "") -> dict[str, FieldInfo]:
    """Every key under ``table`` by its dotted name, nested tables' keys included; a table of
    free keys (``regions``, ``ecu_types``) is one key."""
    found: dict[str, FieldInfo] = {}
    for name, info in config._fields(table).items():
        key = f"{prefix}.{info.alias or name}" if prefix else info.alias or name
        nested = info.annotation
        if isinstance(nested, type) and config._fields(nested):
            found |= keys(nested, key)
        else:
            found[key] = info
    return found


def documented() -> dict[str, str]:
    """The rows of the key table: each key it names (``topics.*`` too) -> the row's text."""
    rows: dict[str, str] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([^`]+)`", line.split("|")[1])
        prefix = names[0].rpartition(".")[0]
        rows |= {names[0]: line} | {f"{prefix}.{name}": line for name in names[1:]}
    return rows


def test_the_sections_are_the_bases_of_config_and_share_no_key_name() -> None:
    assert set(sections().values()) == set(config.Config.__bases__)
    names = Counter(name for table in sections().values() for name in config._fields(table))
    assert [name for name, count in names.items() if count > 1] == []


def test_every_key_of_a_section_is_an_attribute_of_config_with_its_value() -> None:
    document = config.defaults_document()
    cfg = config.from_document(document)
    validated = config.Document.model_validate(document)
    for table_name in sections():
        table = getattr(validated, table_name)
        for name in config._fields(type(table)):
            assert getattr(cfg, name) == getattr(table, name), f"{table_name}.{name}"


def test_every_other_table_is_an_attribute_of_config() -> None:
    others = set(config.Document.model_fields) - set(sections())
    missing = [name for name in others if not hasattr(config.load(env={}), RENAMED.get(name, name))]
    assert missing == []


def test_every_environment_variable_sets_a_key_of_the_document_of_its_type() -> None:
    for variable, (section, key, kind) in config.ENV_OVERRIDES.items():
        info = keys().get(f"{section}.{key}")
        assert info is not None, f"{variable}: no key {section}.{key}"
        assert kind is (info.annotation if info.annotation in (int, float, bool) else str)


def test_every_environment_variable_is_documented_in_the_row_of_its_key() -> None:
    rows = documented()
    for variable, (section, key, _) in config.ENV_OVERRIDES.items():
        assert f"`{variable}`" in rows.get(f"{section}.{key}", ""), f"{variable} {section}.{key}"


def test_a_variable_documented_in_a_row_sets_a_key_of_that_row() -> None:
    rows = documented()
    for dotted, row in rows.items():
        for variable in re.findall(r"`((?:VPROV|KAFKA)_[A-Z0-9_]+|[A-Z_]+_URL)`", row):
            if variable in NOT_OVERRIDES:
                continue
            section, key, _ = config.ENV_OVERRIDES.get(variable, ("", "", str))
            assert rows.get(f"{section}.{key}") == row, f"{variable} in the row of {dotted}"


def test_every_key_of_the_document_has_a_row_in_the_docs() -> None:
    rows = documented()

    def covered(dotted: str) -> bool:  # its own row, `topics.*`, or rows of keys under it
        return dotted in rows or f"{dotted.partition('.')[0]}.*" in rows \
            or any(row.startswith(f"{dotted}.") for row in rows)
    assert [dotted for dotted in keys() if not covered(dotted)] == []


def test_every_key_of_a_table_the_defaults_write_out_has_its_default_there() -> None:
    document = config.defaults_document()

    def missing(dotted: str) -> bool:  # from a table the defaults have
        table: Any = document
        *path, key = dotted.split(".")
        for part in path:
            table = table.get(part) if isinstance(table, dict) else None
        return isinstance(table, dict) and key not in table
    assert [dotted for dotted in keys() if missing(dotted)] == []
