"""The contract between the repairs to Faust (streams/repairs/commit_guard.py,
streams/repairs/transport.py) and
the Faust and aiokafka releases installed, checked on the real classes: a release that moves,
renames or stops calling what the repairs override fails here, not in production by losing
records. The defects the repairs exist for (docs/faust-defects.md) are shown on Faust's own
consumer and producer; a release that fixes one fails its test, which says the repair can go."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.client import ConnectionGroup
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.group import HeartbeatRequest
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from streams.app import WorkerOptions, create_app
from streams.repairs import faust_contract
from streams.repairs import store as repaired_store
from streams.repairs.commit_guard import DrainingProducer, GuardedConsumer, drain_buffer
from streams.repairs.producer import Batching, LibrdkafkaProducer
from streams.repairs.transport import COMMIT_CONNECTION, TunedConsumerThread
from tests.unit.guardkit import (
    NOWHERE,
    commit,
    deliver,
    event_loop,
    guarded_app,
    process,
    set_committed,
)
from vprov import config as vconfig
from vprov.kafka.catalogue import Catalogue

TOPIC = "test.contract.input"
TP0 = TP(TOPIC, 0)


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with event_loop() as loop:
        yield loop


def faust_app(topic: str = TOPIC) -> tuple[faust.App, Any]:
    """An app on Faust's own transport, as Faust builds it (no repairs)."""
    app = faust.App("test-contract-faust", broker=NOWHERE)
    app.topics.add(app.topic(topic))
    asyncio.get_event_loop().run_until_complete(app.topics._update_indices())
    app.flow_control.resume()
    return app, app.consumer


# --- the names the repairs use ----------------------------------------------------------------


def test_every_private_name_the_repairs_use_is_there() -> None:
    assert faust_contract.missing() == []
    faust_contract.check()


def test_a_missing_name_fails_the_start_with_the_versions_installed() -> None:
    gone = faust_contract.method(faust_contract.Consumer, "_next_commit_offset")
    unused = faust_contract.called_by(faust_contract.Consumer, "_new_offset", "commit")
    with pytest.raises(faust_contract.UnsupportedFaust) as failure:
        faust_contract.check((gone, unused))
    message = str(failure.value)
    assert f"faust-streaming {faust.__version__}" in message
    assert "Consumer._next_commit_offset (method)" in message
    assert "Consumer.commit (uses _new_offset)" in message
    assert "\n" not in message


# --- the worker's app runs on the repaired classes ----------------------------------------------


def test_a_worker_app_consumes_and_produces_through_the_repaired_classes(tmp_path: Path) -> None:
    doc = vconfig.defaults_document()
    doc["kafka"].update(bootstrap_servers="127.0.0.1:1", fetch_min_bytes=2048,
                        fetch_max_wait_ms=25, producer_linger_ms=5)
    config = vconfig.from_document(doc)
    app, _ = create_app(config, WorkerOptions(role="global", region=None, web_port=1,
                                              data_dir=tmp_path))
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)
    producer = app.producer
    assert isinstance(producer, LibrdkafkaProducer)  # the default kafka.producer_client
    assert producer.linger_ms == 5
    assert producer._settings["linger.ms"] == 5
    assert producer._settings["bootstrap.servers"] == "127.0.0.1:1"
    assert producer._settings["partitioner"] == "murmur2_random"

    async def fetch_settings() -> tuple[int, int]:
        thread = consumer._thread
        assert isinstance(thread, TunedConsumerThread)
        kafka = thread._create_worker_consumer(app.transport)
        try:
            return kafka._fetch_min_bytes, kafka._fetch_max_wait_ms
        finally:
            await kafka.stop()

    assert asyncio.get_event_loop().run_until_complete(fetch_settings()) == (2048, 25)


@pytest.mark.parametrize("batch_linger_ms", [300, 5, 0])
def test_a_worker_s_producer_sends_records_no_answer_waits_for_through_a_lingering_client(
        tmp_path: Path, batch_linger_ms: int) -> None:
    """A second librdkafka client, with kafka.producer_batch_linger_ms, takes the catalogue's
    batched topics; a batch linger no longer than the producer's own keeps one client."""
    doc = vconfig.defaults_document()
    doc["kafka"].update(bootstrap_servers="127.0.0.1:1", producer_linger_ms=5,
                        producer_batch_linger_ms=batch_linger_ms)
    config = vconfig.from_document(doc)
    app, _ = create_app(config, WorkerOptions(role="global", region=None, web_port=1,
                                              data_dir=tmp_path))
    cat = Catalogue(config)
    producer = app.producer
    assert isinstance(producer, LibrdkafkaProducer)
    assert producer._batching == Batching(cat.batched(), batch_linger_ms)

    async def clients() -> tuple[Any, Any, Any, Any]:
        await producer.on_start()  # no broker is needed to create the clients
        try:
            return (producer._client_for(cat.onboarding("NA")),
                    producer._client_for(cat.query_response),
                    producer._producer, producer._batched)
        finally:
            await producer.on_stop()  # nothing was sent: its flush returns at once

    event, answer, prompt, batching = asyncio.get_event_loop().run_until_complete(clients())
    assert answer is prompt is not None
    if batch_linger_ms > 5:
        assert event is batching is not None
    else:
        assert event is prompt and batching is None


def test_a_worker_s_consumer_commits_offsets_on_a_connection_of_its_own(tmp_path: Path) -> None:
    """The group coordinator's own requests: its heartbeat on aiokafka's coordination
    connection, its offset commit on another (defect 6), both through aiokafka's real
    ``GroupCoordinator._send_req`` and client ``send``."""
    doc = vconfig.defaults_document()
    doc["kafka"]["bootstrap_servers"] = "127.0.0.1:1"
    app, _ = create_app(vconfig.from_document(doc),
                        WorkerOptions(role="global", region=None, web_port=1, data_dir=tmp_path))
    used: list[tuple[int, object, str]] = []

    async def requests_sent() -> list[tuple[int, object, str]]:
        thread = app.consumer._thread
        kafka = thread._create_worker_consumer(app.transport)
        client = kafka._client

        async def ready(node_id: int, *, group: object = ConnectionGroup.DEFAULT) -> bool:
            client._conns[(node_id, group)] = SimpleNamespace(
                send=lambda request, expect_response: recorded(node_id, group, request))
            return True

        async def recorded(node_id: int, group: object, request: Any) -> None:
            used.append((node_id, group, type(request).__name__))

        client.ready = ready
        coordinator = GroupCoordinator(client, kafka._subscription, group_id="g")
        coordinator.coordinator_id = 3
        try:
            await coordinator._send_req(HeartbeatRequest("g", 1, "m"))
            await coordinator._send_req(OffsetCommitRequest("g", 1, "m", -1, []))
        finally:
            await coordinator.close()
            client._conns.clear()  # the stand-ins have nothing to close
            await kafka.stop()
        return used

    sent = asyncio.get_event_loop().run_until_complete(requests_sent())
    assert sent == [(3, ConnectionGroup.COORDINATION, "HeartbeatRequest"),
                    (3, COMMIT_CONNECTION, "OffsetCommitRequest")]


def test_faust_s_own_producer_with_the_buffer_drain_when_configured(tmp_path: Path) -> None:
    doc = vconfig.defaults_document()
    doc["kafka"].update(bootstrap_servers="127.0.0.1:1", producer_client="aiokafka")
    app, _ = create_app(vconfig.from_document(doc),
                        WorkerOptions(role="global", region=None, web_port=1, data_dir=tmp_path))
    assert isinstance(app.producer, DrainingProducer)


def test_the_repairs_change_only_the_app_they_are_installed_on() -> None:
    guarded, _ = guarded_app(strict=[TOPIC])
    plain, consumer = faust_app()
    assert type(consumer) is driver.Consumer
    assert type(plain.producer) is driver.Producer
    assert type(guarded.consumer) is not driver.Consumer


# --- the defects, on Faust's own consumer and producer ------------------------------------------


def test_defect_1_faust_commits_past_one_missing_record_at_the_head() -> None:
    _, faust_consumer = faust_app()
    set_committed(faust_consumer, {TP0: 9})
    process(faust_consumer, TP0, [10, 11, 12])
    assert commit(faust_consumer, TP0) == 13  # offset 9 was never processed

    _, guarded = guarded_app(strict=[TOPIC])
    set_committed(guarded, {TP0: 9})
    process(guarded, TP0, [10, 11, 12])
    assert commit(guarded, TP0) is None


def test_defect_1_faust_checks_no_head_before_the_first_commit() -> None:
    _, faust_consumer = faust_app()
    process(faust_consumer, TP0, [3, 4])  # the partition starts at 0
    assert commit(faust_consumer, TP0) == 5


def test_defect_2_faust_commits_offsets_its_fetcher_jumped_over() -> None:
    run = asyncio.get_event_loop().run_until_complete
    for (_, consumer), expected in ((faust_app(), 15), (guarded_app(strict=[TOPIC]), 11)):
        set_committed(consumer, {TP0: 10})
        process(consumer, TP0, [10])
        run(consumer._add_gap(TP0, 11, 14))  # Faust's fetcher read 10, then 14
        process(consumer, TP0, [14])
        assert commit(consumer, TP0) == expected


def test_defect_3_faust_counts_a_record_of_an_earlier_generation_as_processed() -> None:
    for (app, consumer), counted in ((faust_app(), True), (guarded_app(strict=[TOPIC]), False)):
        app.consumer_generation_id = 4
        set_committed(consumer, {TP0: 5})
        # the stream skips a record fetched under generation 3, and acknowledges it
        assert deliver(consumer, TP0, 5, generation=3).ack(consumer) is counted
        assert commit(consumer, TP0) == (6 if counted else None)


class SlowChannel:
    """Where the producer buffer's sender hands a record on: 0.2 s each."""

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(0.2)


def test_defect_4_faust_s_producer_flush_leaves_records_in_its_buffer() -> None:
    async def left_after_flush(producer: Any) -> int:
        buffer = producer.buffer
        await buffer.start()
        try:
            for _ in range(3):
                buffer.put(SimpleNamespace(message=SimpleNamespace(channel=SlowChannel())))
            await producer.flush()
            return buffer.size
        finally:
            await drain_buffer(buffer)  # Faust's buffer refuses to stop with records in it
            await buffer.stop()

    run = asyncio.get_event_loop().run_until_complete
    plain, _ = faust_app()
    assert run(left_after_flush(plain.producer)) > 0
    guarded, _ = guarded_app(strict=[TOPIC])
    assert run(left_after_flush(guarded.producer)) == 0


def test_a_worker_s_stores_take_the_configured_rocksdb_memory(tmp_path: Path) -> None:
    doc = vconfig.defaults_document()
    doc["kafka"].update(bootstrap_servers="127.0.0.1:1")
    doc["rocksdb"] = {"write_buffer_mb": 3, "max_write_buffer_number": 4, "block_cache_mb": 5}
    _, shell = create_app(vconfig.from_document(doc),
                          WorkerOptions(role="global", region=None, web_port=1, data_dir=tmp_path))
    options = shell.table("vehicles").data.rocksdb_options  # the store Faust opens per partition
    assert (options.write_buffer_size, options.max_write_buffer_number,
            options.block_cache_size) == (3 << 20, 4, 5 << 20)


def _tables_store(tmp_path: Path) -> Any:
    doc = vconfig.defaults_document()
    doc["kafka"].update(bootstrap_servers="127.0.0.1:1")
    _, shell = create_app(vconfig.from_document(doc),
                          WorkerOptions(role="global", region=None, web_port=1, data_dir=tmp_path))
    return shell.table("vehicles")


def _collections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr("gc.collect", lambda *a: calls.append(1) or 0)
    return calls


def test_defect_8_faust_s_store_collects_garbage_on_a_rebalance_that_revokes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _tables_store(tmp_path)
    faust_store = faust_rocksdb.Store("rocksdb://", table.app, table, options={})
    calls = _collections(monkeypatch)
    faust_store.revoke_partitions(table, set())
    assert calls == [1]


def test_a_worker_s_store_collects_garbage_only_when_it_lets_a_partition_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _tables_store(tmp_path)
    store = table.data
    assert isinstance(store, repaired_store.Store)  # the tables' stores are the repaired ones
    changelog = table.changelog_topic.get_topic_name()
    store._dbs[3] = object()
    calls = _collections(monkeypatch)
    store.revoke_partitions(table, set())
    store.revoke_partitions(table, {TP("another-topic", 3)})
    assert (calls, list(store._dbs)) == ([], [3])
    store.revoke_partitions(table, {TP(changelog, 3)})
    assert (calls, list(store._dbs)) == ([1], [])


def test_a_worker_s_stores_compact_level_0_at_the_configured_count(tmp_path: Path) -> None:
    doc = vconfig.defaults_document()
    doc["kafka"].update(bootstrap_servers="127.0.0.1:1")
    doc["rocksdb"]["level0_compaction_trigger"] = 12
    _, shell = create_app(vconfig.from_document(doc),
                          WorkerOptions(role="global", region=None, web_port=1, data_dir=tmp_path))
    store = shell.table("vehicles").data
    db = store.rocksdb_options.open(tmp_path / "probe.db")  # as Faust opens each partition
    try:
        assert db.property_int_value("rocksdb.num-files-at-level0") == 0  # a store, opened
        # RocksDB writes the options it runs with beside the data
        written = "\n".join(p.read_text() for p in (tmp_path / "probe.db").glob("OPTIONS-*"))
        assert "level0_file_num_compaction_trigger=12" in written
        assert "level0_slowdown_writes_trigger=20" in written
        assert "level0_stop_writes_trigger=36" in written
    finally:
        db.close()
