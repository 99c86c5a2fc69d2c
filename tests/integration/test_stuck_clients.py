"""The fleet's Kafka clients replace one that stopped working, on the real broker: a producer
that cannot reach the cluster hands its records, in order, to a new one; a reader that stopped
fetching goes on from the same offsets with a new consumer (``ClusterProducer.renew_stuck``,
``ClusterReader.renew_stuck``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from tests.integration.harness import BOOTSTRAP, scratch_topic, wait_until
from vprov import config as config_module
from vprov.config import Cluster
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import ClusterProducer, ClusterReader, consumer, producer

UNREACHABLE = "127.0.0.1:1"  # nothing listens there: a client of it never delivers


@pytest.fixture
def topic() -> Iterator[str]:
    with scratch_topic("stuck") as name:
        yield name


def read_all(topic: str, partition: int, count: int) -> list[bytes]:
    reader = consumer(BOOTSTRAP, None, **{"enable.partition.eof": False})
    try:
        reader.assign([TopicPartition(topic, partition, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            got += [m.value() for m in reader.consume(100, 1.0) if m.error() is None]
        return got
    finally:
        reader.close()


def test_a_producer_that_lost_the_cluster_hands_its_records_over_in_order(topic: str) -> None:
    cat = Catalogue(config_module.load(env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP}))
    reported: list[Any] = []
    out = ClusterProducer(cat, **{"delivery.report.only.error": True,
                                  "on_delivery": lambda err, msg: reported.append(err)})
    # the topic is not one of the catalogue's: its records go to the global cluster's producer,
    # here one that reaches nothing, as a client that dropped its only broker does
    out._producers[cat.global_cluster] = producer(UNREACHABLE, **out._overrides)
    values = [f"v{n:02d}".encode() for n in range(20)]
    for value in values:
        out.produce(topic, key=b"VIN", value=value, partition=1)
    out.poll(0)
    assert out.renew_stuck(timeout=1.0) == 0  # once is no proof: it may be reconnecting
    assert out.renew_stuck(timeout=1.0) == 1
    assert out.flush(30) == 0
    assert reported == []  # no record reported lost
    assert read_all(topic, 1, len(values)) == values
    assert out.renew_stuck(timeout=1.0) == 0  # the new one works: nothing more to replace
    out.close()


def test_a_producer_is_left_alone_while_the_cluster_does_not_answer_anyone(topic: str) -> None:
    cat = Catalogue(config_module.load(env={"KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE}))
    out = ClusterProducer(cat)
    out.produce(topic, key=b"VIN", value=b"v")
    assert [out.renew_stuck(timeout=1.0) for _ in range(3)] == [0, 0, 0]  # a broker outage
    purged = out.close(0)
    assert purged == 1


def test_a_reader_that_stopped_fetching_goes_on_from_the_same_offsets(topic: str) -> None:
    reader = ClusterReader({Cluster("global", BOOTSTRAP): [topic]},
                           **{"enable.partition.eof": False})
    reader.assign_ends()
    send = producer(BOOTSTRAP)
    try:
        for n in range(3):
            send.produce(topic, value=f"a{n}".encode(), partition=0)
        send.flush(10)
        got: list[bytes] = []
        wait_until(lambda: got.extend(m.value() for m in reader.consume(100, 0.5)
                                      if m.error() is None) or len(got) >= 3,
                   timeout=30, what="the first records")
        assert got == [b"a0", b"a1", b"a2"]
        # a consumer that no longer fetches (paused here; after a broker's restart librdkafka
        # has been seen to stop by itself), while records wait past its position
        stuck = reader._followers[0].reader
        stuck.pause(stuck.assignment())
        for n in range(3):
            send.produce(topic, value=f"b{n}".encode(), partition=0)
        send.flush(10)
        assert reader.consume(100, 1.0) == []
        assert reader.renew_stuck(timeout=2.0) == 0  # the first look only notes the positions
        assert reader.renew_stuck(timeout=2.0) == 1
        more: list[bytes] = []
        wait_until(lambda: more.extend(m.value() for m in reader.consume(100, 0.5)
                                       if m.error() is None) or len(more) >= 3,
                   timeout=30, what="the records after the stop")
        assert more == [b"b0", b"b1", b"b2"]  # from where it stopped: nothing lost or repeated
        assert reader.renew_stuck(timeout=2.0) == 0
        assert reader.renew_stuck(timeout=2.0) == 0  # caught up: nothing waits
    finally:
        send.flush(5)
        reader.close()


def test_positions_noted_without_a_look_are_what_the_next_look_compares_with(
        topic: str) -> None:
    # the fleet notes its reader's positions at no cost while it is answered, and looks (which
    # asks the cluster) only once a request is overdue: that one look must find a stuck reader
    reader = ClusterReader({Cluster("global", BOOTSTRAP): [topic]},
                           **{"enable.partition.eof": False})
    reader.assign_ends()
    send = producer(BOOTSTRAP)
    try:
        stuck = reader._followers[0].reader
        stuck.pause(stuck.assignment())
        reader.note_positions()
        for n in range(3):
            send.produce(topic, value=f"c{n}".encode(), partition=0)
        send.flush(10)
        assert reader.consume(100, 1.0) == []
        assert reader.renew_stuck(timeout=2.0) == 1
        got: list[bytes] = []
        wait_until(lambda: got.extend(m.value() for m in reader.consume(100, 0.5)
                                      if m.error() is None) or len(got) >= 3,
                   timeout=30, what="the records after the stop")
        assert got == [b"c0", b"c1", b"c2"]
        reader.note_positions()
        assert reader.renew_stuck(timeout=2.0) == 0  # caught up: nothing waits
    finally:
        send.flush(5)
        reader.close()


def test_purged_records_are_reported_when_no_successor_takes_them() -> None:
    """The hand-over intercepts purges only during a renewal: closing a producer that could not
    deliver still reports each record lost to the caller."""
    cat = Catalogue(config_module.load(env={"KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE}))
    reported: list[Any] = []
    out = ClusterProducer(cat, **{"on_delivery": lambda err, msg: reported.append(err)})
    out.produce("anything", key=b"VIN", value=b"v")
    assert out.close(0) == 1
    assert [e.code() for e in reported] == [KafkaError._PURGE_QUEUE]
