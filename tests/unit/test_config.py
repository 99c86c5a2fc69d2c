"""Configuration: packaged defaults, environment overrides, and bad files naming the bad key."""

from __future__ import annotations

import copy
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vprov import config
from vprov.config import ConfigError

DEFAULT_DOC = tomllib.loads(config.DEFAULTS_PATH.read_text(encoding="utf-8"))


def doc(edit: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """The packaged defaults as a document, with ``edit`` applied."""
    changed = copy.deepcopy(DEFAULT_DOC)
    if edit is not None:
        edit(changed)
    return changed


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ----------------------------------------------------------------------------------


def test_defaults_load_with_three_regions() -> None:
    cfg = config.load(env={})
    assert set(cfg.regions) == {"NA", "EU", "AP"}
    for code, region in cfg.regions.items():
        assert region.code == code
        assert region.gateway_endpoint.startswith("mqtts://")
    assert cfg.region("EU").gateway_endpoint == "mqtts://eu.iot.vprov.example:8883"


def test_defaults_map_ecu_types_to_lifecycle_states() -> None:
    cfg = config.load(env={})
    assert cfg.ecu_states == {"TCU": "PROVISIONED", "IVI": "PROVISIONED",
                              "ADAS": "PROVISIONED", "REFRIGERATOR": "ACTIVE"}


def test_defaults_of_the_flow_and_messages() -> None:
    cfg = config.load(env={})
    assert cfg.max_payload_bytes == 64 * 1024
    assert cfg.supported_versions == ("v1", "v2")
    assert cfg.authenticated_header == "authenticated-device-id"
    assert cfg.require_authenticated_header is False
    assert cfg.delete_global_identity is True
    assert cfg.homing_by_country is False
    assert cfg.rehome_timeout_seconds == 30.0
    assert cfg.topics.rehome == "provisioning.rehome.{region}"
    assert cfg.topics.query == "provisioning.query"


def test_defaults_of_the_kafka_clients_a_short_fetch_wait_and_a_five_ms_linger() -> None:
    # a broker answers a connection's requests in turn, so every offset and metadata request a
    # worker makes waits behind its idle fetch: 200 ms, not Faust's 1500, in a failover
    cfg = config.load(env={})
    assert (cfg.fetch_min_bytes, cfg.fetch_max_wait_ms, cfg.producer_linger_ms) == (1, 200, 5)


def test_defaults_of_the_consumer_groups() -> None:
    cfg = config.load(env={})
    assert (cfg.table_standby_replicas, cfg.session_timeout_ms, cfg.heartbeat_interval_ms,
            cfg.static_membership) == (1, 1500, 250, False)


def test_a_heartbeat_longer_than_half_the_session_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="kafka.heartbeat_interval_ms=2000"):
        config.load(env={"VPROV_SESSION_TIMEOUT_MS": "3000", "VPROV_HEARTBEAT_INTERVAL_MS": "2000"})


def test_replication_defaults_to_one_copy_and_three_brokers_set_it_from_the_environment(
) -> None:
    assert (config.load(env={}).replication_factor, config.load(env={}).min_insync_replicas) \
        == (1, 1)
    cfg = config.load(env={"VPROV_REPLICATION_FACTOR": "3", "VPROV_MIN_INSYNC_REPLICAS": "2"})
    assert (cfg.replication_factor, cfg.min_insync_replicas) == (3, 2)


def test_more_insync_replicas_than_replicas_is_refused_naming_where_they_came_from() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(env={"VPROV_MIN_INSYNC_REPLICAS": "2"})
    assert str(info.value) == (
        "kafka.min_insync_replicas=2: expected at most kafka.replication_factor (1), or no "
        "write is ever acknowledged (from VPROV_MIN_INSYNC_REPLICAS)")


def test_defaults_equal_the_document_they_come_from() -> None:
    assert config.load(env={}) == config.from_document(doc())


def test_region_for_country() -> None:
    cfg = config.load(env={})
    assert cfg.region_for_country("DE") == "EU"
    assert cfg.region_for_country("JP") == "AP"
    assert cfg.region_for_country("BR") is None


def test_unknown_region_names_the_configured_ones() -> None:
    with pytest.raises(ConfigError, match="'MARS'.*AP, EU, NA"):
        config.load(env={}).region("MARS")


# --- environment overrides ---------------------------------------------------------------------


ENV_OK: list[Any] = [
    pytest.param({"KAFKA_BOOTSTRAP_SERVERS": "broker:29092"}, "bootstrap_servers",
                 "broker:29092", id="KAFKA_BOOTSTRAP_SERVERS"),
    pytest.param({"VPROV_REHOME_TIMEOUT_SECONDS": "2.5"}, "rehome_timeout_seconds", 2.5,
                 id="VPROV_REHOME_TIMEOUT_SECONDS"),
    pytest.param({"VPROV_PARTITIONS": "3"}, "partitions", 3, id="VPROV_PARTITIONS"),
    pytest.param({"REDIS_URL": "redis://r:6379/1"}, "redis_url", "redis://r:6379/1",
                 id="REDIS_URL"),
    pytest.param({"VPROV_DELETE_GLOBAL_IDENTITY": "off"}, "delete_global_identity", False,
                 id="VPROV_DELETE_GLOBAL_IDENTITY=off"),
    pytest.param({"VPROV_REQUIRE_AUTH_HEADER": "TRUE"}, "require_authenticated_header", True,
                 id="VPROV_REQUIRE_AUTH_HEADER=TRUE"),
    pytest.param({"VPROV_HOMING_BY_COUNTRY": "1"}, "homing_by_country", True,
                 id="VPROV_HOMING_BY_COUNTRY=1"),
    pytest.param({"KAFKA_BOOTSTRAP_SERVERS": ""}, "bootstrap_servers", "127.0.0.1:9092",
                 id="an empty variable is ignored"),
]


@pytest.mark.parametrize(("env", "attribute", "expected"), ENV_OK)
def test_environment_overrides_one_key(env: dict[str, str], attribute: str,
                                       expected: Any) -> None:
    assert getattr(config.load(env=env), attribute) == expected


ENV_BAD: list[Any] = [
    pytest.param({"VPROV_DELETE_GLOBAL_IDENTITY": "maybe"}, "VPROV_DELETE_GLOBAL_IDENTITY",
                 id="bad bool"),
    pytest.param({"VPROV_REHOME_TIMEOUT_SECONDS": "soon"}, "VPROV_REHOME_TIMEOUT_SECONDS",
                 id="not a number"),
    pytest.param({"VPROV_REHOME_TIMEOUT_SECONDS": "0"}, "flow.rehome_timeout_seconds",
                 id="not positive"),
    pytest.param({"VPROV_PARTITIONS": "eight"}, "VPROV_PARTITIONS", id="not an integer"),
    pytest.param({"VPROV_PARTITIONS": "-1"}, "kafka.partitions", id="negative partitions"),
]


@pytest.mark.parametrize(("env", "named"), ENV_BAD)
def test_bad_environment_value_names_the_variable_or_key(env: dict[str, str], named: str
                                                         ) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        config.load(env=env)


def test_vprov_config_names_the_file_to_load(tmp_path: Path) -> None:
    text = config.DEFAULTS_PATH.read_text(encoding="utf-8").replace(
        'bootstrap_servers = "127.0.0.1:9092"', 'bootstrap_servers = "from-file:9092"')
    path = write_toml(tmp_path / "vprov.toml", text)
    cfg = config.load(env={"VPROV_CONFIG": str(path)})
    assert cfg.bootstrap_servers == "from-file:9092"
    assert cfg.source_path == str(path)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "vprov.toml", config.DEFAULTS_PATH.read_text(encoding="utf-8"))
    cfg = config.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": "env:9092"})
    assert cfg.bootstrap_servers == "env:9092"


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(missing, env={})


def test_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "bad.toml", "[kafka\nbootstrap_servers = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path, env={})


# --- bad documents name the bad key ------------------------------------------------------------


def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d[section][key] = value
    return edit


def _drop(section: str, key: str | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        if key is None:
            del d[section]
        else:
            del d[section][key]
    return edit


def _region(code: str, body: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["regions"][code] = body
    return edit


BAD_DOCS: list[Any] = [
    pytest.param(_set("ecu_types", "TCU", "ONLINE"), "ecu_types.TCU",
                 id="unknown lifecycle target for an ECU type"),
    pytest.param(_set("ecu_types", "IVI", "REGIONAL"), "ecu_types.IVI",
                 id="a non-final state as an ECU type's target"),
    pytest.param(lambda d: d.update(ecu_types={}), "ecu_types", id="no ECU types"),
    pytest.param(_region("NA", {"countries": ["US"]}), "regions.NA.gateway_endpoint",
                 id="region without endpoint"),
    pytest.param(_region("NA", "mqtts://na"), "regions.NA", id="region that is not a table"),
    pytest.param(_region("NA", {"gateway_endpoint": "", "countries": []}),
                 "regions.NA.gateway_endpoint", id="region with a blank endpoint"),
    pytest.param(_region("EU", {"gateway_endpoint": "mqtts://eu", "countries": ["DE", "US"]}),
                 "US", id="country listed in two regions"),
    pytest.param(_region("EU", {"gateway_endpoint": "mqtts://eu", "countries": ["DEU"]}),
                 "regions.EU.countries", id="country not alpha-2"),
    pytest.param(_region("eu", {"gateway_endpoint": "mqtts://eu"}), "regions.eu",
                 id="lower-case region code"),
    pytest.param(lambda d: d.update(regions={}), "regions", id="no regions"),
    pytest.param(_set("topics", "rehome", "provisioning.rehome"), "topics.rehome",
                 id="rehome topic template without {region}"),
    pytest.param(_set("topics", "onboarding", "chipset.onboarding"), "topics.onboarding",
                 id="onboarding topic template without {region}"),
    pytest.param(_drop("topics", "lifecycle"), "topics.lifecycle", id="topic missing"),
    pytest.param(_drop("flow"), "[flow]", id="missing [flow] section"),
    pytest.param(_drop("kafka"), "[kafka]", id="missing [kafka] section"),
    pytest.param(_drop("messages", "max_payload_bytes"), "messages.max_payload_bytes",
                 id="missing key"),
    pytest.param(_set("kafka", "partitions", "8"), "kafka.partitions", id="string for a number"),
    pytest.param(_set("kafka", "partitions", True), "kafka.partitions", id="bool for a number"),
    pytest.param(_set("kafka", "partitions", 0), "kafka.partitions", id="zero partitions"),
    pytest.param(_set("kafka", "fetch_min_bytes", 0), "kafka.fetch_min_bytes",
                 id="a fetch that asks for no bytes"),
    pytest.param(_set("kafka", "fetch_max_wait_ms", -1), "kafka.fetch_max_wait_ms",
                 id="negative fetch wait"),
    pytest.param(_set("kafka", "fetch_max_wait_ms", 1.5), "kafka.fetch_max_wait_ms",
                 id="fetch wait in fractions of a millisecond"),
    pytest.param(_set("kafka", "producer_linger_ms", 1001), "kafka.producer_linger_ms",
                 id="linger over a second"),
    pytest.param(_drop("kafka", "producer_linger_ms"), "kafka.producer_linger_ms",
                 id="missing linger"),
    pytest.param(_set("kafka", "producer_client", "kafka-python"), "kafka.producer_client",
                 id="a producer the workers do not have"),
    pytest.param(_set("flow", "delete_global_identity", "yes"), "flow.delete_global_identity",
                 id="string for a bool"),
    pytest.param(_set("flow", "max_held_requests", 0), "flow.max_held_requests",
                 id="no room for held requests"),
    pytest.param(_set("homing", "by_country", 1), "homing.by_country", id="int for a bool"),
    pytest.param(_set("messages", "supported_versions", ["v1", "v3"]),
                 "messages.supported_versions", id="an envelope version nobody can read"),
    pytest.param(_set("messages", "supported_versions", []), "messages.supported_versions",
                 id="no envelope version at all"),
]


@pytest.mark.parametrize(("edit", "named"), BAD_DOCS)
def test_bad_document_names_the_bad_key(edit: Callable[[dict[str, Any]], Any], named: str
                                        ) -> None:
    with pytest.raises(ConfigError) as error:
        config.from_document(doc(edit))
    assert named in str(error.value)


def test_v2_can_be_switched_off() -> None:
    cfg = config.from_document(doc(_set("messages", "supported_versions", ["v1"])))
    assert cfg.supported_versions == ("v1",)


def test_country_in_two_regions_names_both() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["regions"]["EU"]["countries"].append("US")
    with pytest.raises(ConfigError) as error:
        config.from_document(doc(edit))
    assert "regions.NA" in str(error.value) and "regions.EU" in str(error.value)


def test_bad_file_names_the_bad_key_through_load(tmp_path: Path) -> None:
    text = config.DEFAULTS_PATH.read_text(encoding="utf-8").replace(
        'REFRIGERATOR = "ACTIVE"', 'REFRIGERATOR = "COLD"')
    path = write_toml(tmp_path / "vprov.toml", text)
    with pytest.raises(ConfigError, match=r"ecu_types\.REFRIGERATOR"):
        config.load(path, env={})


def test_error_says_where_the_value_came_from(tmp_path: Path) -> None:
    text = config.DEFAULTS_PATH.read_text(encoding="utf-8").replace(
        "partitions = 8", "partitions = 0")
    path = write_toml(tmp_path / "vprov.toml", text)
    with pytest.raises(ConfigError) as from_file:
        config.load(path, env={})
    assert str(from_file.value) == (
        f"kafka.partitions=0: expected a number greater than 0 (in {path})")
    with pytest.raises(ConfigError) as from_env:
        config.load(env={"VPROV_PARTITIONS": "0"})
    assert str(from_env.value) == (
        "kafka.partitions=0: expected a number greater than 0 (from VPROV_PARTITIONS)")


def test_unparsable_environment_value_names_variable_and_key() -> None:
    with pytest.raises(ConfigError) as error:
        config.load(env={"VPROV_PARTITIONS": "eight"})
    assert str(error.value) == (
        "VPROV_PARTITIONS='eight': expected an integer (for kafka.partitions)")


def test_file_without_regions_through_load(tmp_path: Path) -> None:
    text = config.DEFAULTS_PATH.read_text(encoding="utf-8").split("[regions.NA]")[0]
    path = write_toml(tmp_path / "vprov.toml", text)
    with pytest.raises(ConfigError, match=r"\[regions\]"):
        config.load(path, env={})


def test_extra_region_comes_with_its_topics(tmp_path: Path) -> None:
    text = config.DEFAULTS_PATH.read_text(encoding="utf-8") + (
        '\n[regions.SA]\ngateway_endpoint = "mqtts://sa.example:8883"\ncountries = ["BR"]\n')
    cfg = config.load(write_toml(tmp_path / "vprov.toml", text), env={})
    assert set(cfg.regions) == {"NA", "EU", "AP", "SA"}
    assert cfg.region_for_country("BR") == "SA"


def test_an_isolated_document_written_as_toml_loads_back() -> None:
    doc = config.isolate(config.defaults_document(), "t1")
    path = Path(tempfile.mkdtemp()) / "isolated.toml"
    path.write_text(config.dumps(doc))
    loaded = config.load(path, env={})
    assert loaded.app_prefix == "t1"
    assert loaded.topics.query == "t1.provisioning.query"
    assert loaded.topics.rehome == "t1.provisioning.rehome.{region}"
    assert loaded.regions == config.load(env={}).regions
