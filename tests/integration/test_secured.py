"""Secured connections on a real SASL_SSL broker with ACLs and a TLS Redis with ACL users:
each role can do its job and only its job, and a refusal is one line naming what to fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import KafkaError

from tests.integration.conftest import PORT_BASE
from tests.integration.harness import (
    REPO,
    SINGLE_NODE,
    Bus,
    WorkerProcess,
    isolated_config,
    wait_until,
)
from tests.integration.secured import SecuredStack
from vprov import config as config_module
from vprov import reach
from vprov.config import Config
from vprov.identity import identity_key
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue, changelog_topic, regional_table
from vprov.kafka.clients import consumer, producer
from vprov.kafka.settings import KafkaConnection
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.registration_file import to_record
from vprov.ops.workers import running
from vprov.sim import fleet

# ports of the secured stack and its workers, after the other tests' web ports
KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT = PORT_BASE + 300, PORT_BASE + 301, PORT_BASE + 302
GLOBAL_WEB, NA_WEB, SPARE_WEB = PORT_BASE + 303, PORT_BASE + 304, PORT_BASE + 305


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredStack]:
    run_dir = Path(os.environ.get("VPROV_RUN_DIR", REPO / ".run")) / "test-sasl_ssl"
    config_path = isolated_config(tmp_path_factory.mktemp("secured") / "vprov.toml",
                                  f"s{uuid.uuid4().hex[:6]}", kafka=SINGLE_NODE)
    stack = SecuredStack(run_dir, config_path, KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT)
    stack.down()  # one left by an interrupted session
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        stack.up()
        print(f"secured stack started in {stack.started_seconds:.1f} s")
        ensure_topics(stack.access("admin"), Catalogue(secured_config(stack)).all(), timeout=20)
        yield stack
    finally:
        stack.down()


def secured_config(stack: SecuredStack, role: str = "admin") -> Config:
    return config_module.load(stack.config_path, env=stack.env(role))


def vprov(stack: SecuredStack, role: str, *args: str, **env: str
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vprov.cli", "--config",
                           str(stack.config_path), *args],
                          env=stack.client_env(role, **env), cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines a failed command or worker printed about its failure."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.startswith("error:")]


def worker(stack: SecuredStack, role: str, web_port: int, data_dir: Path,
           **env: str) -> subprocess.CompletedProcess[str]:
    """A worker run to its exit (for the refusals: it must exit, not wait)."""
    args = ["worker", "--web-port", str(web_port), "--data-dir", str(data_dir)]
    args += ["--role", "global"] if role == "global" else [
        "--role", "regional", "--region", role.removeprefix("regional-")]
    return vprov(stack, role, *args, **env)


def first_read(kafka: KafkaConnection, topic: str, group_prefix: str = "vprov-reader-") -> str:
    """What reading ``topic`` from the start gives: an error name, or "readable". The reader
    commits nothing; its group is one the principal may use."""
    reader = consumer(kafka, **{"group.id": f"{group_prefix}{uuid.uuid4()}"})
    try:
        reader.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                return "readable"
            return error.name()
        return "no answer"
    finally:
        reader.close()


def write_result(kafka: KafkaConnection, topic: str) -> str:
    """What writing one record to ``topic`` gives: an error name, or "written"."""
    results: list[str] = []
    # not idempotent: the refusal checked is the topic's, not the producer id's
    out = producer(kafka, **{"enable.idempotence": False, "acks": 1,
                             "message.timeout.ms": 15000})
    out.produce(topic, key=b"k", value=b"v",
                on_delivery=lambda err, _msg: results.append(err.name() if err else "written"))
    out.flush(20)
    return results[0] if results else "no answer"


# --- refusals: one line, a non-zero exit, no wait -----------------------------------------------


def test_a_wrong_password_is_refused_in_one_line(secured: SecuredStack) -> None:
    done = vprov(secured, "admin", "topics", "create", "--connect-timeout", "10",
                 KAFKA_SASL_PASSWORD="not-the-password")
    assert done.returncode == 5
    assert error_lines(done) == [
        f"error: Kafka at 127.0.0.1:{KAFKA_PORT} refused to authenticate user 'admin' with "
        "SCRAM-SHA-512: SASL authentication error: Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512; check "
        "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"]


def test_an_unknown_ca_is_refused_in_one_line(secured: SecuredStack, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=someone else", "-keyout", str(tmp_path / "other.key"),
                    "-out", str(other_ca)], check=True, capture_output=True)
    done = vprov(secured, "admin", "topics", "create", "--connect-timeout", "10",
                 KAFKA_SSL_CA_LOCATION=str(other_ca))
    assert done.returncode == 5
    assert error_lines(done) == [
        f"error: Kafka at 127.0.0.1:{KAFKA_PORT}: the broker's TLS certificate is not signed by "
        f"a CA in {other_ca}; set KAFKA_SSL_CA_LOCATION to the CA that signed it"]


def test_a_plaintext_client_is_refused(secured: SecuredStack) -> None:
    done = vprov(secured, "admin", "topics", "create", "--connect-timeout", "3",
                 KAFKA_SECURITY_PROTOCOL="PLAINTEXT")
    assert done.returncode == 3
    (line,) = error_lines(done)
    assert line.startswith(f"error: cannot reach Kafka at 127.0.0.1:{KAFKA_PORT}")
    assert line.endswith("the broker closed the connection: if its listener expects another "
                         "security protocol than PLAINTEXT, set KAFKA_SECURITY_PROTOCOL")


def test_a_worker_with_a_wrong_password_exits_with_one_line(secured: SecuredStack,
                                                            tmp_path: Path) -> None:
    started = time.monotonic()
    done = worker(secured, "regional-NA", SPARE_WEB, tmp_path, KAFKA_SASL_PASSWORD="wrong")
    assert done.returncode == 5
    (line,) = error_lines(done)
    assert "refused to authenticate user 'vprov-regional-NA'" in line
    assert line.endswith("check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    assert time.monotonic() - started < 30  # it does not wait for the broker to change its mind


def test_a_worker_without_its_acls_exits_with_one_line(secured: SecuredStack,
                                                       tmp_path: Path) -> None:
    # the NA worker started with the subscriber's credentials: authenticated, not authorized
    sub = secured.env("subscriber")
    done = worker(secured, "regional-NA", SPARE_WEB, tmp_path,
                  KAFKA_SASL_USERNAME=sub["KAFKA_SASL_USERNAME"],
                  KAFKA_SASL_PASSWORD=sub["KAFKA_SASL_PASSWORD"])
    assert done.returncode == 5
    (line,) = error_lines(done)
    assert line.startswith(f"error: Kafka at 127.0.0.1:{KAFKA_PORT} refused topic ")
    assert "Topic authorization failed" in line
    assert line.endswith("User:vprov-subscriber lacks an ACL for it: `vprov acls` lists each "
                         "role's, and an admin creates them with `vprov acls --apply`")


def test_a_wrong_redis_password_is_refused(secured: SecuredStack) -> None:
    url = secured.env("global")["REDIS_URL"].replace("vprov:", "vprov:x", 1)
    with pytest.raises(reach.Refused, match="refused user 'vprov'.*check the user and "
                                            "password in REDIS_URL"):
        reach.redis(url, 5)


# --- least privilege -----------------------------------------------------------------------------


def test_a_region_reads_its_own_topics_only(secured: SecuredStack) -> None:
    cat = Catalogue(secured_config(secured))
    na, group = secured.access("regional-NA"), f"{cat.regional_app_id('NA')}-"
    assert first_read(na, cat.device("NA"), group) == "readable"
    assert first_read(na, cat.device("EU"), group) == "TOPIC_AUTHORIZATION_FAILED"
    eu_changelog = changelog_topic(cat.regional_app_id("EU"), regional_table("EU"))
    assert first_read(na, eu_changelog, group) == "TOPIC_AUTHORIZATION_FAILED"
    assert first_read(na, cat.query, group) == "TOPIC_AUTHORIZATION_FAILED"
    # nor may it use another region's consumer group
    assert first_read(na, cat.device("NA"), f"{cat.regional_app_id('EU')}-") == \
        "GROUP_AUTHORIZATION_FAILED"


def test_a_subscriber_reads_the_lifecycle_and_writes_nothing(secured: SecuredStack) -> None:
    cat = Catalogue(secured_config(secured))
    sub = secured.access("subscriber")
    assert first_read(sub, cat.lifecycle) == "readable"
    assert write_result(sub, cat.lifecycle) == "TOPIC_AUTHORIZATION_FAILED"
    assert first_read(sub, cat.registrations) == "TOPIC_AUTHORIZATION_FAILED"


def test_the_publisher_writes_nothing_else(secured: SecuredStack) -> None:
    cat = Catalogue(secured_config(secured))
    publisher = secured.access("publisher")
    assert write_result(publisher, cat.query) == "TOPIC_AUTHORIZATION_FAILED"
    assert write_result(publisher, cat.lifecycle) == "TOPIC_AUTHORIZATION_FAILED"


def test_the_redis_application_user_cannot_flush(secured: SecuredStack) -> None:
    app = redis.Redis.from_url(secured.env("global")["REDIS_URL"])
    assert app.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.set("someone-elses-key", "1")
    # the default user is off, and the port speaks TLS only
    anonymous = f"rediss://127.0.0.1:{REDIS_PORT}/0?ssl_ca_certs={secured.ca}"
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(anonymous).ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(f"redis://127.0.0.1:{REDIS_PORT}/0", socket_timeout=3).ping()


# --- the whole flow, each part as its own principal ----------------------------------------------


@pytest.fixture(scope="module")
def secured_workers(secured: SecuredStack, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[dict[str, WorkerProcess]]:
    workdir = tmp_path_factory.mktemp("secured-workers")
    procs = {
        "global": WorkerProcess("global", GLOBAL_WEB, workdir, secured.config_path,
                                extra_env=secured.env("global")),
        "NA": WorkerProcess("regional", NA_WEB, workdir, secured.config_path, region="NA",
                            extra_env=secured.env("regional-NA")),
    }
    with running(procs):
        yield procs


def test_query_and_device_provision_over_sasl_ssl(
    secured: SecuredStack, secured_workers: dict[str, WorkerProcess]
) -> None:
    config = secured_config(secured)
    cat = Catalogue(config)
    vehicle = fleet.make_vehicle(fleet.run_tag(f"secured-{uuid.uuid4()}"), 1, "NA")

    # the registration publisher
    serde = AvroSerde()
    publisher = producer(secured.access("publisher"))
    for reg in fleet.registrations(vehicle):
        publisher.produce(cat.registrations, key=reg["device_id"].encode(),
                          value=serde.encode("DeviceRegistration", to_record(reg),
                                             topic=cat.registrations))
    assert publisher.flush(20) == 0
    glob = secured_workers["global"]
    wait_until(lambda: glob.get(f"/systems/{vehicle.system_id}/")[0] == 200,
               what="registration indexed")

    # the gateway bridge: device messages in, answers out
    gateway = Bus(config, [cat.query_response, cat.device_response("NA")],
                  kafka=secured.access("gateway"))
    try:
        query_id = str(uuid.uuid4())
        gateway.send(cat.query, vehicle.vin, fleet.query(vehicle, query_id, int(time.time())))
        gateway.flush()
        answer = gateway.wait(cat.query_response,
                              lambda r: isinstance(r.value, dict)
                              and r.value.get("correlation_id") == query_id)[-1]
        assert answer.value["status"] == "SUCCESS"

        device_id = str(uuid.uuid4())
        gateway.send(cat.device("NA"), vehicle.vin,
                     fleet.device_provision(vehicle, vehicle.primary, device_id,
                                            int(time.time())))
        gateway.flush()
        provisioned = gateway.wait(cat.device_response("NA"),
                                   lambda r: isinstance(r.value, dict)
                                   and r.value.get("correlation_id") == device_id)[-1]
        assert provisioned.value["status"] == "SUCCESS"
        assert provisioned.value["body"]["lifecycyclestate"] == "PROVISIONED"
    finally:
        gateway.close()

    # the identity, written by the NA worker as the Redis application user over TLS
    app = redis.Redis.from_url(secured.env("regional-NA")["REDIS_URL"])
    assert app.exists(identity_key("NA", vehicle.primary.device_id))

    # a lifecycle subscriber, in a consumer group of its own
    subscriber = consumer(secured.access("subscriber"), **{"enable.partition.eof": False})
    try:
        subscriber.subscribe([cat.lifecycle])
        states: list[str] = []
        deadline = time.monotonic() + 30
        while "PROVISIONED" not in states and time.monotonic() < deadline:
            msg = subscriber.poll(0.5)
            if msg is not None and msg.error() is None and msg.key() == vehicle.vin.encode():
                states.append(serde.decode("LifecycleEvent", msg.value())["state"])
        assert states == ["REGIONAL", "PROVISIONED"]
    finally:
        subscriber.close()
