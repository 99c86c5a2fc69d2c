"""What the bulk restore (streams/repairs/bulk_restore.py) reads for each table partition."""

from __future__ import annotations

import pytest

from streams.repairs import bulk_restore


@pytest.mark.parametrize(("applied", "bounds", "expected"), [
    (None, (0, 50), [(0, 50)]),  # an empty disk: the whole changelog
    (29, (0, 50), [(30, 50)]),  # behind: what it has not applied
    (49, (0, 50), []),  # up to date
    (None, (40, 50), [(40, 50)]),  # the log starts later (retention): from its start
    (10, (40, 50), [(40, 50)]),
    (None, (0, 5), []),  # below the threshold: Faust's recovery
])
def test_plan(applied: int | None, bounds: tuple[int, int],
              expected: list[tuple[int, int]]) -> None:
    ranges = bulk_restore.plan({("t", 0): applied}, {("t", 0): bounds}, {"t": "t-changelog"},
                               min_records=10)
    assert [(r.start, r.end) for r in ranges] == expected
    assert all(r.topic == "t-changelog" for r in ranges)


def test_restored_rate_is_records_over_seconds() -> None:
    assert bulk_restore.Restored(1, 5000, 0.5).records_per_second == 10000.0
    assert bulk_restore.Restored(0, 0, 0.0).records_per_second == 0.0


def test_partitions_count_together_against_the_threshold() -> None:
    """Many partitions a little behind are as slow for Faust as one far behind."""
    bounds = {("t", p): (0, 4) for p in range(3)}
    persisted: dict[tuple[str, int], int | None] = {("t", 0): 3, ("t", 1): None, ("t", 2): 1}
    ranges = bulk_restore.plan(persisted, bounds, {"t": "t-changelog"}, min_records=6)
    assert [(r.partition, r.start, r.end) for r in ranges] == [(1, 0, 4), (2, 2, 4)]
    assert bulk_restore.plan(persisted, bounds, {"t": "t-changelog"}, min_records=7) == []
