"""confluent-kafka clients for the command-line tools (register, simulate, replay, status).

Producers use the murmur2 partitioner, the same as the Java clients and the workers, so a record
keyed by VIN lands on the partition that holds that VIN's state. librdkafka's log lines go
through Python logging, de-duplicated (``vprov.kafka_log``; shown by ``vprov -v``).
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer

from vprov.kafka_log import librdkafka_logger


def producer(bootstrap_servers: str, **overrides: object) -> Producer:
    settings = {
        "bootstrap.servers": bootstrap_servers,
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


def consumer(bootstrap_servers: str, group_id: str | None = None, **overrides: object) -> Consumer:
    """A consumer reading from the start; without a group id, a throw-away group that commits
    nothing (readers of audit topics must not disturb anyone's offsets)."""
    settings = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id or f"vprov-reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": group_id is not None,
        "enable.partition.eof": True,
        "logger": librdkafka_logger(),
    }
    settings.update(overrides)
    return Consumer(settings)
