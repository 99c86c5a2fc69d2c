"""What the bulk restore (streams/bulk_restore.py) reads for each table partition."""

from __future__ import annotations

import pytest

from streams import bulk_restore


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
