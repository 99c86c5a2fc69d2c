"""Regions on clusters of their own: the configuration, where the catalogue puts each topic, and
the MirrorMaker 2 configuration generated from it."""

from __future__ import annotations

from typing import Any

import pytest

from vprov import config
from vprov.config import ConfigError
from vprov.kafka import mirror
from vprov.kafka.catalogue import Catalogue, MirrorFlow

NA, EU = "127.0.0.1:9192", "127.0.0.1:9292"


def clustered(**regions: dict[str, Any]) -> config.Config:
    doc = config.defaults_document()
    for code, kafka in (regions or {"NA": {"bootstrap_servers": NA},
                                    "EU": {"bootstrap_servers": EU}}).items():
        doc["regions"][code]["kafka"] = kafka
    return config.from_document(doc)


def test_single_cluster_is_the_default_and_places_every_topic_on_it() -> None:
    cfg = config.load(env={})
    cat = Catalogue(cfg)
    assert not cfg.multi_cluster
    assert [c.name for c in cfg.clusters] == ["global"]
    assert cfg.cluster("NA") == cfg.global_cluster
    assert [s.name for s in cat.placement()["global"]] == [s.name for s in cat.all()]
    assert cat.mirror_flows() == []
    with pytest.raises(mirror.MirrorConfigError, match="nothing to mirror"):
        mirror.properties(cfg)


def test_a_region_names_its_cluster_and_inherits_the_global_security() -> None:
    cfg = clustered()
    assert cfg.multi_cluster
    assert [(c.name, c.bootstrap_servers) for c in cfg.clusters] == [
        ("global", "127.0.0.1:9092"), ("NA", NA), ("EU", EU)]
    assert cfg.cluster("AP") == cfg.global_cluster  # no table: AP shares the global cluster
    assert cfg.cluster("NA").kafka_security == cfg.kafka_security


def test_a_regions_own_security_settings() -> None:
    cfg = clustered(NA={"bootstrap_servers": NA,
                        "security": {"protocol": "SASL_PLAINTEXT", "sasl_username": "na",
                                     "sasl_password": "secret"}})
    assert cfg.cluster("NA").kafka_security.protocol == "SASL_PLAINTEXT"
    assert cfg.global_cluster.kafka_security.protocol == "PLAINTEXT"


def test_a_region_cluster_from_the_environment() -> None:
    cfg = config.load(env={"KAFKA_BOOTSTRAP_SERVERS_NA": NA, "KAFKA_BOOTSTRAP_SERVERS_XX": EU})
    assert cfg.cluster("NA").bootstrap_servers == NA
    assert "XX" not in cfg.regions  # a variable does not create a region


def test_a_blank_region_address_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"regions\.NA\.kafka\.bootstrap_servers"):
        clustered(NA={"bootstrap_servers": " "})


def test_a_worker_sees_only_its_own_cluster() -> None:
    cfg = clustered()
    na = cfg.seen_from("NA")
    assert na.bootstrap_servers == NA
    assert [c.name for c in na.clusters] == ["global"] and not na.multi_cluster
    assert cfg.seen_from(None).bootstrap_servers == cfg.bootstrap_servers


def test_regional_data_is_placed_only_on_the_regions_cluster() -> None:
    cfg = clustered()
    cat = Catalogue(cfg)
    placed = {name: {s.name for s in specs} for name, specs in cat.placement().items()}
    for region in ("NA", "EU"):
        stays = {cat.device(region), cat.device_response(region), cat.onboarding(region),
                 cat.regional_commands(region)}
        assert stays <= placed[region]
        assert not stays & placed["global"]
        assert cat.home(cat.device(region)) == cfg.cluster(region)
    assert cat.device("AP") in placed["global"]  # AP has no cluster of its own
    assert cat.rehome("NA") in placed["NA"] and cat.rehome("NA") not in placed["EU"]
    assert cat.home(cat.lifecycle) == cfg.global_cluster  # where every region's events end


def test_mirrored_topics_have_the_same_partitions_on_both_sides() -> None:
    cat = Catalogue(clustered())
    placed = {name: {s.name: s for s in specs} for name, specs in cat.placement().items()}
    for flow in cat.mirror_flows():
        for topic in flow.topics:
            assert placed[flow.source][topic] == placed[flow.target][topic]


def test_what_crosses_the_link() -> None:
    cat = Catalogue(clustered())
    assert cat.mirror_flows() == [
        MirrorFlow("global", "NA", (cat.rehome("NA"),)),
        MirrorFlow("NA", "global", (cat.rehome_result, cat.lifecycle)),
        MirrorFlow("global", "EU", (cat.rehome("EU"),)),
        MirrorFlow("EU", "global", (cat.rehome_result, cat.lifecycle)),
    ]


def test_mirror_properties_follow_the_catalogue() -> None:
    doc = config.isolate(config.defaults_document(), "demo")
    doc["regions"]["NA"]["kafka"] = {"bootstrap_servers": NA}
    cfg = config.from_document(doc)
    text = mirror.properties(cfg)
    props = dict(line.split(" = ", 1) for line in text.splitlines()
                 if " = " in line and not line.startswith("#"))
    assert props["clusters"] == "global, NA"
    assert props["NA.bootstrap.servers"] == NA
    assert props["replication.policy.class"] == mirror.IDENTITY_POLICY
    assert props["global->NA.topics"] == r"demo\\.provisioning\\.rehome\\.NA"
    assert props["NA->global.topics"] == \
        r"demo\\.provisioning\\.rehome\\.result,demo\\.vehicle\\.lifecycle"
    assert "EU->global.enabled" not in props and "global->EU.enabled" not in props
    assert props["emit.heartbeats.enabled"] == "false"
    assert props["emit.offset-syncs.enabled"] == "false"
    assert not [k for k in props if "offset-syncs.topic" in k]  # one would stop the mirroring
    assert int(props["refresh.topics.interval.seconds"]) <= 10
    assert not [v for k, v in props.items() if k.endswith(".topics") and "*" in v]


def test_a_topic_listed_both_ways_is_refused() -> None:
    with pytest.raises(mirror.MirrorConfigError, match="both ways"):
        mirror.check_flows([MirrorFlow("global", "NA", ("t",)), MirrorFlow("NA", "global", ("t",))])


def test_mirror_security_settings_for_the_java_clients() -> None:
    cfg = clustered(NA={"bootstrap_servers": NA,
                        "security": {"protocol": "SASL_PLAINTEXT", "sasl_username": "na",
                                     "sasl_mechanism": "SCRAM-SHA-512",
                                     "sasl_password": 'p"w'}})
    text = mirror.properties(cfg)
    assert "NA.security.protocol = SASL_PLAINTEXT" in text
    assert "NA.sasl.mechanism = SCRAM-SHA-512" in text
    assert ('NA.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule '
            'required username="na" password="p\\\\"w";') in text


def test_acls_per_cluster_give_a_worker_rights_on_its_own_cluster_only() -> None:
    from vprov.kafka import acls

    cfg = clustered()
    cat = Catalogue(cfg)
    roles = acls.roles(cfg)
    na = acls.on_cluster(cfg, roles, "NA")
    glob = acls.on_cluster(cfg, roles, "global")
    assert {b.principal for b in na} == {"User:vprov-regional-NA", "User:vprov-gateway"}
    assert "User:vprov-regional-NA" not in {b.principal for b in glob}
    assert "User:vprov-regional-AP" in {b.principal for b in glob}  # AP shares the global one
    assert {b.name for b in na if b.principal == "User:vprov-gateway"
            and b.resource == "TOPIC"} == {cat.device("NA"), cat.device_response("NA")}
