"""The worker's producer on the real broker: records no answer waits for go through a second,
batching client, and the flush Faust runs before every offset commit delivers what both hold."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from confluent_kafka import KafkaException, TopicPartition

from streams.app import WorkerOptions, create_app
from streams.repairs.producer import LibrdkafkaProducer
from tests.integration.harness import (
    BOOTSTRAP,
    delete_topics,
    own_deployment,
    stack_replication,
    wait_until,
)
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import consumer

LINGER_MS = 1000  # far longer than the test takes to send, flush and read the offsets


def end_offsets(topics: list[str]) -> dict[str, int]:
    """How many records ``topics`` hold, read from the broker at once."""
    reader = consumer(BOOTSTRAP, group_id=f"ends-{uuid.uuid4().hex[:8]}")
    try:
        counts = {}
        for topic in topics:
            partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
            counts[topic] = sum(
                reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions)
        return counts
    finally:
        reader.close()


def ready_end_offsets(topics: list[str]) -> dict[str, int]:
    """``end_offsets`` once every partition of new topics has its leader."""
    def read() -> dict[str, int] | None:
        try:
            return end_offsets(topics)
        except KafkaException:
            return None
    return wait_until(read, timeout=30, what=f"the leaders of {topics}")


def test_the_flush_before_a_commit_delivers_what_the_batching_client_holds(tmp_path: Path):
    prefix = f"itprod-{uuid.uuid4().hex[:6]}"
    _, config, bus = own_deployment(
        tmp_path, prefix, kafka={**stack_replication(), "producer_batch_linger_ms": LINGER_MS})
    bus.close()
    cat = Catalogue(config)
    batched, prompt = cat.onboarding("NA"), cat.query_response
    assert batched in cat.batched() and prompt not in cat.batched()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app, _ = create_app(config, WorkerOptions(role="global", region=None, web_port=1,
                                                  data_dir=tmp_path / "data"))
        producer = app.producer
        assert isinstance(producer, LibrdkafkaProducer)

        async def send_and_flush() -> tuple[dict[str, int], dict[str, int]]:
            await producer.start()
            try:
                before = ready_end_offsets([batched, prompt])
                for topic in (batched, prompt):
                    await producer.send(topic, b"VIN-1", b"{}", None, None, None)
                assert producer._client_for(batched) is producer._batched is not None
                await producer.flush()
                return before, end_offsets([batched, prompt])
            finally:
                await producer.stop()

        before, after = loop.run_until_complete(send_and_flush())
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        delete_topics([s.name for s in cat.all()])
    # both records are in Kafka when the flush returns: the batched one did not wait out its
    # linger, so the offsets Faust commits next never cover a record still in the client
    assert {t: after[t] - before[t] for t in after} == {batched: 1, prompt: 1}
