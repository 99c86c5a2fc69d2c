"""Ask the broker where the next record of a partition is, at or after an offset.

On a compacted topic an offset may simply not exist any more: a fetch from it returns the next
record that survived compaction. The watchdog asks before it takes a hole at the head of a
compacted partition for a dropped record (``streams/repairs/commit_guard.py``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from vprov.kafka.librdkafka_log import routed
from vprov.kafka.settings import KafkaAccess, librdkafka

END = -1  # no record at or after the offset, up to the end of the partition
UNKNOWN = -2  # the broker did not answer in time


class OffsetProbe:
    """One group-less consumer, used by one caller at a time (from a worker thread)."""

    def __init__(self, kafka: KafkaAccess | str, timeout: float = 5.0,
                 group_prefix: str = "vprov") -> None:
        self._settings = {
            **librdkafka(kafka),
            # never joins or commits; under the worker's own prefix, which its ACLs allow
            "group.id": f"{group_prefix}-offset-probe-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            **routed(),
        }
        self._timeout = timeout
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def next_offset(self, topic: str, partition: int, offset: int) -> int:
        """The offset of the first record at or after ``offset``; ``END`` or ``UNKNOWN``."""
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._settings)
            consumer = self._consumer
            consumer.assign([TopicPartition(topic, partition, offset)])
            try:
                msg = consumer.poll(self._timeout)
            finally:
                consumer.unassign()
        if msg is None:
            return UNKNOWN
        error = msg.error()
        if error is None:
            found = msg.offset()  # None only for a message that was not consumed
            return UNKNOWN if found is None else found
        return END if error.code() == KafkaError._PARTITION_EOF else UNKNOWN

    async def next_offset_async(self, topic: str, partition: int, offset: int) -> int:
        return await asyncio.to_thread(self.next_offset, topic, partition, offset)

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def absent_before(head: int, next_offset: int, end: int) -> range | None:
    """The offsets from ``head`` that are not there, given the broker's next record after
    ``head`` and the partition's end offset; None when ``head`` is a record (or unknown)."""
    if next_offset == END:
        return range(head, end)
    if next_offset > head:
        return range(head, next_offset)
    return None
