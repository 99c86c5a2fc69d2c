"""The commit rules of streams/repairs/commit_guard.py, on a real consumer of a real Faust app (no
broker): records are acknowledged the way a stream does, and the offset to commit is asked of
Faust's own commit selection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from faust.types import TP

from streams.repairs.commit_guard import DrainingProducer, committable, drain_buffer
from streams.repairs.offset_probe import END, UNKNOWN, absent_before
from tests.unit.guardkit import (
    commit,
    commit_offset,
    deliver,
    event_loop,
    guarded_app,
    process,
    set_committed,
)

STRICT = TP("test.commit-guard.strict", 0)
OTHER = TP("test.commit-guard.other", 0)
INDEX = TP("test.commit-guard.index", 0)  # compacted


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with event_loop() as loop:
        yield loop


def test_an_unbroken_run_from_the_head_is_committed_to_its_end() -> None:
    # the run stays acknowledged until the commit is recorded (test_commit_guard_in_flight.py)
    assert committable([12, 10, 11], 10) == (13, [])


def test_the_commit_stops_at_the_first_hole() -> None:
    assert committable([10, 11, 13, 14], 10) == (12, [])


def test_a_single_missing_record_at_the_head_is_never_committed_past() -> None:
    # Faust's own rule commits 13 here, losing offset 9 (faust-streaming issue #606)
    assert committable([10, 11, 12], 9) == (None, [])


def test_nothing_is_committed_while_the_head_is_unknown() -> None:
    assert committable([0, 1, 2], None) == (None, [])


def test_offsets_below_the_head_are_forgotten_and_the_run_still_counts() -> None:
    assert committable([3, 4, 5, 6], 5) == (7, [3, 4])
    assert committable([3, 4, 7], 5) == (None, [3, 4])


def test_a_protected_topic_is_committed_only_from_its_head() -> None:
    _, consumer = guarded_app(strict=[STRICT.topic])
    set_committed(consumer, {STRICT: 9})
    process(consumer, STRICT, [10, 11, 12])
    assert commit(consumer, STRICT) is None
    process(consumer, STRICT, [9])
    assert commit(consumer, STRICT) == 13
    assert consumer.acked_offsets(STRICT) == []


def test_offsets_the_fetcher_jumped_over_stay_uncommitted_on_a_protected_topic() -> None:
    _, consumer = guarded_app(strict=[STRICT.topic])
    set_committed(consumer, {STRICT: 10})
    process(consumer, STRICT, [10])
    # Faust's fetcher read 10, then 14: it records 11..13 as a gap
    asyncio.get_event_loop().run_until_complete(consumer._add_gap(STRICT, 11, 14))
    process(consumer, STRICT, [14])
    assert commit(consumer, STRICT) == 11


def test_a_never_committed_partition_starts_at_its_log_start() -> None:
    _, consumer = guarded_app(strict=[STRICT.topic])
    consumer.origins[STRICT] = 0
    process(consumer, STRICT, [1, 2])
    assert commit(consumer, STRICT) is None
    process(consumer, STRICT, [0])
    assert commit(consumer, STRICT) == 3


def test_other_topics_keep_faust_s_rule_for_compaction_holes() -> None:
    # compaction removed offset 9: Faust's rule moves on, as it must there
    _, consumer = guarded_app(strict=[STRICT.topic], unguarded=[OTHER.topic])
    set_committed(consumer, {OTHER: 9})
    process(consumer, OTHER, [10, 11])
    assert commit(consumer, OTHER) == 12


# The origin is forgotten once Faust records the first commit, not when the commit is selected:
# test_commit_guard_in_flight.py drives Faust's own commit for it.


def test_the_guard_state_belongs_to_one_consumer() -> None:
    _, first = guarded_app(strict=[STRICT.topic])
    _, second = guarded_app(unguarded=[STRICT.topic])
    first.origins[STRICT] = 0
    assert second.head(STRICT) is None
    set_committed(second, {STRICT: 9})
    process(second, STRICT, [10])
    assert commit(second, STRICT) == 11  # Faust's rule: the second app does not guard it


def test_a_record_fetched_before_the_rebalance_is_not_counted_as_processed() -> None:
    # Faust's stream skips such a record and acknowledges it: it must stay a hole
    app, consumer = guarded_app(strict=[STRICT.topic])
    app.consumer_generation_id = 4
    set_committed(consumer, {STRICT: 5})
    stale = deliver(consumer, STRICT, 5, generation=3)
    assert stale.ack(consumer) is False
    assert stale.acked and stale not in consumer.in_flight()
    assert consumer.acked_offsets(STRICT) == []
    assert commit(consumer, STRICT) is None


def test_a_record_acknowledged_while_the_flow_is_stopped_is_not_counted() -> None:
    app, consumer = guarded_app(strict=[STRICT.topic])
    set_committed(consumer, {STRICT: 5})
    app.flow_control.suspend()
    assert deliver(consumer, STRICT, 5).ack(consumer) is False
    assert consumer.acked_offsets(STRICT) == []


def test_a_record_processed_in_the_current_generation_counts() -> None:
    app, consumer = guarded_app(strict=[STRICT.topic])
    app.consumer_generation_id = 4
    set_committed(consumer, {STRICT: 5})
    assert deliver(consumer, STRICT, 5, generation=4).ack(consumer) is True
    assert consumer.acked_offsets(STRICT) == [5]
    assert commit(consumer, STRICT) == 6


# --- compacted topics (the registration index) -------------------------------------------------


def test_on_a_compacted_topic_offsets_the_fetcher_jumped_over_count_as_processed() -> None:
    # read 10, then 14 (11..13 compacted away): Faust records the gap [11, 15), which ends
    # with the record 14 itself; 14 counts only once it is acknowledged
    _, consumer = guarded_app(compacted=[INDEX.topic])
    set_committed(consumer, {INDEX: 10})
    process(consumer, INDEX, [10])
    asyncio.get_event_loop().run_until_complete(consumer._add_gap(INDEX, 11, 14))
    assert commit(consumer, INDEX) == 14
    assert commit(consumer, INDEX) is None
    process(consumer, INDEX, [14])
    assert commit(consumer, INDEX) == 15


def test_on_a_compacted_topic_a_hole_at_the_head_is_held_until_the_broker_says() -> None:
    # Faust's rule would commit 13 here whether offset 9 was compacted away or dropped
    _, consumer = guarded_app(compacted=[INDEX.topic])
    set_committed(consumer, {INDEX: 9})
    process(consumer, INDEX, [10, 11, 12])
    assert commit(consumer, INDEX) is None
    # the broker's next record at or after 9 is 10: offset 9 is gone
    absent = absent_before(9, 10, end=13)
    assert absent == range(9, 10)
    consumer.add_processed(INDEX, absent)
    assert commit(consumer, INDEX) == 13


def test_a_record_at_the_head_is_a_drop_not_a_compaction_hole() -> None:
    assert absent_before(9, 9, end=13) is None
    assert absent_before(9, UNKNOWN, end=13) is None


def test_no_record_left_after_the_head_means_the_rest_was_compacted_away() -> None:
    assert absent_before(9, END, end=13) == range(9, 13)


def test_on_a_compacted_topic_a_stale_acknowledgement_is_not_counted_either() -> None:
    app, consumer = guarded_app(compacted=[INDEX.topic])
    app.consumer_generation_id = 4
    set_committed(consumer, {INDEX: 5})
    assert deliver(consumer, INDEX, 5, generation=3).ack(consumer) is False
    assert consumer.acked_offsets(INDEX) == []


# --- the producer buffer's flush before a commit ----------------------------------------------


class SlowBuffer:
    """A producer buffer whose sender hands one record on every 0.25 s."""

    def __init__(self, records: int) -> None:
        self.pending = records
        self.state = "running"
        self.message_sent = asyncio.Event()

    @property
    def size(self) -> int:
        return self.pending

    async def send_slowly(self) -> None:
        while self.pending:
            await asyncio.sleep(0.25)
            self.pending -= 1
            self.message_sent.set()


def test_faust_s_own_flush_returns_with_records_still_in_the_buffer() -> None:
    from faust.transport.producer import ProducerBuffer

    async def run() -> int:
        buffer = SlowBuffer(3)
        sender = asyncio.ensure_future(buffer.send_slowly())
        await ProducerBuffer.flush_atmost(buffer, None)  # type: ignore[arg-type]
        left = buffer.size
        await sender
        return left

    assert asyncio.run(run()) == 3  # the defect the repair exists for


def test_the_flush_before_a_commit_waits_until_the_buffer_is_empty() -> None:
    async def run() -> int:
        buffer = SlowBuffer(3)
        sender = asyncio.ensure_future(buffer.send_slowly())
        await drain_buffer(buffer)  # type: ignore[arg-type]
        await sender
        return buffer.size

    assert asyncio.run(run()) == 0


def test_the_flush_fails_when_the_buffer_stopped_with_records_in_it() -> None:
    buffer = SlowBuffer(2)
    buffer.state = "stopping"
    with pytest.raises(RuntimeError):
        asyncio.run(drain_buffer(buffer))  # type: ignore[arg-type]


def test_the_app_s_producer_is_the_draining_one() -> None:
    app, _ = guarded_app(strict=[STRICT.topic])
    assert isinstance(app.producer, DrainingProducer)


def test_a_head_still_carried_out_holds_the_commit_and_is_not_reported_as_a_hole(
        caplog: pytest.LogCaptureFixture) -> None:
    # an agent carries out several records at once (streams/in_flight.py): later records of
    # the partition may be done while the head is still under way
    _, consumer = guarded_app(strict=[STRICT.topic])
    set_committed(consumer, {STRICT: 10})
    head = deliver(consumer, STRICT, 10)
    process(consumer, STRICT, [11, 12])
    with caplog.at_level("WARNING"):
        assert commit_offset(consumer, STRICT) is None
    assert "were not processed" not in caplog.text
    head.ack(consumer)
    assert commit_offset(consumer, STRICT) == 13


def test_a_head_nobody_holds_behind_acknowledged_records_is_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    _, consumer = guarded_app(strict=[STRICT.topic])
    set_committed(consumer, {STRICT: 10})
    process(consumer, STRICT, [11, 12])
    with caplog.at_level("WARNING"):
        assert commit_offset(consumer, STRICT) is None
    assert "offsets 10..10 were not processed but later ones were" in caplog.text
