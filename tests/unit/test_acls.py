"""ACLs per role come from the topic catalogue; client settings come from [kafka.security]."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from vprov import config
from vprov.config import KafkaSecurity
from vprov.kafka import acls
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.settings import KafkaConnection, faust_settings, librdkafka

CONFIG = config.load(env={})
CAT = Catalogue(CONFIG)


def topics_of(principal: str, operation: str | None = None) -> set[str]:
    return {b.name for b in acls.bindings(acls.roles(CONFIG))
            if b.principal == principal and b.resource == "TOPIC"
            and (operation is None or b.operation == operation)}


def test_every_topic_of_the_catalogue_has_a_writer() -> None:
    found = acls.roles(CONFIG)
    for spec in CAT.all():
        assert any(spec.name in r.writes or r.owns(spec.name) for r in found), spec.name


def test_a_worker_reads_every_topic_its_agents_consume() -> None:
    glob = acls.role(CONFIG, "global")
    assert {CAT.query, CAT.registrations, CAT.rehome_result, CAT.system_registrations,
            CAT.query_by_system, CAT.vehicle_commands} <= {
                s.name for s in glob.topics(CAT)}
    assert all(glob.owns(name) for name in CAT.ingress_routes().values())
    na = acls.role(CONFIG, "regional-NA")
    assert {CAT.rehome("NA"), CAT.device("NA")} <= set(na.reads)
    assert all(na.owns(name) for name in CAT.ingress_routes("NA").values())
    assert na.owns(CAT.regional_commands("NA"))


def test_a_region_uses_its_own_topics_and_no_other_regions() -> None:
    na = topics_of("User:vprov-regional-NA")
    assert {CAT.device("NA"), CAT.rehome("NA"), CAT.device_response("NA"),
            CAT.onboarding("NA"), CAT.lifecycle} <= na
    assert not any("EU" in name or "AP" in name for name in na)
    assert CAT.query not in na and CAT.registrations not in na
    prefixes = {b.name for b in acls.bindings([acls.role(CONFIG, "regional-NA")])
                if b.pattern == "PREFIXED"}
    assert prefixes == {"vprov-regional-NA.", "vprov-regional-NA-"}


def test_a_subscriber_only_reads_the_lifecycle() -> None:
    bindings = acls.bindings([acls.role(CONFIG, "subscriber")])
    assert {(b.name, b.operation) for b in bindings if b.resource == "TOPIC"} == {
        (CAT.lifecycle, "READ")}


def test_a_new_region_gets_its_principal_and_acls(tmp_path: Path) -> None:
    text = config.DEFAULTS_PATH.read_text(encoding="utf-8") + (
        '\n[regions.SA]\ngateway_endpoint = "mqtts://sa.example:8883"\ncountries = ["BR"]\n')
    path = tmp_path / "vprov.toml"
    path.write_text(text)
    with_sa = config.load(path, env={})
    sa = acls.role(with_sa, "regional-SA")
    assert sa.username == "vprov-regional-SA"
    cat = Catalogue(with_sa)
    assert {cat.device("SA"), cat.rehome("SA")} <= set(sa.reads)
    assert cat.rehome("SA") in acls.role(with_sa, "global").writes
    assert cat.device("SA") in acls.role(with_sa, "gateway").writes


def test_unknown_role_names_the_roles() -> None:
    with pytest.raises(ValueError, match="'mars'.*global, regional-NA"):
        acls.role(CONFIG, "mars")


def test_plaintext_settings_name_only_the_brokers() -> None:
    assert librdkafka(KafkaConnection("b:1")) == {"bootstrap.servers": "b:1",
                                                  "security.protocol": "PLAINTEXT"}
    assert faust_settings(KafkaConnection("a:1, b:2")) == {"broker": ["kafka://a:1",
                                                                      "kafka://b:2"]}


def test_sasl_ssl_settings_for_both_libraries() -> None:
    ca = str(Path(ssl.get_default_verify_paths().cafile or __file__))
    sec = KafkaSecurity(protocol="SASL_SSL", sasl_username="u", sasl_password="p",
                        ssl_ca_location=ca if Path(ca).is_file() else "")
    assert librdkafka(KafkaConnection("b:1", sec)) == {
        "bootstrap.servers": "b:1", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p",
        **({"ssl.ca.location": ca} if sec.ssl_ca_location else {})}
    credentials = faust_settings(KafkaConnection("b:1", sec))["broker_credentials"]
    # Faust's defaults would be PLAIN over SASL_PLAINTEXT
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context.check_hostname


def test_the_environment_secures_a_bare_bootstrap_address(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p")
    settings = librdkafka("b:1")
    assert settings["security.protocol"] == "SASL_PLAINTEXT"
    assert settings["sasl.mechanism"] == "PLAIN"
    assert "ssl.ca.location" not in settings


def test_sasl_without_credentials_is_a_configuration_error() -> None:
    with pytest.raises(config.ConfigError) as error:
        config.load(env={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                         "KAFKA_SASL_PASSWORD": "s3cret"})
    assert str(error.value) == (
        "kafka.security.protocol='SASL_SSL': expected kafka.security.sasl_username and "
        "sasl_password as well (from KAFKA_SASL_PASSWORD, KAFKA_SECURITY_PROTOCOL)")
    assert "s3cret" not in str(error.value)
