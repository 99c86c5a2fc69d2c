"""Latency percentiles, the one definition the simulator and the benchmark report with."""

from __future__ import annotations

import math
from collections.abc import Sequence

NO_VALUE = math.nan  # a percentile of no samples: NaN, so arithmetic on it stays "no value"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank ``q``-th percentile of ``values``; ``NO_VALUE`` (NaN) when empty."""
    if not values:
        return NO_VALUE
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q / 100) - 1))]


def summary_ms(values: Sequence[float], empty: float = NO_VALUE,
               digits: int | None = None) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (seconds) in milliseconds, and the count. ``empty`` stands
    for each figure when there are no values; ``digits`` rounds."""
    def ms(q: float) -> float:
        value = percentile(values, q)
        if math.isnan(value):
            return empty
        return round(value * 1000, digits) if digits is not None else value * 1000

    return {"p50": ms(50), "p95": ms(95), "p99": ms(99), "max": ms(100), "count": len(values)}


def split_at(timeline: Sequence[tuple[float, float]], seconds: float
             ) -> tuple[list[float], list[float]]:
    """The latencies of ``timeline`` (sent at, latency; both in seconds) sent within
    ``seconds`` of the first one sent, and those sent later: a cold start beside the rest."""
    if not timeline:
        return [], []
    first = min(sent for sent, _ in timeline)
    early = [latency for sent, latency in timeline if sent - first < seconds]
    late = [latency for sent, latency in timeline if sent - first >= seconds]
    return early, late
