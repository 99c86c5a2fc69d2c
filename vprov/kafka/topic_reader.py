"""Read an Avro topic of the processor from its start (or a time) to the end it has now."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from vprov.config import Config
from vprov.kafka.avro import serde_from_config
from vprov.kafka.clients import consumer
from vprov.kafka.partitioning import owner


class TopicUnreadable(RuntimeError):
    pass


@dataclass(frozen=True)
class Read:
    """One record as read: its coordinates, key, raw value, and the decoded Avro value (None
    when it does not decode: a foreign record)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    raw: bytes
    value: dict[str, Any] | None


def read_topic(config: Config, topic: str, record: str, keys: Iterable[bytes] | None = None,
               since_ms: int | None = None, timeout: float = 30.0) -> list[Read]:
    """Every record of ``topic`` now (with one of ``keys`` only, when given: then only their
    partitions are read), in topic order per partition. Reads up to the end offsets taken when
    it starts; ``since_ms``: each partition from its first record at or after that time."""
    serde = serde_from_config(config)
    wanted = set(keys) if keys is not None else None
    reader = consumer(config, None, **{"enable.partition.eof": False})
    try:
        meta = reader.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise TopicUnreadable(f"topic {topic} is not readable "
                                  f"({meta.error if meta else 'missing'})")
        count = len(meta.partitions)
        partitions = sorted(meta.partitions)
        if wanted is not None:
            partitions = sorted({owner(k, count) for k in wanted})
        ends: dict[int, int] = {}
        starts: dict[int, int] = {}
        for p in partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            ends[p], starts[p] = high, low
        if since_ms is not None:
            found = reader.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout)
            for tp in found:
                # -1: nothing at or after that time in this partition
                starts[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition]
        todo = {p for p in partitions if starts[p] < ends[p]}
        reader.assign([TopicPartition(topic, p, starts[p]) for p in sorted(todo)])
        found_records: list[Read] = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.2):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise TopicUnreadable(f"reading {topic}: {error}")
                    continue
                p, offset, raw = msg.partition(), msg.offset(), msg.value()
                if p is None or offset is None:  # only error events lack them
                    continue
                if offset >= ends[p] - 1:
                    todo.discard(p)
                if offset >= ends[p] or raw is None:
                    continue
                if wanted is not None and msg.key() not in wanted:
                    continue
                try:
                    value = serde.decode(record, raw, topic=topic)
                except Exception:  # noqa: BLE001 - a foreign record must not stop the reader
                    value = None
                found_records.append(Read(topic, p, offset, msg.timestamp()[1], msg.key(), raw,
                                          value))
        if todo:
            raise TopicUnreadable(f"reading {topic} did not reach its end within {timeout:g}s")
        return found_records
    finally:
        reader.close()
