"""The one percentile definition of the simulator and the benchmark."""

from __future__ import annotations

import math

from vprov.sim.latency import percentile, summary_ms


def test_percentile_is_nearest_rank_and_nan_without_values() -> None:
    values = [0.001 * v for v in range(100, 0, -1)]  # 100..1 ms
    assert (percentile(values, 50), percentile(values, 95)) == (values[50], values[5])
    assert percentile(values, 100) == values[0]
    assert percentile([0.5], 99) == 0.5
    assert math.isnan(percentile([], 50))


def test_summary_is_in_milliseconds_and_empty_stands_for_no_values() -> None:
    assert summary_ms([0.0101, 0.0202], digits=1) == {"p50": 10.1, "p95": 20.2, "p99": 20.2,
                                                     "max": 20.2, "count": 2}
    nothing = summary_ms([])
    assert nothing["count"] == 0
    assert all(math.isnan(nothing[k]) for k in ("p50", "p95", "p99", "max"))
    assert summary_ms([], empty=0.0) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0,
                                         "count": 0}


def test_split_at_parts_the_first_seconds_from_the_rest_counted_from_the_first_sent() -> None:
    from vprov.sim.latency import split_at

    timeline = [(105.0, 3.0), (100.0, 5.0), (109.9, 0.2), (110.0, 0.1), (130.0, 0.05)]
    assert split_at(timeline, 10.0) == ([3.0, 5.0, 0.2], [0.1, 0.05])
    assert split_at([], 10.0) == ([], [])
