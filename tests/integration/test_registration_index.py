"""The registration index on a really compacted topic: compaction holes are told from dropped
records by asking the broker, so the index commits to the end and keeps every registration."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from streams.repairs.offset_probe import END, OffsetProbe
from tests.integration.conftest import PORT_BASE
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    WorkerProcess,
    isolated_config,
    wait_until,
)
from vprov import config as config_module
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import admin_client, consumer, producer
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.registration_file import to_record
from vprov.sim import fleet

WEB_PORT = PORT_BASE + 120
# The log cleaner compacts a closed segment once most of it is superseded; segments close
# every 200 ms here, so the cleaner (which looks every 15 s by default) finds work soon.
EAGER_COMPACTION = {"cleanup.policy": "compact", "segment.ms": "200",
                    "min.cleanable.dirty.ratio": "0.001", "min.compaction.lag.ms": "0"}


def compacted_holes(topic: str, partitions: int, timeout: float = 90.0) -> dict[int, int]:
    """Wait until the cleaner has compacted the start of some partitions: partition -> the
    offset of its first surviving record (> 0)."""
    probe = OffsetProbe(BOOTSTRAP)
    try:
        def holes() -> dict[int, int]:
            found = {}
            for p in range(partitions):
                first = probe.next_offset(topic, p, 0)
                if first > 0:
                    found[p] = first
            return found

        return wait_until(holes, timeout=timeout, interval=2.0, what="the cleaner compacted")
    finally:
        probe.close()


def test_a_fresh_index_over_a_compacted_topic_commits_to_the_end(tmp_path: Path) -> None:
    path = isolated_config(tmp_path / "vprov.toml", f"c{uuid.uuid4().hex[:6]}")
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    cat = Catalogue(config)
    admin = admin_client(BOOTSTRAP)
    admin.create_topics([NewTopic(cat.registrations, num_partitions=config.partitions,
                                  replication_factor=1, config=EAGER_COMPACTION)]
                        )[cat.registrations].result(30)
    ensure_topics(BOOTSTRAP, cat.all())

    serde = AvroSerde()
    out = producer(BOOTSTRAP)
    tag = fleet.run_tag(str(uuid.uuid4()))
    vehicles = [fleet.make_vehicle(tag, i, "NA") for i in range(40)]

    def publish(sub_system: str) -> None:
        for vehicle in vehicles:
            for reg in fleet.registrations(vehicle):
                reg = {**reg, "sub_system_id": sub_system}
                out.produce(cat.registrations, key=reg["device_id"].encode(),
                            value=serde.encode("DeviceRegistration", to_record(reg),
                                               topic=cat.registrations))
        out.flush(30)

    # Every device registered three times; only the last version survives compaction.
    for version in ("sub-old-1", "sub-old-2", "sub-new"):
        publish(version)
        time.sleep(0.5)  # lets each round close its segment
    # a later record closes the last round's segment, so the cleaner may compact it
    holes = {}
    deadline = time.monotonic() + 120
    while not holes and time.monotonic() < deadline:
        out.produce(cat.registrations, key=b"filler", value=None)
        out.flush(10)
        try:
            holes = compacted_holes(cat.registrations, config.partitions, timeout=10)
        except TimeoutError:
            continue
    assert holes, "the broker's log cleaner never compacted the registration topic"

    worker = WorkerProcess("global", WEB_PORT, tmp_path, path).start()
    try:
        worker.wait_ready()
        for vehicle in vehicles:
            wait_until(lambda v=vehicle: worker.get(f"/systems/{v.system_id}/")[0] == 200
                       and {d["sub_system_id"] for d in
                            worker.get(f"/systems/{v.system_id}/")[1]["devices"].values()}
                       == {"sub-new"}, timeout=60, what=f"{vehicle.system_id} indexed")
        # The commit reaches the end of every partition, holes at the head included: neither
        # stuck at a compaction hole nor past an unread record.
        group = consumer(BOOTSTRAP, group_id=cat.global_app_id)
        try:
            def committed_to_end() -> bool:
                tps = [TopicPartition(cat.registrations, p) for p in range(config.partitions)]
                committed = group.committed(tps, timeout=10)
                ends = [group.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
                return all(c.offset == end for c, end in zip(committed, ends, strict=True))

            wait_until(committed_to_end, timeout=60, interval=1.0,
                       what="registration offsets committed to the end")
        finally:
            group.close()
        assert "stopped at offset" not in worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()
        admin.delete_topics([s.name for s in cat.all()])


def test_the_probe_finds_the_next_record_and_the_end(tmp_path: Path) -> None:
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    admin = admin_client(BOOTSTRAP)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    try:
        out = producer(BOOTSTRAP)
        for i in range(3):
            out.produce(topic, key=b"k", value=str(i).encode())
        out.flush(10)
        probe = OffsetProbe(BOOTSTRAP)
        try:
            assert probe.next_offset(topic, 0, 1) == 1
            assert probe.next_offset(topic, 0, 3) == END
        finally:
            probe.close()
    finally:
        admin.delete_topics([topic])
