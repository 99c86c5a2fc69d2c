"""The owning partition of a key, and the origin a forwarded record carries."""

from __future__ import annotations

import pytest

from vprov.kafka.partitioning import origin_value, owner, parse_origin

# Java's org.apache.kafka.common.utils.Utils.murmur2 on these keys, as signed 32-bit values
# (the vectors Kafka's own client tests use).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key", sorted(JAVA_MURMUR2))
@pytest.mark.parametrize("partitions", [1, 3, 8, 56])
def test_owner_follows_the_java_clients(key: bytes, partitions: int) -> None:
    # Java: Utils.toPositive(murmur2(key)) % numPartitions
    assert owner(key, partitions) == (JAVA_MURMUR2[key] & 0x7FFFFFFF) % partitions


def test_origin_round_trips_topic_names_with_dots_and_colons() -> None:
    for topic in ("provisioning.query", "t1.provisioning.device.NA", "odd:name"):
        assert parse_origin(origin_value(topic, 7, 123456)) == (topic, 7, 123456)


@pytest.mark.parametrize("value", [None, b"", b"topic", b"topic:1", b"topic:x:2", b":1:2",
                                   b"topic:1:-2", "t:1:2x"])
def test_a_malformed_origin_is_ignored(value: bytes | str | None) -> None:
    assert parse_origin(value) is None
