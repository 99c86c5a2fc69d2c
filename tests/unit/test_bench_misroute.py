"""The benchmark's misrouted records: never on the owner partition, and the share holds."""

from __future__ import annotations

import pytest

from bench import misroute
from vprov.kafka.partitioning import owner

VINS = [f"VBENCH{index:011d}".encode() for index in range(1, 400)]


@pytest.mark.parametrize("partitions", [2, 3, 8, 56])
def test_the_partition_is_never_the_owner(partitions: int) -> None:
    seen = set()
    for index, key in enumerate(VINS, start=1):
        chosen = misroute.wrong_partition(key, index, partitions)
        assert 0 <= chosen < partitions
        assert chosen != owner(key, partitions)
        seen.add(chosen)
    assert seen == set(range(partitions))  # spread over the partitions, not one hot spot


def test_one_partition_has_no_wrong_partition() -> None:
    with pytest.raises(ValueError):
        misroute.wrong_partition(b"VIN", 1, 1)


def test_share_zero_picks_none_and_share_one_picks_all() -> None:
    indexes = range(1, 5001)
    assert not any(misroute.is_misrouted(i, 0.0) for i in indexes)
    assert all(misroute.is_misrouted(i, 1.0) for i in indexes)


def test_a_share_picks_about_that_share_repeatably_and_nested() -> None:
    indexes = range(1, 20001)
    half = [i for i in indexes if misroute.is_misrouted(i, 0.5)]
    assert abs(len(half) / len(indexes) - 0.5) < 0.02
    assert half == [i for i in indexes if misroute.is_misrouted(i, 0.5)]
    # a vehicle misrouted at one share is misrouted at every higher one
    assert set(half) <= {i for i in indexes if misroute.is_misrouted(i, 0.75)}
