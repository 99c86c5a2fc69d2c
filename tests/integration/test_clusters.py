"""The multi-cluster topology: the global partition on one Kafka cluster, NA and EU on clusters
of their own, MirrorMaker 2 between them (docs/architecture.md, "Deployment topologies").

The module starts the regional clusters and MirrorMaker with the project's script
(``TOPOLOGY=clusters scripts/stack.sh up``: the suite's broker is the global cluster), with a
deployment of its own whose NA and EU topics live on the regional clusters (AP stays on the
global one). A global worker and an NA worker run against it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from tests.integration.conftest import PORT_BASE, error_code
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    REPO,
    Bus,
    Fleet,
    WorkerProcess,
    broker_count,
    kafka_security_env,
    wait_until,
)
from vprov import config as config_module
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import admin_client, consumer
from vprov.ops.workers import running
from vprov.sim import fleet

# MirrorMaker keeps mirroring this module's topics until the session ends: leave them.
KEEP_TOPICS = True
REGIONS = ("NA", "EU")  # with clusters of their own
REHOME_TIMEOUT_SECONDS = 4
GLOBAL_WEB, NA_WEB = PORT_BASE + 140, PORT_BASE + 141


def stack(*args: str, config_path: Path | None = None) -> str:
    """``TOPOLOGY=clusters scripts/stack.sh ARGS``; its output."""
    env = {**os.environ, "TOPOLOGY": "clusters",
           "CLUSTER_REGIONS": os.environ.get("CLUSTER_REGIONS", " ".join(REGIONS))}
    if config_path is not None:
        env["VPROV_CONFIG"] = str(config_path)
    done = subprocess.run([str(REPO / "scripts" / "stack.sh"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        pytest.fail(f"scripts/stack.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}",
                    pytrace=False)
    return done.stdout


def region_addresses() -> dict[str, str]:
    """Each region's cluster, as the stack script prints it."""
    found = {}
    for line in stack("env").splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        region = name.removeprefix("KAFKA_BOOTSTRAP_SERVERS_")
        if region != name:
            found[region] = value
    missing = set(REGIONS) - set(found)
    if missing:
        pytest.fail(f"CLUSTER_REGIONS={os.environ.get('CLUSTER_REGIONS')!r} lacks "
                    f"{', '.join(sorted(missing))}", pytrace=False)
    return found


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Path]]:
    if broker_count() > 1:
        pytest.skip("the suite's stack has several brokers, and scripts/stack.sh adds regional "
                    "clusters to a single-broker stack only (their one broker each could not "
                    "hold the topics' replicas); run this module on `make up`")
    addresses = region_addresses()
    doc = config_module.isolate(config_module.defaults_document(), f"c{uuid.uuid4().hex[:6]}")
    doc["flow"]["rehome_timeout_seconds"] = REHOME_TIMEOUT_SECONDS
    for region in REGIONS:
        # the local regional clusters are plaintext, also beside a secured global one
        doc["regions"][region]["kafka"] = {"bootstrap_servers": addresses[region],
                                           "security": {"protocol": "PLAINTEXT"}}
    path = tmp_path_factory.mktemp("clusters") / "vprov-clusters.toml"
    path.write_text(config_module.dumps(doc))
    # the regional brokers, this deployment's topics on each cluster, MirrorMaker with its
    # configuration (the suite's broker and Redis are running already and are left alone)
    started = time.monotonic()
    stack("up", config_path=path)
    print(f"\nclustered stack ready in {time.monotonic() - started:.1f} s")
    config = config_module.load(path, env={**kafka_security_env(),
                                           "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    yield config, path


@pytest.fixture(scope="module")
def cluster_workers(clusters: tuple[Config, Path], tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[dict[str, WorkerProcess]]:
    _, path = clusters
    workdir = tmp_path_factory.mktemp("cluster-workers")
    procs = {"global": WorkerProcess("global", GLOBAL_WEB, workdir, path),
             "NA": WorkerProcess("regional", NA_WEB, workdir, path, region="NA")}
    with running(procs):
        yield procs


class Sides:
    """A device's and a subscriber's view: the global cluster's topics and NA's."""

    def __init__(self, config: Config, workers: dict[str, WorkerProcess]) -> None:
        cat = self.cat = Catalogue(config)
        self.workers = workers
        self.glob = Bus(config, [cat.query_response, cat.lifecycle, cat.rehome_result],
                        kafka=config.cluster(None))
        self.na = Bus(config, [cat.device_response("NA"), cat.onboarding("NA"), cat.lifecycle,
                               cat.rehome("NA")], kafka=config.cluster("NA"))

    def close(self) -> None:
        self.glob.close()
        self.na.close()

    def register(self, vehicle: fleet.SimVehicle) -> None:
        self.glob.register([vehicle])
        glob = self.workers["global"]
        wait_until(lambda: glob.get(f"/systems/{vehicle.system_id}/")[0] == 200
                   and len(glob.get(f"/systems/{vehicle.system_id}/")[1]["devices"])
                   == len(vehicle.devices), what=f"system {vehicle.system_id} indexed")

    def send_query(self, vehicle: fleet.SimVehicle) -> str:
        message_id = str(uuid.uuid4())
        self.glob.send(self.cat.query, vehicle.vin,
                       fleet.query(vehicle, message_id, int(time.time())))
        self.glob.flush()
        return message_id

    def answer(self, message_id: str, timeout: float = 45.0) -> dict:
        return self.glob.wait(self.cat.query_response,
                              lambda r: isinstance(r.value, dict)
                              and r.value.get("correlation_id") == message_id,
                              timeout=timeout)[-1]

    def provision(self, vehicle: fleet.SimVehicle, device: fleet.SimDevice) -> dict:
        message_id = str(uuid.uuid4())
        self.na.send(self.cat.device("NA"), vehicle.vin,
                     fleet.device_provision(vehicle, device, message_id, int(time.time())))
        self.na.flush()
        return self.na.wait(self.cat.device_response("NA"),
                            lambda r: isinstance(r.value, dict)
                            and r.value.get("correlation_id") == message_id)[-1]


@pytest.fixture(scope="module")
def sides(clusters: tuple[Config, Path], cluster_workers: dict[str, WorkerProcess]
          ) -> Iterator[Sides]:
    found = Sides(clusters[0], cluster_workers)
    yield found
    found.close()


@pytest.fixture(scope="module")
def provisioned(sides: Sides) -> fleet.SimVehicle:
    """One NA vehicle taken through both flows across the clusters."""
    vehicle = Fleet(tag=fleet.run_tag(f"clusters-{uuid.uuid4()}")).vehicle("NA")
    sides.register(vehicle)
    answer = sides.answer(sides.send_query(vehicle))
    assert answer.value["status"] == "SUCCESS"
    assert answer.value["body"]["lifecyclestate"] == "PROVISION_PENDING_REGIONAL"
    for device in vehicle.devices:
        assert sides.provision(vehicle, device).value["status"] == "SUCCESS"
    return vehicle


def topics_on(kafka: object) -> set[str]:
    return set(admin_client(kafka).list_topics(timeout=10).topics)


def raw_records(kafka: object, topics: list[str]) -> list[bytes]:
    """Every key and value now on ``topics`` of one cluster, up to the end offsets taken
    first."""
    reader = consumer(kafka, **{"enable.partition.eof": False})
    found: list[bytes] = []
    try:
        meta = reader.list_topics(timeout=10).topics
        ends = {}
        for topic in topics:
            for p in meta[topic].partitions:
                low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[(topic, p)] = high
        reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        left = set(ends)
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.2):
                if msg.error():
                    continue
                found += [msg.key() or b"", msg.value() or b""]
                if msg.offset() >= ends[(msg.topic(), msg.partition())] - 1:
                    left.discard((msg.topic(), msg.partition()))
        assert not left, f"partitions not read to their end: {sorted(left)[:5]}"
    finally:
        reader.close()
    return found


def test_a_vehicle_provisions_end_to_end_across_clusters(
    sides: Sides, provisioned: fleet.SimVehicle
) -> None:
    cat = sides.cat
    vin = provisioned.vin
    # the rehome request crossed to NA, its result came back to global
    assert sides.na.wait(cat.rehome("NA"), lambda r: r.key == vin)[0].value["action"] == \
        "REGISTER"
    assert sides.glob.wait(cat.rehome_result, lambda r: r.key == vin)[0].value["outcome"] == \
        "REGISTERED"
    status, entry = sides.workers["NA"].get(f"/vehicles/{vin}/")
    assert status == 200 and entry["global_identity_deleted"] is True


def test_the_regions_lifecycle_events_reach_global_subscribers(
    sides: Sides, provisioned: fleet.SimVehicle
) -> None:
    vin = provisioned.vin
    # the region's events are written on its cluster (REGIONAL is the global worker's)
    regional = sides.na.wait(sides.cat.lifecycle, lambda r: r.key == vin,
                             count=len(provisioned.devices))
    ids = {r.value["event_id"] for r in regional}
    sides.glob.wait_all(sides.cat.lifecycle, lambda r: r.value["event_id"], ids, timeout=30)
    on_global = sides.glob.records(sides.cat.lifecycle, lambda r: r.key == vin)
    assert [(e.value["device_id"], e.value["state"], e.value["partition"])
            for e in on_global] == [
        (None, "REGIONAL", "global"),
        *((d.device_id, "PROVISIONED", "NA") for d in provisioned.devices)]
    assert [e.value["sequence"] for e in on_global] == list(range(1, len(on_global) + 1))


def test_regional_data_stays_in_its_region(
    clusters: tuple[Config, Path], sides: Sides, provisioned: fleet.SimVehicle
) -> None:
    config, _ = clusters
    cat = sides.cat
    glob, na, eu = (topics_on(config.cluster(r)) for r in (None, "NA", "EU"))
    for region, own in (("NA", na), ("EU", eu)):
        regional_only = cat.regional_side(region) - cat.global_side()
        assert regional_only <= own
        assert not regional_only & glob, f"{region}'s topics on the global cluster"
    assert cat.rehome("EU") in eu and cat.rehome("NA") not in eu  # one region's link only
    assert not (cat.regional_side("NA") - cat.global_side()) & eu

    # the device's SIM and chipsets: on NA's cluster, and on no topic of the global one
    needles = [b"8901" + d.fingerprint[:15].encode() for d in provisioned.devices]
    needles += [c["id"].encode() for d in provisioned.devices for c in d.chipsets]
    ours = config.app_prefix
    regional = raw_records(config.cluster("NA"), [cat.device("NA"), cat.onboarding("NA")])
    assert all(any(n in blob for blob in regional) for n in needles)
    global_topics = sorted(t for t in glob if t.startswith(ours))
    assert len(global_topics) >= len(cat.global_side())
    everything = raw_records(config.cluster(None), global_topics)
    assert everything, "nothing read from the global cluster"
    leaked = [n for n in needles if any(n in blob for blob in everything)]
    assert not leaked, f"device data on the global cluster: {leaked}"


def test_link_down_past_the_deadline_fails_with_13105_and_the_retry_succeeds(
    clusters: tuple[Config, Path], sides: Sides
) -> None:
    _, path = clusters
    vehicle = Fleet(tag=fleet.run_tag(f"link-{uuid.uuid4()}")).vehicle("NA")
    sides.register(vehicle)
    stack("mirror", "stop", config_path=path)
    try:
        began = time.monotonic()
        failed = sides.answer(sides.send_query(vehicle), timeout=30)
        waited = time.monotonic() - began
    finally:
        stack("mirror", "start", config_path=path)
    print(f"\nlink down: 13105 after {waited:.1f} s (deadline {REHOME_TIMEOUT_SECONDS} s)")
    assert error_code(failed) == 13105
    assert failed.value["body"]["lifecyclestate"] == "QRY_FAIL"
    # back up: the region gets the request and its undo, in that order, and keeps nothing (its
    # late REGISTERED result may be answered with a second CANCEL)
    requests = sides.na.wait(sides.cat.rehome("NA"), lambda r: r.key == vehicle.vin, count=2,
                             timeout=60)
    actions = [r.value["action"] for r in requests]
    assert actions[0] == "REGISTER" and set(actions[1:]) == {"CANCEL"}, actions
    assert len({r.value["request_id"] for r in requests}) == 1
    wait_until(lambda: sides.workers["NA"].get(f"/vehicles/{vehicle.vin}/")[0] == 404,
               what="the undone vehicle gone from the region")
    began = time.monotonic()
    retry = sides.answer(sides.send_query(vehicle), timeout=30)
    print(f"retry after the link is back: {retry.value['status']} in "
          f"{time.monotonic() - began:.2f} s")
    assert retry.value["status"] == "SUCCESS"


def mirror_pid() -> int:
    """MirrorMaker's process, from the stack's pid file."""
    run_dir = Path(os.environ.get("VPROV_RUN_DIR") or REPO / ".run")
    return int((run_dir / "mirror" / "mirror.pid").read_text().split()[0])


def test_link_down_within_the_deadline_only_delays_the_answer(
    clusters: tuple[Config, Path], sides: Sides
) -> None:
    """MirrorMaker frozen (SIGSTOP: no record crosses) for less than the rehome deadline while
    a vehicle queries: nothing fails, the answer comes once the link is back."""
    vehicle = Fleet(tag=fleet.run_tag(f"blip-{uuid.uuid4()}")).vehicle("NA")
    sides.register(vehicle)
    pause = REHOME_TIMEOUT_SECONDS / 2
    pid = mirror_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        message_id = sides.send_query(vehicle)
        time.sleep(pause)
    finally:
        os.kill(pid, signal.SIGCONT)
    answer = sides.answer(message_id, timeout=30)
    waited = time.monotonic() - began
    print(f"\nlink frozen {pause:.1f} s: {answer.value['status']} after {waited:.1f} s")
    assert answer.value["status"] == "SUCCESS"
    assert waited >= pause  # it did wait for the link
    assert sides.na.wait(sides.cat.rehome("NA"), lambda r: r.key == vehicle.vin)[0].value[
        "action"] == "REGISTER"


def test_the_audit_reads_the_global_cluster_clean(
    clusters: tuple[Config, Path], sides: Sides, provisioned: fleet.SimVehicle,
    capsys: pytest.CaptureFixture[str], broker_env: None
) -> None:
    """``vprov replay --verify`` on the global cluster's ``vehicle.lifecycle``, where the link
    has brought the region's events, against both workers' tables."""
    from tests.integration.conftest import run_vprov

    _, path = clusters
    ids = {r.value["event_id"] for r in sides.na.wait(
        sides.cat.lifecycle, lambda r: r.key == provisioned.vin, count=len(provisioned.devices))}
    sides.glob.wait_all(sides.cat.lifecycle, lambda r: r.value["event_id"], ids, timeout=30)
    code, out, err = run_vprov(path, capsys, "replay", "--vin", provisioned.vin, "--verify",
                               "--global-url", f"http://127.0.0.1:{GLOBAL_WEB}",
                               "--region-url", f"NA=http://127.0.0.1:{NA_WEB}")
    assert code == 0, out + err
    assert "PROVISIONED" in out


def test_simulate_and_deadletter_pick_each_topics_cluster(
    clusters: tuple[Config, Path], sides: Sides, capsys: pytest.CaptureFixture[str],
    broker_env: None
) -> None:
    """``vprov simulate`` sends queries to the global cluster and device requests to NA's, and
    reads each answer where it is written; ``vprov deadletter list`` finds NA's dead letters
    on NA's cluster."""
    from tests.integration.conftest import run_vprov
    from vprov.sim.simulate import SimOptions, Simulator

    config, path = clusters
    options = SimOptions(vehicles=4, regions=("NA",), invalid=0.5, timeout=60, seed=3,
                         global_url=f"http://127.0.0.1:{GLOBAL_WEB}")
    report = Simulator(config, options, progress_stream=io.StringIO()).run()
    assert report.ok, report.format_text()
    assert len(report.done) == 4
    assert report.invalid_ok == report.invalid_sent, report.invalid_problems

    # a record no device would send: the NA worker dead-letters it on NA's cluster
    marker = f"not-a-message-{uuid.uuid4()}".encode()
    sides.na.send(sides.cat.device("NA"), "garbage", marker)
    sides.na.flush()
    wait_until(lambda: any(marker in blob for blob in
                           raw_records(config.cluster("NA"), [sides.cat.deadletter])),
               what="the dead letter on NA's cluster")
    code, out, _ = run_vprov(path, capsys, "deadletter", "list", "--source-topic",
                             sides.cat.device("NA"))
    assert code == 0 and sides.cat.device("NA") in out, out
