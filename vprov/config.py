"""Configuration: one TOML file plus environment overrides, validated at load.

Load order: the packaged ``defaults.toml``, replaced whole by the file named in ``VPROV_CONFIG``,
then single keys from the environment (see ``ENV_OVERRIDES``). A bad value raises
``ConfigError`` naming the key and what would be accepted.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vprov.envelope import VERSIONS

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")  # package data (pyproject.toml)
LIFECYCLE_TARGETS = ("PROVISIONED", "ACTIVE")
# Shapes of region and country codes, for configuration and for messages alike.
REGION_CODE = re.compile(r"[A-Z][A-Z0-9]{1,7}")
COUNTRY_CODE = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2

# environment variable -> (section, key, type)
ENV_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers", str),
    "VPROV_PARTITIONS": ("kafka", "partitions", int),
    "VPROV_APP_PREFIX": ("kafka", "app_prefix", str),
    "REDIS_URL": ("redis", "url", str),
    "SCHEMA_REGISTRY_URL": ("schema_registry", "url", str),
    "VPROV_REHOME_TIMEOUT_SECONDS": ("flow", "rehome_timeout_seconds", float),
    "VPROV_JOIN_WAIT_SECONDS": ("flow", "join_wait_seconds", float),
    "VPROV_DELETE_GLOBAL_IDENTITY": ("flow", "delete_global_identity", bool),
    "VPROV_REQUIRE_AUTH_HEADER": ("messages", "require_authenticated_header", bool),
    "VPROV_HOMING_BY_COUNTRY": ("homing", "by_country", bool),
}


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class Region:
    code: str
    gateway_endpoint: str
    countries: tuple[str, ...]


@dataclass(frozen=True)
class Topics:
    query: str
    query_response: str
    registrations: str
    rehome: str
    rehome_result: str
    device: str
    device_response: str
    lifecycle: str
    onboarding: str
    deadletter: str


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str
    app_prefix: str
    partitions: int
    replication_factor: int
    fetch_min_bytes: int
    fetch_max_wait_ms: int
    producer_linger_ms: int
    redis_url: str
    schema_registry_url: str
    max_payload_bytes: int
    supported_versions: tuple[str, ...]
    authenticated_header: str
    require_authenticated_header: bool
    ecu_states: dict[str, str]
    rehome_timeout_seconds: float
    delete_global_identity: bool
    max_held_requests: int
    join_wait_seconds: float
    identity_backoff_max_seconds: float
    homing_by_country: bool
    regions: dict[str, Region]
    topics: Topics
    source_path: str = field(default=str(DEFAULTS_PATH), compare=False)

    def region(self, code: str) -> Region:
        try:
            return self.regions[code]
        except KeyError:
            known = ", ".join(sorted(self.regions))
            raise ConfigError(f"unknown region {code!r}; configured regions: {known}") from None

    def region_for_country(self, country: str) -> str | None:
        for region in self.regions.values():
            if country in region.countries:
                return region.code
        return None


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _apply_env(doc: dict[str, Any], env: dict[str, str]) -> None:
    for name, (section, key, kind) in ENV_OVERRIDES.items():
        if name not in env or env[name] == "":
            continue
        raw = env[name]
        try:
            value: Any = _parse_bool(name, raw) if kind is bool else kind(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r}: expected {kind.__name__} ({exc})") from None
        doc.setdefault(section, {})[key] = value


def _get(doc: dict[str, Any], section: str, key: str, kind: type | tuple[type, ...],
         parent: str = "") -> Any:
    """``doc[section][key]`` of type ``kind``; errors name the key as ``parent.section.key``."""
    where = f"{parent}.{section}" if parent else section
    if section not in doc or not isinstance(doc[section], dict):
        raise ConfigError(f"[{where}] section is missing")
    if key not in doc[section]:
        raise ConfigError(f"{where}.{key} is missing")
    value = doc[section][key]
    # bool is an int subclass: keep numbers and booleans apart.
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}.{key}={value!r}: expected a number")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}.{key}={value!r}: expected {names}")
    return value


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{name}={value!r}: must be greater than 0")
    return value


def _within(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value!r}: must be between {low} and {high}")
    return value


def _app_prefix(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", value):
        raise ConfigError(f"kafka.app_prefix={value!r}: use lowercase letters, digits and '-'")
    return value


def _regions(doc: dict[str, Any]) -> dict[str, Region]:
    raw = doc.get("regions")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("[regions] must configure at least one region, e.g. [regions.NA]")
    regions: dict[str, Region] = {}
    seen_countries: dict[str, str] = {}
    for code, body in raw.items():
        if not REGION_CODE.fullmatch(code):
            raise ConfigError(f"regions.{code}: region codes are 2-8 capital letters or digits")
        endpoint = _get(raw, code, "gateway_endpoint", str, parent="regions")
        if not endpoint:
            raise ConfigError(f"regions.{code}.gateway_endpoint is blank")
        countries = tuple(body.get("countries", []))
        for country in countries:
            if not isinstance(country, str) or not COUNTRY_CODE.fullmatch(country):
                raise ConfigError(
                    f"regions.{code}.countries: {country!r} is not an ISO 3166 alpha-2 code"
                )
            if country in seen_countries:
                raise ConfigError(
                    f"regions.{code}.countries: {country} is also listed under "
                    f"regions.{seen_countries[country]}"
                )
            seen_countries[country] = code
        regions[code] = Region(code=code, gateway_endpoint=endpoint, countries=countries)
    return regions


def _topics(doc: dict[str, Any]) -> Topics:
    names = {}
    for key in Topics.__dataclass_fields__:
        value = _get(doc, "topics", key, str)
        per_region = key in ("rehome", "device", "device_response", "onboarding")
        if per_region and "{region}" not in value:
            raise ConfigError(f"topics.{key}={value!r}: must contain {{region}}")
        names[key] = value
    return Topics(**names)


def from_document(doc: dict[str, Any], source: str = "<document>") -> Config:
    ecu = doc.get("ecu_types")
    if not isinstance(ecu, dict) or not ecu:
        raise ConfigError("[ecu_types] must map at least one ECU type to a lifecycle state")
    for ecu_type, state in ecu.items():
        if state not in LIFECYCLE_TARGETS:
            raise ConfigError(
                f"ecu_types.{ecu_type}={state!r}: expected one of {', '.join(LIFECYCLE_TARGETS)}"
            )
    versions = _get(doc, "messages", "supported_versions", list)
    # Only versions the decoder and the encoder know: an answer is written in the request's.
    if not versions or any(v not in VERSIONS for v in versions):
        raise ConfigError(
            f"messages.supported_versions={versions!r}: expected a non-empty list of "
            f"{', '.join(VERSIONS)}"
        )
    return Config(
        bootstrap_servers=_get(doc, "kafka", "bootstrap_servers", str),
        app_prefix=_app_prefix(_get(doc, "kafka", "app_prefix", str)),
        partitions=int(_positive("kafka.partitions", _get(doc, "kafka", "partitions", int))),
        replication_factor=int(
            _positive("kafka.replication_factor", _get(doc, "kafka", "replication_factor", int))
        ),
        fetch_min_bytes=int(
            _positive("kafka.fetch_min_bytes", _get(doc, "kafka", "fetch_min_bytes", int))
        ),
        fetch_max_wait_ms=_within("kafka.fetch_max_wait_ms",
                                  _get(doc, "kafka", "fetch_max_wait_ms", int), 0, 60_000),
        producer_linger_ms=_within("kafka.producer_linger_ms",
                                   _get(doc, "kafka", "producer_linger_ms", int), 0, 1000),
        redis_url=_get(doc, "redis", "url", str),
        schema_registry_url=_get(doc, "schema_registry", "url", str),
        max_payload_bytes=int(
            _positive("messages.max_payload_bytes", _get(doc, "messages", "max_payload_bytes", int))
        ),
        supported_versions=tuple(versions),
        authenticated_header=_get(doc, "messages", "authenticated_header", str),
        require_authenticated_header=_get(doc, "messages", "require_authenticated_header", bool),
        ecu_states=dict(ecu),
        rehome_timeout_seconds=float(
            _positive(
                "flow.rehome_timeout_seconds",
                _get(doc, "flow", "rehome_timeout_seconds", (int, float)),
            )
        ),
        delete_global_identity=_get(doc, "flow", "delete_global_identity", bool),
        max_held_requests=int(
            _positive("flow.max_held_requests", _get(doc, "flow", "max_held_requests", int))
        ),
        join_wait_seconds=float(
            _positive("flow.join_wait_seconds",
                      _get(doc, "flow", "join_wait_seconds", (int, float)))
        ),
        identity_backoff_max_seconds=float(
            _positive(
                "flow.identity_backoff_max_seconds",
                _get(doc, "flow", "identity_backoff_max_seconds", (int, float)),
            )
        ),
        homing_by_country=_get(doc, "homing", "by_country", bool),
        regions=_regions(doc),
        topics=_topics(doc),
        source_path=source,
    )


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the configuration: ``path``, else ``$VPROV_CONFIG``, else the packaged defaults."""
    env = dict(os.environ if env is None else env)
    chosen = Path(path or env.get("VPROV_CONFIG") or DEFAULTS_PATH)
    try:
        doc = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {chosen} does not exist (VPROV_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {chosen} is not valid TOML: {exc}") from None
    _apply_env(doc, env)
    return from_document(doc, source=str(chosen))


# --- writing configuration files (tests, benchmarks, deployments of their own) ---------------

def defaults_document() -> dict[str, Any]:
    """The packaged defaults as a document to edit and write with ``dumps``."""
    return tomllib.loads(DEFAULTS_PATH.read_text(encoding="utf-8"))


def isolate(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Give a document its own consumer groups, internal topics and topic names, so that a
    second deployment (a test session, a benchmark) can share a broker with others."""
    doc["kafka"]["app_prefix"] = prefix
    doc["topics"] = {name: f"{prefix}.{topic}" for name, topic in doc["topics"].items()}
    return doc


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dumps(doc: dict[str, Any], prefix: str = "") -> str:
    """A configuration document as TOML: tables of scalars, lists and nested tables."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(s + "\n" for s in scalars)
    for key, value in doc.items():
        if isinstance(value, dict):
            text += "\n" + dumps(value, f"{prefix}.{key}" if prefix else key)
    return text
