"""The stalled-partition check of streams/repairs/watchdog.py, on a real guarded consumer (no
broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from faust.transport.consumer import ConsumerMessage
from faust.types import TP

from streams.repairs.commit_guard import GuardedConsumer
from streams.repairs.watchdog import check_partitions, stalled_partitions
from tests.unit.guardkit import deliver, event_loop, guarded_app, process, set_committed

P0, P1 = TP("provisioning.device.NA", 0), TP("provisioning.device.NA", 1)


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with event_loop() as loop:
        yield loop


@pytest.fixture
def consumer() -> GuardedConsumer:
    return guarded_app(strict=[P0.topic])[1]


def test_messages_past_the_committed_offset_with_nothing_in_flight_is_a_stall(
        consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 17, P1: 11})
    assert stalled_partitions(consumer, {P0: 36, P1: 11}) == {P0: (17, 36)}


def test_caught_up_partition_is_not_stalled(consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 11})
    assert stalled_partitions(consumer, {P0: 11}) == {}


def test_messages_in_flight_are_not_a_stall(consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 17})
    held = deliver(consumer, P0, 17)  # noqa: F841 - the consumer holds messages weakly
    assert stalled_partitions(consumer, {P0: 36}) == {}


def test_a_busy_agent_is_not_a_stall_of_its_other_partitions(consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 17, P1: 3})
    held = deliver(consumer, P1, 3)  # noqa: F841
    assert stalled_partitions(consumer, {P0: 36, P1: 9}) == {}


def test_acknowledged_but_not_yet_committed_is_not_a_stall(consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 17})
    process(consumer, P0, [17, 18])
    assert stalled_partitions(consumer, {P0: 36}) == {}


def test_acknowledged_past_a_hole_is_a_stall(consumer: GuardedConsumer) -> None:
    # 9..19 were dropped, 20..45 processed: the commit can never pass offset 9
    set_committed(consumer, {P0: 9})
    process(consumer, P0, range(20, 46))
    assert stalled_partitions(consumer, {P0: 46}) == {P0: (9, 46)}


def test_one_dropped_record_at_the_head_is_a_stall_even_while_the_agent_is_busy(
        consumer: GuardedConsumer) -> None:
    # offset 9 was dropped, 10.. processed, and traffic keeps the agent busy on partition 1
    set_committed(consumer, {P0: 9})
    process(consumer, P0, [10, 11, 12])
    held = deliver(consumer, P1, 4)  # noqa: F841
    assert stalled_partitions(consumer, {P0: 20, P1: 9}) == {P0: (9, 20)}


def test_a_head_the_agent_still_holds_is_not_a_stall(consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 9})
    held: ConsumerMessage = deliver(consumer, P0, 9)  # noqa: F841
    process(consumer, P0, [10, 11])
    assert stalled_partitions(consumer, {P0: 20}) == {}


def test_paused_partitions_are_left_alone(consumer: GuardedConsumer) -> None:
    set_committed(consumer, {P0: 17})
    consumer.pause_partitions([P0])
    assert stalled_partitions(consumer, {P0: 36}) == {}


def test_a_partition_never_committed_counts_from_the_beginning(
        consumer: GuardedConsumer) -> None:
    # nothing committed yet (Faust keeps None), messages there, nothing in flight
    assert stalled_partitions(consumer, {P1: 9}) == {P1: (0, 9)}
    assert stalled_partitions(consumer, {P1: 0}) == {}


def test_a_never_committed_partition_counts_from_its_log_start(
        consumer: GuardedConsumer) -> None:
    consumer.origins[P1] = 5  # the records before 5 were deleted by retention
    assert stalled_partitions(consumer, {P1: 5}) == {}
    assert stalled_partitions(consumer, {P1: 9}) == {P1: (5, 9)}


def test_a_broker_that_does_not_answer_skips_the_check(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """During a long broker outage the end offsets cannot be read (aiokafka raises
    KafkaTimeoutError after its request timeout): the check logs, forgets its suspects and
    returns, so the timer lives on instead of stopping the worker."""
    from aiokafka.errors import KafkaTimeoutError

    async def no_answer(*partitions: TP) -> dict[TP, int]:
        raise KafkaTimeoutError("Failed to get offsets by times in 90000 ms")

    monkeypatch.setattr(consumer, "assignment", lambda: {P0})
    monkeypatch.setattr(consumer, "highwaters", no_answer)
    set_committed(consumer, {P0: 3})
    suspects: dict[TP, int] = {P0: 3}
    asyncio.get_event_loop().run_until_complete(
        check_partitions(consumer, {P0.topic}, set(), None, suspects))
    assert suspects == {}
    assert "could not read the end offsets of 1 partitions" in caplog.text


def broker_answering(consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch,
                     end: int) -> list[tuple[TP, int]]:
    """P0 assigned, its end offset ``end``; returns the list the consumer's seeks go to."""
    sought: list[tuple[TP, int]] = []

    async def highwaters(*partitions: TP) -> dict[TP, int]:
        return {P0: end}

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    monkeypatch.setattr(consumer, "assignment", lambda: {P0})
    monkeypatch.setattr(consumer, "highwaters", highwaters)
    monkeypatch.setattr(consumer, "seek", seek)
    return sought


def test_a_head_that_stays_put_for_two_checks_is_sought_back(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check with a broker that answers: a stalled head is a suspect at the first
    check and sought back at the second."""
    sought = broker_answering(consumer, monkeypatch, end=9)
    set_committed(consumer, {P0: 3})
    suspects: dict[TP, int] = {}
    run = asyncio.get_event_loop().run_until_complete
    run(check_partitions(consumer, {P0.topic}, set(), None, suspects))
    assert suspects == {P0: 3} and sought == []
    run(check_partitions(consumer, {P0.topic}, set(), None, suspects))
    assert sought == [(P0, 3)]


def test_a_dropped_head_is_sought_back_at_the_first_check(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records past the head processed and the head not held: it was dropped and never comes
    by itself, so the first check seeks back (a failover's stall waits for no second check)."""
    sought = broker_answering(consumer, monkeypatch, end=20)
    set_committed(consumer, {P0: 9})
    process(consumer, P0, [12, 13])
    asyncio.get_event_loop().run_until_complete(
        check_partitions(consumer, {P0.topic}, set(), None, {}))
    assert sought == [(P0, 9)]
