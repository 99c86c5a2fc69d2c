"""Configuration: one TOML file plus environment overrides, validated at load.

Load order: the packaged ``defaults.toml``, replaced whole by the file named in ``VPROV_CONFIG``,
then single keys from the environment (see ``ENV_OVERRIDES``). The document is validated by the
pydantic models below (one per TOML table); a bad value raises ``ConfigError``, one line naming
the key, the value, what would be accepted and where the value came from:

    kafka.partitions=0: expected a number greater than 0 (from VPROV_PARTITIONS)

A new key is a field on its table's model, a field on ``Config`` and, when it may come from the
environment, a line in ``ENV_OVERRIDES``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from vprov.core.envelope import VERSIONS

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
LIFECYCLE_TARGETS = ("PROVISIONED", "ACTIVE")
# Shapes of region and country codes, for configuration and for messages alike.
REGION_CODE = re.compile(r"[A-Z][A-Z0-9]{1,7}")
COUNTRY_CODE = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2

# environment variable -> (section, key, type)
ENV_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers", str),
    "VPROV_PARTITIONS": ("kafka", "partitions", int),
    "VPROV_REPLICATION_FACTOR": ("kafka", "replication_factor", int),
    "VPROV_MIN_INSYNC_REPLICAS": ("kafka", "min_insync_replicas", int),
    "VPROV_APP_PREFIX": ("kafka", "app_prefix", str),
    "VPROV_STANDBY_REPLICAS": ("kafka", "table_standby_replicas", int),
    "VPROV_SESSION_TIMEOUT_MS": ("kafka", "session_timeout_ms", int),
    "VPROV_HEARTBEAT_INTERVAL_MS": ("kafka", "heartbeat_interval_ms", int),
    "VPROV_STATIC_MEMBERSHIP": ("kafka", "static_membership", bool),
    "VPROV_BULK_RESTORE": ("kafka", "bulk_restore", bool),
    "REDIS_URL": ("redis", "url", str),
    "SCHEMA_REGISTRY_URL": ("schema_registry", "url", str),
    "VPROV_REHOME_TIMEOUT_SECONDS": ("flow", "rehome_timeout_seconds", float),
    "VPROV_JOIN_WAIT_SECONDS": ("flow", "join_wait_seconds", float),
    "VPROV_MOVE_TIMEOUT_SECONDS": ("flow", "move_timeout_seconds", float),
    "VPROV_FACTORY_RESET": ("flow", "factory_reset", str),
    "VPROV_DELETE_GLOBAL_IDENTITY": ("flow", "delete_global_identity", bool),
    "VPROV_REQUIRE_AUTH_HEADER": ("messages", "require_authenticated_header", bool),
    "VPROV_HOMING_BY_COUNTRY": ("homing", "by_country", bool),
    "KAFKA_SECURITY_PROTOCOL": ("kafka.security", "protocol", str),
    "KAFKA_SASL_MECHANISM": ("kafka.security", "sasl_mechanism", str),
    "KAFKA_SASL_USERNAME": ("kafka.security", "sasl_username", str),
    "KAFKA_SASL_PASSWORD": ("kafka.security", "sasl_password", str),
    "KAFKA_SSL_CA_LOCATION": ("kafka.security", "ssl_ca_location", str),
    "KAFKA_SSL_CERTIFICATE_LOCATION": ("kafka.security", "ssl_certificate_location", str),
    "KAFKA_SSL_KEY_LOCATION": ("kafka.security", "ssl_key_location", str),
    "VPROV_IDENTITY": ("edge", "identity", str),
    "VPROV_EDGE_GLOBAL_ENDPOINT": ("edge", "global_endpoint", str),
    "VPROV_EDGE_CA_LOCATION": ("edge", "ca_location", str),
    "VPROV_EDGE_ADMIN_USERNAME": ("edge", "admin_username", str),
    "VPROV_EDGE_ADMIN_PASSWORD": ("edge", "admin_password", str),
    "VPROV_EDGE_BRIDGE_USERNAME": ("edge", "bridge_username", str),
    "VPROV_EDGE_BRIDGE_PASSWORD": ("edge", "bridge_password", str),
    "VPROV_EDGE_CREDENTIAL_SECRET": ("edge", "credential_secret", str),
}
# never shown in a message
SECRET_KEYS = ("sasl_password", "admin_password", "bridge_password", "credential_secret")
# KAFKA_BOOTSTRAP_SERVERS_<R> -> regions.<R>.kafka.bootstrap_servers: region R's own cluster
REGION_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS_"
# VPROV_GATEWAY_ENDPOINT_<R> -> regions.<R>.gateway_endpoint: where region R's IoT core listens
REGION_ENDPOINT_ENV = "VPROV_GATEWAY_ENDPOINT_"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


# --- the document's schema: one model per TOML table ---------------------------------------------


def _matches(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(what)
        return value
    return AfterValidator(check)


def _per_region(value: str) -> str:
    if "{region}" not in value:
        raise ValueError("must contain {region}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-blank string")
    return value


Positive = Annotated[int, Field(gt=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
RegionCode = Annotated[str, _matches(REGION_CODE, "region codes are 2-8 capital letters or digits")]
CountryCode = Annotated[str, _matches(COUNTRY_CODE, "expected an ISO 3166 alpha-2 code")]
PerRegion = Annotated[str, AfterValidator(_per_region)]  # a topic name template
AppPrefix = Annotated[str, _matches(re.compile(r"[a-z][a-z0-9-]{0,30}"),
                                    "use lowercase letters, digits and '-'")]


class _Table(BaseModel):
    # strict: "8" is not a number and 1 is not a boolean in a TOML file
    model_config = ConfigDict(strict=True, frozen=True)


class KafkaSecurity(_Table):
    """How every Kafka client authenticates and encrypts (vprov/kafka/settings.py turns it into
    each library's settings). Paths are PEM files; empty means unset."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_ca_location: str = ""  # empty: the system's trusted CAs
    ssl_certificate_location: str = ""  # a client certificate, for mutual TLS
    ssl_key_location: str = ""

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"kafka.security.protocol={self.protocol!r}: expected "
                             "kafka.security.sasl_username and sasl_password as well")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError("kafka.security.ssl_certificate_location and ssl_key_location go "
                             "together (a client certificate and its key)")
        for key in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            path = getattr(self, key)
            if path and not Path(path).is_file():
                raise ValueError(f"kafka.security.{key}={path!r}: no such file")
        return self


class KafkaTable(_Table):
    bootstrap_servers: str
    app_prefix: AppPrefix
    partitions: Positive
    replication_factor: Positive
    # replicas that must hold a write before it is acknowledged (acks=all): with 3 replicas, 2
    # lets one broker go without losing or refusing a write
    min_insync_replicas: Positive = 1
    fetch_min_bytes: Positive
    fetch_max_wait_ms: Annotated[int, Field(ge=0, le=60_000)]
    # Faust holds the linger in seconds: above 1000 ms an odd value would not survive the trip
    producer_linger_ms: Annotated[int, Field(ge=0, le=1000)]
    producer_client: Literal["librdkafka", "aiokafka"] = "librdkafka"
    # Consumer groups (docs/operations.md, "Failover"): warm copies of each table partition on
    # other workers of the role, how soon a silent worker is given up, and static membership
    table_standby_replicas: Annotated[int, Field(ge=0)] = 1
    session_timeout_ms: Annotated[int, Field(ge=1000, le=300_000)] = 3000
    heartbeat_interval_ms: Positive = 500
    static_membership: bool = False
    # an empty or far-behind disk: read the changelogs in bulk before Faust opens the tables
    bulk_restore: bool = True
    security: KafkaSecurity = KafkaSecurity()

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaTable:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"kafka.min_insync_replicas={self.min_insync_replicas}: expected at most "
                f"kafka.replication_factor ({self.replication_factor}), or no write is ever "
                "acknowledged")
        return self

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> KafkaTable:
        if self.heartbeat_interval_ms * 2 > self.session_timeout_ms:
            raise ValueError(
                f"kafka.heartbeat_interval_ms={self.heartbeat_interval_ms}: expected at most "
                f"half of kafka.session_timeout_ms ({self.session_timeout_ms}), so that a "
                "late heartbeat does not evict a live worker")
        return self


class RedisTable(_Table):
    url: str


class SchemaRegistryTable(_Table):
    url: str


class MessagesTable(_Table):
    max_payload_bytes: Positive
    # Only versions the decoder and the encoder know: an answer is written in the request's.
    # (ignore: a Literal of a tuple constant is what pydantic validates; mypy wants literals)
    supported_versions: Annotated[list[Literal[VERSIONS]], Field(min_length=1)]  # type: ignore[valid-type]
    authenticated_header: str
    require_authenticated_header: bool


class FlowTable(_Table):
    rehome_timeout_seconds: PositiveSeconds
    delete_global_identity: bool
    max_held_requests: Positive
    join_wait_seconds: PositiveSeconds
    identity_backoff_max_seconds: PositiveSeconds
    factory_reset: Literal["refuse", "reprovision", "answer"] = "refuse"
    move_timeout_seconds: PositiveSeconds = 60


class HomingTable(_Table):
    by_country: bool


class EdgeTable(_Table):
    """The device edge (docs/architecture.md, "The device edge"): which IoT core holds the
    device identities the flows create and delete, and how the workers, the bridges and the
    simulated devices reach its brokers. The regions' brokers are their ``gateway_endpoint``."""

    identity: Literal["redis", "mosquitto"] = "redis"
    global_endpoint: Annotated[str, AfterValidator(_not_blank)] = \
        "mqtts://global.iot.vprov.example:8883"
    ca_location: str = ""  # PEM of the CA(s) that signed the brokers' certificates; empty: system's
    admin_username: str = "vprov-identity"  # the identity registry's user (the control API)
    admin_password: str = ""
    bridge_username: str = "vprov-edge"  # the edge bridges' user
    bridge_password: str = ""
    credential_secret: str = ""  # derives each device's MQTT password (vprov/edge/mqtt.py)

    @model_validator(mode="after")
    def _complete(self) -> EdgeTable:
        if self.identity == "mosquitto" and not (self.admin_password and self.credential_secret):
            raise ValueError("edge.identity='mosquitto': expected edge.admin_password and "
                             "edge.credential_secret as well")
        if self.ca_location and not Path(self.ca_location).is_file():
            raise ValueError(f"edge.ca_location={self.ca_location!r}: no such file")
        return self


class RegionKafka(_Table):
    """A region's own Kafka cluster (the multi-cluster topology, docs/architecture.md). Without
    a ``security`` table the region's clients use ``[kafka.security]``."""

    bootstrap_servers: Annotated[str, AfterValidator(_not_blank)]
    security: KafkaSecurity | None = None


class RegionTable(_Table):
    gateway_endpoint: Annotated[str, AfterValidator(_not_blank)]
    countries: list[CountryCode] = []
    kafka: RegionKafka | None = None  # None: the region's topics live on the global cluster


class TopicsTable(_Table):
    query: str
    query_response: str
    registrations: str
    rehome: PerRegion
    rehome_result: str
    device: PerRegion
    device_response: PerRegion
    lifecycle: str
    onboarding: PerRegion
    deadletter: str
    admin: str = "provisioning.admin"
    admin_outcome: str = "provisioning.admin.outcome"


class Document(_Table):
    kafka: KafkaTable
    redis: RedisTable
    schema_registry: SchemaRegistryTable
    messages: MessagesTable
    # (ignore: as for supported_versions)
    ecu_types: Annotated[dict[str, Literal[LIFECYCLE_TARGETS]], Field(min_length=1)]  # type: ignore[valid-type]
    flow: FlowTable
    homing: HomingTable
    regions: Annotated[dict[RegionCode, RegionTable], Field(min_length=1)]
    topics: TopicsTable
    edge: EdgeTable = EdgeTable()

    @model_validator(mode="after")
    def _each_country_once(self) -> Document:
        seen: dict[str, str] = {}
        for code, region in self.regions.items():
            for country in region.countries:
                if country in seen:
                    raise ValueError(f"regions.{code}.countries: {country} is also listed under "
                                     f"regions.{seen[country]}")
                seen[country] = code
        return self


# --- what the rest of the code reads ----------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """One Kafka cluster: its name ("global" or a region code), where it is and how to talk to
    it (a ``vprov.kafka.settings.KafkaAccess``)."""

    name: str
    bootstrap_servers: str
    kafka_security: KafkaSecurity = KafkaSecurity()


GLOBAL_CLUSTER = "global"


@dataclass(frozen=True)
class Region:
    code: str
    gateway_endpoint: str
    countries: tuple[str, ...]
    cluster: Cluster | None = None  # its own cluster; None: it shares the global one


Topics = TopicsTable  # topic names, per-region ones with a {region} placeholder


@dataclass(frozen=True)
class Config:
    bootstrap_servers: str
    app_prefix: str
    partitions: int
    replication_factor: int
    fetch_min_bytes: int
    fetch_max_wait_ms: int
    producer_linger_ms: int
    producer_client: str  # "librdkafka" or "aiokafka" (Faust's own producer)
    table_standby_replicas: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    static_membership: bool
    bulk_restore: bool
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
    kafka_security: KafkaSecurity = KafkaSecurity()
    factory_reset: str = "refuse"  # refuse, reprovision, answer (docs/after-first-boot.md)
    move_timeout_seconds: float = 60.0
    edge: EdgeTable = EdgeTable()
    min_insync_replicas: int = 1
    source_path: str = field(default=str(DEFAULTS_PATH), compare=False)

    def region(self, code: str) -> Region:
        try:
            return self.regions[code]
        except KeyError:
            known = ", ".join(sorted(self.regions))
            raise ConfigError(f"unknown region {code!r}; configured regions: {known}") from None

    # Clusters: the global one is [kafka]; a region with a [regions.<R>.kafka] table has its own.
    @property
    def global_cluster(self) -> Cluster:
        return Cluster(GLOBAL_CLUSTER, self.bootstrap_servers, self.kafka_security)

    def cluster(self, region: str | None) -> Cluster:
        """The cluster of a region's topics and workers (the global one for ``None``)."""
        if region is None:
            return self.global_cluster
        return self.region(region).cluster or self.global_cluster

    @property
    def clusters(self) -> list[Cluster]:
        """Every cluster, the global one first."""
        return [self.global_cluster] + [r.cluster for r in self.regions.values() if r.cluster]

    @property
    def multi_cluster(self) -> bool:
        return any(r.cluster for r in self.regions.values())

    def seen_from(self, region: str | None) -> Config:
        """The configuration as the worker of ``region`` (``None``: the global worker) sees it:
        its own cluster is the only one, so every client opened from it (the Faust app, the
        admin client, the readers) connects there and nowhere else."""
        cluster = self.cluster(region)
        return replace(self, bootstrap_servers=cluster.bootstrap_servers,
                       kafka_security=cluster.kafka_security,
                       regions={code: replace(r, cluster=None) for code, r in self.regions.items()})

    def region_for_country(self, country: str) -> str | None:
        for region in self.regions.values():
            if country in region.countries:
                return region.code
        return None


def _config(doc: Document, source: str) -> Config:
    return Config(
        bootstrap_servers=doc.kafka.bootstrap_servers,
        app_prefix=doc.kafka.app_prefix,
        partitions=doc.kafka.partitions,
        replication_factor=doc.kafka.replication_factor,
        fetch_min_bytes=doc.kafka.fetch_min_bytes,
        fetch_max_wait_ms=doc.kafka.fetch_max_wait_ms,
        producer_linger_ms=doc.kafka.producer_linger_ms,
        producer_client=doc.kafka.producer_client,
        table_standby_replicas=doc.kafka.table_standby_replicas,
        session_timeout_ms=doc.kafka.session_timeout_ms,
        heartbeat_interval_ms=doc.kafka.heartbeat_interval_ms,
        static_membership=doc.kafka.static_membership,
        bulk_restore=doc.kafka.bulk_restore,
        redis_url=doc.redis.url,
        schema_registry_url=doc.schema_registry.url,
        max_payload_bytes=doc.messages.max_payload_bytes,
        supported_versions=tuple(doc.messages.supported_versions),
        authenticated_header=doc.messages.authenticated_header,
        require_authenticated_header=doc.messages.require_authenticated_header,
        ecu_states=dict(doc.ecu_types),
        rehome_timeout_seconds=float(doc.flow.rehome_timeout_seconds),
        delete_global_identity=doc.flow.delete_global_identity,
        max_held_requests=doc.flow.max_held_requests,
        join_wait_seconds=float(doc.flow.join_wait_seconds),
        identity_backoff_max_seconds=float(doc.flow.identity_backoff_max_seconds),
        homing_by_country=doc.homing.by_country,
        regions={code: Region(code, r.gateway_endpoint, tuple(r.countries),
                              _region_cluster(code, r.kafka, doc.kafka.security))
                 for code, r in doc.regions.items()},
        topics=doc.topics,
        kafka_security=doc.kafka.security,
        factory_reset=doc.flow.factory_reset,
        move_timeout_seconds=float(doc.flow.move_timeout_seconds),
        edge=doc.edge,
        min_insync_replicas=doc.kafka.min_insync_replicas,
        source_path=source,
    )


def _region_cluster(code: str, kafka: RegionKafka | None, default: KafkaSecurity
                    ) -> Cluster | None:
    if kafka is None:
        return None
    return Cluster(code, kafka.bootstrap_servers, kafka.security or default)


# --- one line per error ------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "too_short": "expected at least one entry",
}


def _key(loc: tuple[int | str, ...]) -> str:
    """``('messages', 'supported_versions', 1)`` -> ``messages.supported_versions[1]``; the
    ``[key]`` marker of a dictionary key's own error is dropped."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _expected(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "greater_than":
        return f"expected a number greater than {ctx['gt']:g}"
    if kind == "literal_error":
        return "expected one of " + ctx["expected"].replace("'", "").replace(" or ", ", ")
    if kind == "value_error":
        return str(ctx["error"])
    return _EXPECTED.get(kind, error["msg"])


def _error_line(error: Any, origins: dict[str, str], source: str) -> str:
    loc = tuple(error["loc"])
    key = _key(loc)
    origin = origins.get(key)
    set_by = sorted(v for k, v in origins.items() if k.startswith(f"{key}."))
    if origin is None and set_by and error["type"] == "value_error":
        origin = ", ".join(set_by)  # a check across keys, some of them from the environment
    where = f"from {origin}" if origin else f"in {source}"
    if error["type"] == "missing":
        what = f"[{key}] section is missing" if len(loc) == 1 else f"{key} is missing"
    elif error["type"] == "value_error" and isinstance(error["input"], dict):
        what = str(error["ctx"]["error"])  # a check across a table's keys: its text names them
    else:
        shown = "'***'" if loc[-1] in SECRET_KEYS else repr(error["input"])
        what = f"{key}={shown}: {_expected(error)}"
    return f"{what} ({where})"


def _validate(doc: dict[str, Any], source: str, origins: dict[str, str]) -> Config:
    try:
        return _config(Document.model_validate(doc), source)
    except ValidationError as exc:
        raise ConfigError(_error_line(exc.errors()[0], origins, source)) from None


def from_document(doc: dict[str, Any], source: str = "<document>") -> Config:
    return _validate(doc, source, {})


# --- environment overrides and files ---------------------------------------------------------


_ENV_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _apply_env(doc: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Write the overrides into ``doc``; returns which variable set each dotted key."""
    origins = {}
    for name, (section, key, kind) in ENV_OVERRIDES.items():
        raw = env.get(name, "")
        if raw == "":
            continue
        try:
            value: Any = _parse_bool(raw) if kind is bool else kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected {_ENV_KINDS[kind]} "
                              f"(for {section}.{key})") from None
        table = doc
        for part in section.split("."):
            if not isinstance(table.get(part), dict):
                table[part] = {}
            table = table[part]
        table[key] = value
        origins[f"{section}.{key}"] = name
    regions = doc.get("regions")
    for name, raw in env.items():
        region = name.removeprefix(REGION_BOOTSTRAP_ENV)
        if region == name or raw == "" or not isinstance(regions, dict) \
                or not isinstance(regions.get(region), dict):
            continue  # a region the document does not configure is not created by a variable
        kafka = regions[region].setdefault("kafka", {})
        if not isinstance(kafka, dict):
            kafka = regions[region]["kafka"] = {}
        kafka["bootstrap_servers"] = raw
        origins[f"regions.{region}.kafka.bootstrap_servers"] = name
    for name, raw in env.items():
        region = name.removeprefix(REGION_ENDPOINT_ENV)
        if region == name or raw == "" or not isinstance(regions, dict) \
                or not isinstance(regions.get(region), dict):
            continue
        regions[region]["gateway_endpoint"] = raw
        origins[f"regions.{region}.gateway_endpoint"] = name
    return origins


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
    origins = _apply_env(doc, env)
    return _validate(doc, str(chosen), origins)


def security_from_env(env: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The Kafka security settings of the environment alone, for a client given only a
    bootstrap address (benchmarks, tests)."""
    doc: dict[str, Any] = {}
    origins = _apply_env(doc, os.environ if env is None else env)
    try:
        return KafkaSecurity.model_validate(doc.get("kafka", {}).get("security", {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        error["loc"] = ("kafka", "security", *error["loc"])
        raise ConfigError(_error_line(error, origins, "the environment")) from None


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
