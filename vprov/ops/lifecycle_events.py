"""The lifecycle topic read back: every event on it, de-duplicated, grouped per vehicle.

``vprov status`` shows a vehicle's recent events and ``vprov replay`` audits whole histories;
both read the topic through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_reader import TopicUnreadable, read_topic


class LifecycleUnavailable(RuntimeError):
    pass


def read_lifecycle(config: Config, vins: Iterable[str] | None = None,
                   since_ms: int | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every lifecycle event on the topic now (for ``vins`` only, when given), in topic order.

    Reads up to the end offsets taken when it starts; with ``vins`` only their partitions.
    ``since_ms``: start each partition at the first record at or after that time.
    """
    topic = Catalogue(config).lifecycle
    keys = [v.encode() for v in vins] if vins is not None else None
    try:
        records = read_topic(config, topic, "LifecycleEvent", keys, since_ms, timeout)
    except TopicUnreadable as exc:
        raise LifecycleUnavailable(str(exc)) from None
    return [r.value if r.value is not None else
            {"undecodable": f"{r.topic}:{r.partition}:{r.offset}"} for r in records]


def dedupe(events: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Events with the first copy of each ``event_id``, and how many repeats were dropped."""
    seen: set[str] = set()
    unique = []
    repeats = 0
    for e in events:
        if "event_id" not in e:  # an undecodable record, reported on its own
            continue
        if e["event_id"] in seen:
            repeats += 1
            continue
        seen.add(e["event_id"])
        unique.append(e)
    return unique, repeats


def histories(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per VIN, its events ordered by ``sequence`` (topic order among equal sequences)."""
    by_vin: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_vin.setdefault(e["vin"], []).append(e)
    for items in by_vin.values():
        items.sort(key=lambda e: e["sequence"])
    return dict(sorted(by_vin.items()))
