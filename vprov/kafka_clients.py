"""confluent-kafka clients for the command-line tools (register, simulate, replay, status).

They take the configuration (or a bare bootstrap address): ``vprov.kafka_settings`` adds the
TLS and SASL settings.

Producers use the murmur2 partitioner, the same as the Java clients and the workers, so a record
keyed by VIN lands on the partition that holds that VIN's state. librdkafka's log lines go
through Python logging, de-duplicated (``vprov.kafka_log``; shown by ``vprov -v``).
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer

from vprov.kafka_log import librdkafka_logger
from vprov.kafka_settings import KafkaAccess, librdkafka


def producer(kafka: KafkaAccess | str, **overrides: object) -> Producer:
    settings = {
        **librdkafka(kafka),
        "partitioner": "murmur2_random",
        "linger.ms": 2,
        "enable.idempotence": True,
        "acks": "all",
        # librdkafka's warnings (a fresh broker still loading its coordinators, and the like)
        # are retried internally; errors are reported through delivery results
        "log_level": 3,
        "logger": librdkafka_logger(),
    }
    settings.update(overrides)
    return Producer(settings)


def consumer(kafka: KafkaAccess | str, group_id: str | None = None, **overrides: object
             ) -> Consumer:
    """A consumer reading from the start; without a group id, a throw-away group that commits
    nothing (readers of audit topics must not disturb anyone's offsets)."""
    settings = {
        **librdkafka(kafka),
        "group.id": group_id or f"vprov-reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": group_id is not None,
        "enable.partition.eof": True,
        "logger": librdkafka_logger(),
    }
    settings.update(overrides)
    return Consumer(settings)
