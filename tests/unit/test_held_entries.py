"""HeldEntries: which partitions an in-place hop may read, asked of the consumer once per
rebalance and never kept from a read a rebalance overlapped."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.agents import HeldEntries
from vprov.kafka.partitioning import owner

PARTITIONS = 8
TOPIC = "vprov.global.query-by-system"


class Consumer:
    def __init__(self, app: FakeApp, partitions: set[TP]) -> None:
        self.app = app
        self.partitions = partitions
        self.asked = 0
        self.during_read: Any = None  # what a rebalance does while the set is being read

    def assignment(self) -> set[TP]:
        self.asked += 1
        if self.during_read is not None:
            self.during_read()
            self.during_read = None
        return set(self.partitions)


class FakeApp:
    def __init__(self, partitions: set[TP]) -> None:
        self.rebalancing = False
        self.rebalancing_count = 1
        self.consumer = Consumer(self, partitions)

    def rebalance(self, partitions: set[TP]) -> None:
        self.rebalancing_count += 1
        self.consumer.partitions = partitions


def held_entries(app: FakeApp) -> HeldEntries:
    shell = SimpleNamespace(config=SimpleNamespace(partitions=PARTITIONS))
    return HeldEntries(app, shell, {})  # type: ignore[arg-type]


def key_in(partition: int) -> str:
    return next(k for k in (f"system-{n}" for n in range(1000))
                if owner(k.encode("utf-8"), PARTITIONS) == partition)


def test_the_consumer_is_asked_once_between_rebalances() -> None:
    app = FakeApp({TP(TOPIC, 0), TP(TOPIC, 1)})
    entries = held_entries(app)
    for _ in range(5):
        assert entries.assignment() == {TP(TOPIC, 0), TP(TOPIC, 1)}
    assert app.consumer.asked == 1


def test_a_rebalance_takes_the_new_assignment() -> None:
    app = FakeApp({TP(TOPIC, 0), TP(TOPIC, 1)})
    entries = held_entries(app)
    assert entries.held("systems", TOPIC, key_in(3)) == (False, None)
    app.rebalance({TP(TOPIC, 0)})
    assert entries.assignment() == {TP(TOPIC, 0)}
    assert app.consumer.asked == 2
    assert entries.held("systems", TOPIC, key_in(1)) == (False, None)  # revoked: not read


def test_nothing_is_held_while_a_rebalance_runs() -> None:
    app = FakeApp({TP(TOPIC, 2)})
    entries = held_entries(app)
    app.rebalancing = True
    assert entries.held("systems", TOPIC, key_in(2)) == (False, None)
    assert app.consumer.asked == 0


def test_a_set_read_while_a_rebalance_began_is_not_kept() -> None:
    app = FakeApp({TP(TOPIC, 0), TP(TOPIC, 1)})
    entries = held_entries(app)

    def rebalance_begins() -> None:
        app.rebalancing_count += 1
        app.rebalancing = True

    app.consumer.during_read = rebalance_begins
    entries.assignment()
    app.rebalancing = False
    app.consumer.partitions = {TP(TOPIC, 1)}  # the rebalance's outcome, same count
    assert entries.assignment() == {TP(TOPIC, 1)}
    assert app.consumer.asked == 2
