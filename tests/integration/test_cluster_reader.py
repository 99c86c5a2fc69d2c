"""The reader the simulator, the benchmark and `vprov vehicle` wait for answers with, on the
real broker: a record is handed over as soon as it is fetched, not when the wait runs out."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import BOOTSTRAP, scratch_topic
from vprov.config import Cluster
from vprov.kafka.clients import ClusterReader, producer
from vprov.kafka.settings import PROMPT_READER

WAIT_SECONDS = 5.0  # far longer than a fetch on a local broker takes


@pytest.fixture
def topic() -> Iterator[str]:
    with scratch_topic("reader") as name:
        yield name


def reader_of(topic: str, **overrides: object) -> ClusterReader:
    reader = ClusterReader({Cluster("global", BOOTSTRAP): [topic]},
                           **{"enable.partition.eof": False, **overrides})
    reader.assign_ends()
    return reader


def test_a_record_is_returned_as_soon_as_it_comes_not_after_the_whole_wait(topic: str):
    reader = reader_of(topic)
    try:
        assert reader.consume(1000, 1.0) == []  # nothing yet: the wait runs out
        send = producer(BOOTSTRAP)
        for n in range(3):
            send.produce(topic, key=f"k{n}".encode(), value=f"v{n}".encode(), partition=n % 2)
        send.flush(10)
        began = time.monotonic()
        got = []
        while len(got) < 3 and time.monotonic() - began < WAIT_SECONDS:
            got += [m for m in reader.consume(1000, WAIT_SECONDS) if m.error() is None]
        waited = time.monotonic() - began
        assert sorted(m.value() for m in got) == [b"v0", b"v1", b"v2"]
        # librdkafka's batch consume would have returned them after WAIT_SECONDS
        assert waited < WAIT_SECONDS / 2, f"the records came after {waited:.1f} s"
    finally:
        reader.close()


def test_records_already_fetched_are_returned_without_waiting(topic: str):
    reader = reader_of(topic)
    try:
        send = producer(BOOTSTRAP)
        for n in range(20):
            send.produce(topic, key=b"k", value=str(n).encode(), partition=0)
        send.flush(10)
        time.sleep(1)  # fetched meanwhile
        first = reader.consume(1000, 0)
        got = [m for m in first if m.error() is None]
        while len(got) < 20:
            batch = reader.consume(1000, WAIT_SECONDS)
            assert batch, "records missing"
            got += [m for m in batch if m.error() is None]
        assert first, "a consume without a wait returned nothing although records were fetched"
        assert [int(m.value()) for m in got] == list(range(20))  # in order, none twice
    finally:
        reader.close()


def test_an_idle_prompt_reader_gets_each_record_long_before_its_fetch_wait_runs_out(topic: str):
    # PROMPT_READER's long wait is cheap only because the broker answers a waiting fetch when a
    # record arrives. Were it held for the whole wait instead, the delays would spread over
    # 0-500 ms, and the median of eight would hardly ever fall under a fifth of that.
    wait_ms = int(PROMPT_READER["fetch.wait.max.ms"])
    reader = reader_of(topic, **PROMPT_READER)
    send = producer(BOOTSTRAP, **{"linger.ms": 0})
    try:
        assert reader.consume(1000, 1.0) == []  # fetching, nothing to read
        delays = []
        for n in range(8):
            time.sleep(0.3)  # idle again: the next fetch waits at the broker
            sent = time.monotonic()
            send.produce(topic, key=b"k", value=str(n).encode(), partition=n % 2)
            send.poll(0)
            got = []
            while not got and time.monotonic() - sent < WAIT_SECONDS:
                got = [m for m in reader.consume(1000, WAIT_SECONDS) if m.error() is None]
            assert [m.value() for m in got] == [str(n).encode()]
            delays.append((time.monotonic() - sent) * 1000)
        assert sorted(delays)[len(delays) // 2] < wait_ms / 5, f"delays (ms): {delays}"
    finally:
        send.flush(10)
        reader.close()
