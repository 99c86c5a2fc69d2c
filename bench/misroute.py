"""Which of the benchmark's device-facing records are misrouted, and to which partition.

A producer outside the processor may partition keys its own way (librdkafka's CRC32, random);
the ingress forwards such a record once to the partition that owns its key. The load generator
imitates that producer for a share of the vehicles: their PROVISION_QUERY and DEVICE_PROVISION
records go to an explicit partition that is not the owner. Pure functions (no bench imports), so
the unit tests load this file directly.
"""

from __future__ import annotations

import hashlib

from vprov.kafka.partitioning import owner

SEED = b"vprov-bench-misrouted"


def is_misrouted(index: int, share: float) -> bool:
    """Whether vehicle ``index`` sends its records to a wrong partition at ``share``.

    A seeded hash of the index, not a random draw, so a run is repeatable; a vehicle picked at
    one share is picked at every higher share."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    digest = hashlib.blake2b(index.to_bytes(8, "big", signed=True), digest_size=8,
                             key=SEED).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def wrong_partition(key: bytes, index: int, partitions: int) -> int:
    """A partition other than ``key``'s owner, spread over the others by vehicle index."""
    if partitions < 2:
        raise ValueError("a topic with one partition has no wrong partition")
    return (owner(key, partitions) + 1 + index % (partitions - 1)) % partitions
