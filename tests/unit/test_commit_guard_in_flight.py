"""A commit under way, on a real guarded consumer driven through Faust's own commit
(``Consumer.commit``) with a broker that takes its time to answer, and the watchdog's view of it.

Faust selects the offsets to commit, awaits the producer flush and the broker's answer, and only
then records the committed offsets. The first commits on a new cluster took over a second: the
watchdog must not take the records such a commit covers for records that stopped (it sought every
partition back to its old committed offset and the records were processed twice), nor must the
consumer's seeks race the consumer thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from faust.types import TP

from streams.repairs.commit_guard import GuardedConsumer
from streams.repairs.watchdog import check_partitions
from tests.unit.guardkit import event_loop, guarded_app, process, set_committed

P0 = TP("provisioning.query", 0)
INDEX = TP("registration.devices", 0)  # compacted


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with event_loop() as loop:
        yield loop
        # a commit a failing test left waiting for the broker
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


class SlowBroker:
    """The broker as the consumer sees it: ``tps`` assigned, ``ends`` their end offsets, and
    offset commits answered only once ``answer`` is set; seeks are recorded, not made."""

    def __init__(self, consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch,
                 ends: dict[TP, int]) -> None:
        self.ends = ends
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()  # a commit reached the broker
        self.sought: list[tuple[TP, int]] = []
        monkeypatch.setattr(consumer, "assignment", lambda: set(ends))
        monkeypatch.setattr(consumer, "highwaters", self.highwaters)
        monkeypatch.setattr(consumer, "seek", self.seek)
        monkeypatch.setattr(consumer, "_commit", self.commit)
        monkeypatch.setattr(consumer.app.producer, "flush", self.flush)

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in partitions}

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))

    async def flush(self) -> None:
        pass

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        self.asked.set()
        await self.answer.wait()
        return True


def run(awaitable: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(awaitable)


def start_commit(consumer: GuardedConsumer, broker: SlowBroker) -> asyncio.Future[bool]:
    """Faust's timer commit, left waiting for the broker's answer."""
    committing = asyncio.ensure_future(consumer.commit())
    run(broker.asked.wait())
    return committing


def check(consumer: GuardedConsumer, suspects: dict[TP, int], times: int = 1) -> None:
    for _ in range(times):
        run(check_partitions(consumer, {P0.topic}, set(), None, suspects))


@pytest.fixture
def consumer() -> GuardedConsumer:
    return guarded_app(strict=[P0.topic])[1]


def test_the_offsets_of_a_commit_under_way_stay_acknowledged_until_it_is_recorded(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = SlowBroker(consumer, monkeypatch, {P0: 20})
    set_committed(consumer, {P0: 3})
    process(consumer, P0, range(3, 12))
    committing = start_commit(consumer, broker)
    process(consumer, P0, [12, 13])
    assert consumer.head(P0) == 3
    assert consumer.acked_offsets(P0) == list(range(3, 14))
    broker.answer.set()
    assert run(committing) is True
    assert consumer.head(P0) == 12
    assert consumer.acked_offsets(P0) == [12, 13]
    # the next commit forgets the offsets the first one covered, and moves on from 12
    assert run(consumer.commit()) is True
    assert consumer.head(P0) == 14 and consumer.acked_offsets(P0) == []


def test_a_first_commit_under_way_keeps_the_log_start_as_the_head(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = SlowBroker(consumer, monkeypatch, {P0: 20})
    consumer.origins[P0] = 0  # never committed: the consumer started at the log start
    process(consumer, P0, range(0, 6))
    committing = start_commit(consumer, broker)
    assert consumer.head(P0) == 0 and consumer.acked_offsets(P0) == list(range(6))
    broker.answer.set()
    run(committing)
    assert consumer.head(P0) == 6 and P0 not in consumer.origins
    # later a rebalance clears Faust's committed offsets: the old origin does not come back
    consumer._committed_offset.pop(P0)
    assert consumer.head(P0) is None


def test_a_commit_that_fails_keeps_its_offsets_for_the_next_one(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    SlowBroker(consumer, monkeypatch, {P0: 20})

    async def broken(offsets: Mapping[TP, int]) -> bool:
        raise ConnectionError("coordinator gone")

    monkeypatch.setattr(consumer, "_commit", broken)
    set_committed(consumer, {P0: 3})
    process(consumer, P0, [3, 4])
    with pytest.raises(ConnectionError):
        run(consumer.commit())
    assert consumer.head(P0) == 3 and consumer.acked_offsets(P0) == [3, 4]


# --- the watchdog meanwhile --------------------------------------------------------------------


def test_records_processed_while_a_commit_is_under_way_are_not_a_dropped_head(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fresh cluster's first commits: 3..11 committing, 12 and 13 processed meanwhile.
    Before the guard kept the committing offsets, the watchdog saw 12 acknowledged past an
    unacknowledged head 3 and sought back to 3 at once."""
    broker = SlowBroker(consumer, monkeypatch, {P0: 20})
    set_committed(consumer, {P0: 3})
    process(consumer, P0, range(3, 12))
    committing = start_commit(consumer, broker)
    process(consumer, P0, [12, 13])
    check(consumer, {}, times=3)
    assert broker.sought == []
    broker.answer.set()
    run(committing)


def test_a_commit_under_way_for_two_checks_is_not_a_stall(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record processed, their commit waiting for the broker for longer than two checks:
    records wait past the old committed offset and the agent holds nothing, yet nothing
    stopped."""
    broker = SlowBroker(consumer, monkeypatch, {P0: 12})
    set_committed(consumer, {P0: 3})
    process(consumer, P0, range(3, 12))
    committing = start_commit(consumer, broker)
    check(consumer, {}, times=3)
    assert broker.sought == []
    broker.answer.set()
    run(committing)
    check(consumer, {}, times=2)
    assert broker.sought == []


def test_a_first_commit_under_way_is_not_a_stall(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = SlowBroker(consumer, monkeypatch, {P0: 9})
    consumer.origins[P0] = 0
    process(consumer, P0, range(0, 9))
    committing = start_commit(consumer, broker)
    check(consumer, {}, times=3)
    assert broker.sought == []
    broker.answer.set()
    run(committing)


def test_a_commit_recorded_while_the_check_awaits_the_broker_is_not_sought_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a compacted topic the check asks the broker where the next record is: a commit
    recorded meanwhile moved the head, and seeking to the old one reads processed records
    again."""
    _, consumer = guarded_app(compacted=[INDEX.topic])
    broker = SlowBroker(consumer, monkeypatch, {INDEX: 40})
    set_committed(consumer, {INDEX: 10})

    class Probe:
        async def next_offset_async(self, topic: str, partition: int, offset: int) -> int:
            set_committed(consumer, {INDEX: 25})  # the timer commit was recorded meanwhile
            return offset  # a record at the old head

    run(check_partitions(consumer, {INDEX.topic}, {INDEX.topic}, Probe(),  # type: ignore[arg-type]
                         {INDEX: 10}))
    assert broker.sought == []
