"""Configuration: one TOML file plus environment overrides, validated at load.

Load order: the packaged ``defaults.toml``, replaced whole by the file named in ``VPROV_CONFIG``,
then single keys from the environment (see ``ENV_OVERRIDES``). The document is validated by the
pydantic models below (one per TOML table); a bad value raises ``ConfigError``, one line naming
the key, the value, what would be accepted and where the value came from:

    kafka.partitions=0: expected a number greater than 0 (from VPROV_PARTITIONS)

A key is declared once, as a field of its table's model; ``Env("NAME")`` in the field's
``Annotated`` lets that variable set it (``ENV_OVERRIDES`` is collected from them). The keys of
the sections (``_Section``) are ``Config``'s attributes as they are, since ``Config`` derives from
them; the other tables are attributes of ``Config`` whole.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema

from vprov.core.envelope import VERSIONS

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
LIFECYCLE_TARGETS = ("PROVISIONED", "ACTIVE")
# Shapes of region and country codes, for configuration and for messages alike.
REGION_CODE = re.compile(r"[A-Z][A-Z0-9]{1,7}")
COUNTRY_CODE = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2

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


if TYPE_CHECKING:
    Version = str  # mypy wants literals in a Literal; pydantic gets the tuple constant
else:
    Version = Literal[VERSIONS]


@dataclass(frozen=True)
class Env:
    """A key's metadata: the environment variable that overrides it."""

    name: str


class _Table(BaseModel):
    # strict: "8" is not a number and 1 is not a boolean in a TOML file
    model_config = ConfigDict(strict=True, frozen=True)


class _Section:
    """A table whose keys ``Config`` has under their own names (a frozen, keyword-only pydantic
    dataclass that ``Config`` derives from). A key that another section has too is named after
    its section in front (``redis_url``), with the TOML key as its alias (``url``)."""

    __pydantic_config__ = ConfigDict(strict=True)  # as _Table's; frozen by the decorator

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> CoreSchema:
        # a strict dataclass accepts only an instance of itself; the TOML table is a dict. Its
        # keys stay strict.
        schema = handler(source)
        node: Any = handler.resolve_ref_schema(schema)
        while node["type"] != "dataclass":  # under the wrappers of its model validators
            node = node["schema"]
        node["strict"] = False
        return schema


class KafkaSecurity(_Table):
    """How every Kafka client authenticates and encrypts (vprov/kafka/settings.py turns it into
    each library's settings). Paths are PEM files; empty means unset."""

    protocol: Annotated[Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                        Env("KAFKA_SECURITY_PROTOCOL")] = "PLAINTEXT"
    sasl_mechanism: Annotated[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                              Env("KAFKA_SASL_MECHANISM")] = "SCRAM-SHA-512"
    sasl_username: Annotated[str, Env("KAFKA_SASL_USERNAME")] = ""
    sasl_password: Annotated[str, Env("KAFKA_SASL_PASSWORD")] = ""
    # empty: the system's trusted CAs
    ssl_ca_location: Annotated[str, Env("KAFKA_SSL_CA_LOCATION")] = ""
    # a client certificate, for mutual TLS
    ssl_certificate_location: Annotated[str, Env("KAFKA_SSL_CERTIFICATE_LOCATION")] = ""
    ssl_key_location: Annotated[str, Env("KAFKA_SSL_KEY_LOCATION")] = ""

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


@pydantic_dataclass(frozen=True, kw_only=True)
class KafkaTable(_Section):
    bootstrap_servers: Annotated[str, Env("KAFKA_BOOTSTRAP_SERVERS")]
    app_prefix: Annotated[AppPrefix, Env("VPROV_APP_PREFIX")]
    partitions: Annotated[Positive, Env("VPROV_PARTITIONS")]
    replication_factor: Annotated[Positive, Env("VPROV_REPLICATION_FACTOR")]
    # replicas that must hold a write before it is acknowledged (acks=all): with 3 replicas, 2
    # lets one broker go without losing or refusing a write
    min_insync_replicas: Annotated[Positive, Env("VPROV_MIN_INSYNC_REPLICAS")] = 1
    fetch_min_bytes: Annotated[Positive, Env("VPROV_FETCH_MIN_BYTES")]
    fetch_max_wait_ms: Annotated[int, Field(ge=0, le=60_000), Env("VPROV_FETCH_MAX_WAIT_MS")]
    # while records flow, a fetch waits this long for this many bytes: fewer wake-ups per
    # record; an idle worker's fetch still answers the first record at once (0: never batch)
    fetch_batch_bytes: Annotated[Positive, Env("VPROV_FETCH_BATCH_BYTES")] = 65536
    fetch_batch_wait_ms: Annotated[int, Field(ge=0, le=1000),
                                   Env("VPROV_FETCH_BATCH_WAIT_MS")] = 25
    # Faust holds the linger in seconds: above 1000 ms an odd value would not survive the trip
    producer_linger_ms: Annotated[int, Field(ge=0, le=1000), Env("VPROV_PRODUCER_LINGER_MS")]
    producer_client: Literal["librdkafka", "aiokafka"] = "librdkafka"
    # records no answer waits for (Catalogue.batched) linger this long on a client of their own
    # (librdkafka sends one request per partition); 0: one client, producer_linger_ms for all
    producer_batch_linger_ms: Annotated[int, Field(ge=0, le=1000),
                                        Env("VPROV_PRODUCER_BATCH_LINGER_MS")] = 200
    # Consumer groups (docs/operations.md, "Failover"): warm copies of each table partition on
    # other workers of the role, how soon a silent worker is given up, and static membership
    table_standby_replicas: Annotated[int, Field(ge=0), Env("VPROV_STANDBY_REPLICAS")] = 1
    session_timeout_ms: Annotated[int, Field(ge=1000, le=300_000),
                                  Env("VPROV_SESSION_TIMEOUT_MS")] = 1500
    heartbeat_interval_ms: Annotated[Positive, Env("VPROV_HEARTBEAT_INTERVAL_MS")] = 250
    static_membership: Annotated[bool, Env("VPROV_STATIC_MEMBERSHIP")] = False
    # an empty or far-behind disk: read the changelogs in bulk before Faust opens the tables
    bulk_restore: Annotated[bool, Env("VPROV_BULK_RESTORE")] = True
    kafka_security: Annotated[KafkaSecurity, Field(alias="security")] = KafkaSecurity()

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


@pydantic_dataclass(frozen=True, kw_only=True)
class RedisTable(_Section):
    redis_url: Annotated[str, Field(alias="url"), Env("REDIS_URL")]


@pydantic_dataclass(frozen=True, kw_only=True)
class SchemaRegistryTable(_Section):
    schema_registry_url: Annotated[str, Field(alias="url"), Env("SCHEMA_REGISTRY_URL")]


@pydantic_dataclass(frozen=True, kw_only=True)
class MessagesTable(_Section):
    max_payload_bytes: Positive
    # Only versions the decoder and the encoder know: an answer is written in the request's.
    # Not strict: a TOML array is a list, Config holds a tuple.
    supported_versions: Annotated[tuple[Version, ...], Field(min_length=1, strict=False)]
    authenticated_header: str
    require_authenticated_header: Annotated[bool, Env("VPROV_REQUIRE_AUTH_HEADER")]


@pydantic_dataclass(frozen=True, kw_only=True)
class FlowTable(_Section):
    rehome_timeout_seconds: Annotated[PositiveSeconds, Env("VPROV_REHOME_TIMEOUT_SECONDS")]
    delete_global_identity: Annotated[bool, Env("VPROV_DELETE_GLOBAL_IDENTITY")]
    max_held_requests: Positive
    join_wait_seconds: Annotated[PositiveSeconds, Env("VPROV_JOIN_WAIT_SECONDS")]
    identity_backoff_max_seconds: PositiveSeconds
    # refuse, reprovision, answer (docs/after-first-boot.md)
    factory_reset: Annotated[Literal["refuse", "reprovision", "answer"],
                             Env("VPROV_FACTORY_RESET")] = "refuse"
    move_timeout_seconds: Annotated[PositiveSeconds, Env("VPROV_MOVE_TIMEOUT_SECONDS")] = 60.0
    # inputs an agent carries out at once, each key's in order (streams/in_flight.py)
    inputs_in_flight: Annotated[Positive, Env("VPROV_INPUTS_IN_FLIGHT")] = 16


@pydantic_dataclass(frozen=True, kw_only=True)
class HomingTable(_Section):
    homing_by_country: Annotated[bool, Field(alias="by_country"), Env("VPROV_HOMING_BY_COUNTRY")]


class EdgeTable(_Table):
    """The device edge (docs/architecture.md, "The device edge"): which IoT core holds the
    device identities the flows create and delete, and how the workers, the bridges and the
    simulated devices reach its brokers. The regions' brokers are their ``gateway_endpoint``."""

    identity: Annotated[Literal["redis", "mosquitto"], Env("VPROV_IDENTITY")] = "redis"
    global_endpoint: Annotated[str, AfterValidator(_not_blank),
                               Env("VPROV_EDGE_GLOBAL_ENDPOINT")] = \
        "mqtts://global.iot.vprov.example:8883"
    # PEM of the CA(s) that signed the brokers' certificates; empty: the system's
    ca_location: Annotated[str, Env("VPROV_EDGE_CA_LOCATION")] = ""
    # the identity registry's user (the control API)
    admin_username: Annotated[str, Env("VPROV_EDGE_ADMIN_USERNAME")] = "vprov-identity"
    admin_password: Annotated[str, Env("VPROV_EDGE_ADMIN_PASSWORD")] = ""
    # the edge bridges' user
    bridge_username: Annotated[str, Env("VPROV_EDGE_BRIDGE_USERNAME")] = "vprov-edge"
    bridge_password: Annotated[str, Env("VPROV_EDGE_BRIDGE_PASSWORD")] = ""
    # derives each device's MQTT password (vprov/edge/mqtt.py)
    credential_secret: Annotated[str, Env("VPROV_EDGE_CREDENTIAL_SECRET")] = ""

    @model_validator(mode="after")
    def _complete(self) -> EdgeTable:
        if self.identity == "mosquitto" and not (self.admin_password and self.credential_secret):
            raise ValueError("edge.identity='mosquitto': expected edge.admin_password and "
                             "edge.credential_secret as well")
        if self.ca_location and not Path(self.ca_location).is_file():
            raise ValueError(f"edge.ca_location={self.ca_location!r}: no such file")
        return self


class RocksdbTable(_Table):
    """The RocksDB store of each table partition (Faust opens one per partition, active or
    standby, so a worker holds many): memory is these figures times the partitions it holds
    (docs/operations.md, "Memory"). Faust's own defaults (64 MB buffers, 2 GB cache) are sized
    for one big store, not dozens."""

    # a memtable; a full one is flushed to disk while the next fills
    write_buffer_mb: Annotated[Positive, Env("VPROV_ROCKSDB_WRITE_BUFFER_MB")] = 2
    max_write_buffer_number: Annotated[int, Field(ge=2, le=16)] = 2
    # the LRU cache of uncompressed blocks read from disk
    block_cache_mb: Annotated[Positive, Env("VPROV_ROCKSDB_BLOCK_CACHE_MB")] = 4
    # memtables flushed to level 0 before they are compacted into the store's sorted data. Vehicle
    # keys fall all over the key range, so each such compaction rewrites the whole partition: at
    # a million vehicles, about 42 MB for every 8 MB of new entries with RocksDB's default of 4
    # (docs/operations.md, "Memory")
    level0_compaction_trigger: Annotated[int, Field(ge=2, le=64),
                                         Env("VPROV_ROCKSDB_L0_COMPACTION_TRIGGER")] = 16


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
    rocksdb: RocksdbTable = RocksdbTable()

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


def _fields(table: type) -> dict[str, FieldInfo]:
    """The keys of a table, a model or a section, by attribute name (empty for other types)."""
    fields: dict[str, FieldInfo] = getattr(table, "__pydantic_fields__", {})
    return fields


_ENV_TYPES: dict[Any, type] = {int: int, float: float, bool: bool}  # else a string


def _env_overrides(table: type, section: str = "") -> dict[str, tuple[str, str, type]]:
    """Each ``Env`` of the keys of ``table`` and of the tables within it, by variable."""
    found: dict[str, tuple[str, str, type]] = {}
    for name, info in _fields(table).items():
        key = info.alias or name
        found |= {env.name: (section, key, _ENV_TYPES.get(info.annotation, str))
                  for env in info.metadata if isinstance(env, Env)}
        if isinstance(info.annotation, type):
            found |= _env_overrides(info.annotation, f"{section}.{key}" if section else key)
    return found


# environment variable -> (section, key, type)
ENV_OVERRIDES: dict[str, tuple[str, str, type]] = _env_overrides(Document)


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


@dataclass(frozen=True, kw_only=True)
class Config(KafkaTable, RedisTable, SchemaRegistryTable, MessagesTable, FlowTable, HomingTable):
    """The configuration: every key of the sections (its bases), and the other tables whole."""

    ecu_states: dict[str, str]
    regions: dict[str, Region]
    topics: Topics
    edge: EdgeTable = EdgeTable()
    rocksdb: RocksdbTable = RocksdbTable()
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
    sections = [table for _, table in doc if isinstance(table, _Section)]
    keys = {name: getattr(table, name) for table in sections for name in _fields(type(table))}
    return Config(
        **keys,
        ecu_states=dict(doc.ecu_types),
        regions={code: Region(code, r.gateway_endpoint, tuple(r.countries),
                              _region_cluster(code, r.kafka, doc.kafka.kafka_security))
                 for code, r in doc.regions.items()},
        topics=doc.topics,
        edge=doc.edge,
        rocksdb=doc.rocksdb,
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
    "dataclass_type": "expected a table",
    "tuple_type": "expected a list",
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
