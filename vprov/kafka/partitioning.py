"""Which partition owns a key: the rule every table and internal topic of the processor follows.

Faust's producer (aiokafka) and the Java clients place a keyed record with murmur2, so the
tables' partitions follow murmur2 too. Producers outside the processor may use another rule
(librdkafka's default is CRC32, some clients pick at random; docs/spec.md 3.7): ``owner`` is what
the ingress agents compare a record's partition with, to forward a misrouted record once to
the partition that owns its key (docs/architecture.md, "Ingress").
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

# The header that carries a forwarded record's original coordinates (topic:partition:offset),
# so its dead letters and answer ids name the record the producer sent.
ORIGIN_HEADER = "vprov-origin"


def owner(key: bytes, partitions: int) -> int:
    """The partition a murmur2 producer picks for ``key`` (Kafka's positive-hash rule)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def origin_value(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}:{partition}:{offset}".encode()


def parse_origin(value: bytes | str | None) -> tuple[str, int, int] | None:
    """(topic, partition, offset) from an origin header; None when absent or malformed."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic or not partition.isdigit() or not rest.isdigit():
        return None
    return topic, int(partition), int(rest)
