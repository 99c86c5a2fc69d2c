"""The start-up check on the real broker: a worker refuses to start when existing topics have
another partition count or cleanup policy than the catalogue, and says how to fix them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.conftest import PORT_BASE
from tests.integration.harness import BOOTSTRAP, REDIS_URL, REPO, isolated_config
from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import admin_client
from vprov.kafka.topic_admin import BrokerUnavailable, check_topics, ensure_topics

WEB_PORT = PORT_BASE + 130  # the worker never gets as far as listening; unique all the same
WRONG_PARTITIONS = 3


def deployment(tmp_path: Path, name: str) -> tuple[Path, Config]:
    path = isolated_config(tmp_path / f"{name}.toml", f"c{uuid.uuid4().hex[:6]}")
    return path, config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP})


@pytest.fixture
def admin() -> Iterator[AdminClient]:
    """An admin client; every topic of the deployments registered in ``created`` is deleted at
    the end."""
    client = admin_client(BOOTSTRAP)
    try:
        client.list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(f"cannot reach Kafka at {BOOTSTRAP} ({exc}); start it with `make up`",
                    pytrace=False)
    yield client


@pytest.fixture
def cleanup(admin: AdminClient) -> Iterator[list[Config]]:
    configs: list[Config] = []
    yield configs
    existing = set(admin.list_topics(timeout=10).topics)
    names = [s.name for c in configs for s in Catalogue(c).all() if s.name in existing]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()


def create(admin: AdminClient, *topics: NewTopic) -> None:
    for future in admin.create_topics(list(topics), operation_timeout=30).values():
        future.result()


def test_worker_refuses_to_start_and_names_each_mismatch(
    tmp_path: Path, admin: AdminClient, cleanup: list[Config]
) -> None:
    path, config = deployment(tmp_path, "mismatched")
    cleanup.append(config)
    cat = Catalogue(config)
    expected = config.partitions
    assert expected != WRONG_PARTITIONS
    vehicles_changelog = f"{cat.global_app_id}-vehicles-changelog"
    # replicated as configured (on a three-broker stack too): only the layout is wrong
    replicated = {"replication_factor": config.replication_factor}
    compacted = {"cleanup.policy": "compact",
                 "min.insync.replicas": str(config.min_insync_replicas)}
    create(admin,
           # state topic with too few partitions: only re-creation fixes it
           NewTopic(vehicles_changelog, num_partitions=WRONG_PARTITIONS, **replicated,
                    config=compacted),
           # non-compacted input topic, compacted
           NewTopic(cat.query, num_partitions=expected, **replicated, config=compacted))

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "REDIS_URL": REDIS_URL}
    result = subprocess.run(
        [sys.executable, "-m", "vprov.cli", "--config", str(path), "worker", "--role", "global",
         "--web-port", str(WEB_PORT), "--data-dir", str(tmp_path / "data")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90)

    err = result.stderr
    assert result.returncode == 4, f"exit {result.returncode}\n{err}\n{result.stdout}"
    assert "Traceback" not in err
    assert err.startswith("error: 2 topics of this deployment do not match")
    assert (f"{vehicles_changelog}: found {WRONG_PARTITIONS} partitions, "
            f"expected {expected} partitions") in err
    assert f"{cat.query}: found cleanup.policy=compact, expected cleanup.policy=delete" in err
    for topic in (vehicles_changelog, cat.query):
        assert (f"`kafka-topics.sh --bootstrap-server {BOOTSTRAP} --delete --topic {topic}` "
                "and re-create it with `vprov topics create`") in err
    assert "--alter" not in err  # neither is fixed by altering it
    assert not (tmp_path / "data").exists()  # refused before Faust made its state directory
    # Nothing was created: the deployment's topics are still the two made here.
    existing = set(admin.list_topics(timeout=10).topics)
    assert {s.name for s in cat.all()} & existing == {vehicles_changelog, cat.query}

    # `vprov topics create` reports the same and exits non-zero too.
    topics = subprocess.run(
        [sys.executable, "-m", "vprov.cli", "--config", str(path), "topics", "create"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert topics.returncode == 4
    assert "Traceback" not in topics.stderr
    assert vehicles_changelog in topics.stderr and cat.query in topics.stderr


def test_a_correct_deployment_passes_the_check(
    tmp_path: Path, admin: AdminClient, cleanup: list[Config]
) -> None:
    _, config = deployment(tmp_path, "correct")
    cleanup.append(config)
    specs = Catalogue(config).all()
    try:
        created = ensure_topics(BOOTSTRAP, specs)
    except BrokerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    assert sorted(created) == sorted(s.name for s in specs)
    assert check_topics(BOOTSTRAP, specs) == []
    assert ensure_topics(BOOTSTRAP, specs) == []  # existing and matching: no error
