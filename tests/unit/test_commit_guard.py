"""The commit rule of streams/commit_guard.py for the non-compacted input topics."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP

from streams import commit_guard
from streams.commit_guard import committable
from streams.offset_probe import END, UNKNOWN, absent_before

STRICT = TP("test.commit-guard.strict", 0)
COMPACTED = TP("test.commit-guard.compacted", 0)


def test_an_unbroken_run_from_the_head_is_committed_to_its_end() -> None:
    assert committable([12, 10, 11], 10) == (13, [10, 11, 12])


def test_the_commit_stops_at_the_first_hole() -> None:
    assert committable([10, 11, 13, 14], 10) == (12, [10, 11])


def test_a_single_missing_record_at_the_head_is_never_committed_past() -> None:
    # Faust's own rule commits 13 here, losing offset 9 (faust-streaming issue #606)
    assert committable([10, 11, 12], 9) == (None, [])


def test_nothing_is_committed_while_the_head_is_unknown() -> None:
    assert committable([0, 1, 2], None) == (None, [])


def test_offsets_below_the_head_are_forgotten_and_the_run_still_counts() -> None:
    assert committable([3, 4, 5, 6], 5) == (7, [3, 4, 5, 6])
    assert committable([3, 4, 7], 5) == (None, [3, 4])


class Offsets:
    """The consumer bookkeeping `_new_offset` reads, without a broker."""

    def __init__(self, committed: dict[TP, Any], acked: dict[TP, list[int]]) -> None:
        self._committed_offset: dict[TP, Any] = defaultdict(lambda: None, committed)
        self._acked = defaultdict(list, acked)
        self._acked_index = defaultdict(set, {tp: set(v) for tp, v in acked.items()})
        self._gap: dict[TP, Any] = defaultdict(list)


def test_a_protected_topic_is_committed_only_from_its_head() -> None:
    commit_guard.protect({STRICT.topic})
    consumer = Offsets({STRICT: 9}, {STRICT: [10, 11, 12]})
    assert Consumer._new_offset(consumer, STRICT) is None  # type: ignore[arg-type]
    consumer._acked[STRICT].append(9)
    consumer._acked_index[STRICT].add(9)
    assert Consumer._new_offset(consumer, STRICT) == 13  # type: ignore[arg-type]
    assert consumer._acked[STRICT] == [] and consumer._acked_index[STRICT] == set()


def test_a_never_committed_partition_starts_at_its_log_start() -> None:
    commit_guard.protect({STRICT.topic})
    commit_guard.origins[STRICT] = 0
    consumer = Offsets({}, {STRICT: [1, 2]})
    assert Consumer._new_offset(consumer, STRICT) is None  # type: ignore[arg-type]
    consumer._acked[STRICT].insert(0, 0)
    assert Consumer._new_offset(consumer, STRICT) == 3  # type: ignore[arg-type]


def test_other_topics_keep_faust_s_rule_for_compaction_holes() -> None:
    # compaction removed offset 9: Faust's rule moves on, as it must there
    consumer = Offsets({COMPACTED: 9}, {COMPACTED: [10, 11]})
    assert Consumer._new_offset(consumer, COMPACTED) == 12  # type: ignore[arg-type]


def test_the_origin_is_forgotten_once_the_partition_is_committed() -> None:
    # later, a rebalance clears Faust's committed offsets: the old origin must not come back
    # as the head (it would report offsets 0..N as a hole and hold the commit there)
    commit_guard.protect({STRICT.topic})
    commit_guard.origins[STRICT] = 0
    consumer = Offsets({}, {STRICT: [0, 1]})
    assert Consumer._new_offset(consumer, STRICT) == 2  # type: ignore[arg-type]
    assert STRICT not in commit_guard.origins
    consumer._acked[STRICT] = [7]
    assert commit_guard.head_of(consumer, STRICT) is None  # type: ignore[arg-type]
    assert Consumer._new_offset(consumer, STRICT) is None  # type: ignore[arg-type]


class Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


class App:
    def __init__(self, generation: int, flowing: bool = True) -> None:
        self.consumer_generation_id = generation
        self.flow_control = Flow(flowing)


def message(tp: TP, offset: int, generation: int) -> Any:
    from faust.types import Message

    return Message(tp.topic, tp.partition, offset, 0.0, 0, [], b"k", b"v", None,
                   generation_id=generation)


def test_a_record_fetched_before_the_rebalance_is_not_counted_as_processed() -> None:
    # Faust's stream skips such a record and acknowledges it: it must stay a hole
    commit_guard.protect({STRICT.topic})
    consumer = Offsets({STRICT: 5}, {})
    consumer.app = App(generation=4)  # type: ignore[attr-defined]
    consumer._unacked_messages = set()  # type: ignore[attr-defined]
    consumer._waiting_for_ack = None  # type: ignore[attr-defined]
    stale = message(STRICT, 5, generation=3)
    consumer._unacked_messages.add(stale)  # type: ignore[attr-defined]
    assert Consumer.ack(consumer, stale) is False  # type: ignore[arg-type]
    assert stale.acked and not consumer._unacked_messages  # type: ignore[attr-defined]
    assert consumer._acked[STRICT] == []


def test_a_record_acknowledged_while_the_flow_is_stopped_is_not_counted() -> None:
    commit_guard.protect({STRICT.topic})
    consumer = Offsets({STRICT: 5}, {})
    consumer.app = App(generation=4, flowing=False)  # type: ignore[attr-defined]
    consumer._unacked_messages = set()  # type: ignore[attr-defined]
    consumer._waiting_for_ack = None  # type: ignore[attr-defined]
    assert Consumer.ack(consumer, message(STRICT, 5, generation=4)) is False  # type: ignore[arg-type]
    assert consumer._acked[STRICT] == []


class Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


def test_a_record_processed_in_the_current_generation_counts() -> None:
    commit_guard.protect({STRICT.topic})
    consumer = Offsets({STRICT: 5}, {})
    consumer.app = App(generation=4)  # type: ignore[attr-defined]
    consumer.app.topics = Topics()  # type: ignore[attr-defined]
    consumer._unacked_messages = set()  # type: ignore[attr-defined]
    consumer._waiting_for_ack = None  # type: ignore[attr-defined]
    consumer._n_acked = 0  # type: ignore[attr-defined]
    assert Consumer.ack(consumer, message(STRICT, 5, generation=4)) is True  # type: ignore[arg-type]
    assert consumer._acked[STRICT] == [5]
    assert Consumer._new_offset(consumer, STRICT) == 6  # type: ignore[arg-type]


# --- compacted topics (the registration index) -------------------------------------------------

INDEX = TP("test.commit-guard.index", 0)


def gaps(*spans: tuple[int, int]) -> Any:
    from intervaltree import IntervalTree

    return IntervalTree.from_tuples(spans)


def test_on_a_compacted_topic_offsets_the_fetcher_jumped_over_count_as_processed() -> None:
    # read 10, then 14 (11..13 compacted away): Faust records the gap [11, 15), which ends
    # with the record 14 itself; 14 counts only once it is acknowledged
    commit_guard.protect(set(), {INDEX.topic})
    consumer = Offsets({INDEX: 10}, {INDEX: [10]})
    consumer._gap[INDEX] = gaps((11, 15))
    assert Consumer._new_offset(consumer, INDEX) == 14  # type: ignore[arg-type]
    consumer._committed_offset[INDEX] = 14  # as Faust records a successful commit
    assert Consumer._new_offset(consumer, INDEX) is None  # type: ignore[arg-type]
    consumer._acked[INDEX].append(14)
    consumer._acked_index[INDEX].add(14)
    assert Consumer._new_offset(consumer, INDEX) == 15  # type: ignore[arg-type]


def test_on_a_compacted_topic_a_hole_at_the_head_is_held_until_the_broker_says() -> None:
    # Faust's rule would commit 13 here whether offset 9 was compacted away or dropped
    commit_guard.protect(set(), {INDEX.topic})
    consumer = Offsets({INDEX: 9}, {INDEX: [10, 11, 12]})
    assert Consumer._new_offset(consumer, INDEX) is None  # type: ignore[arg-type]
    # the broker's next record at or after 9 is 10: offset 9 is gone
    absent = absent_before(9, 10, end=13)
    assert absent == range(9, 10)
    commit_guard.add_processed(consumer, INDEX, absent)  # type: ignore[arg-type]
    assert Consumer._new_offset(consumer, INDEX) == 13  # type: ignore[arg-type]


def test_a_record_at_the_head_is_a_drop_not_a_compaction_hole() -> None:
    assert absent_before(9, 9, end=13) is None
    assert absent_before(9, UNKNOWN, end=13) is None


def test_no_record_left_after_the_head_means_the_rest_was_compacted_away() -> None:
    assert absent_before(9, END, end=13) == range(9, 13)


def test_on_a_compacted_topic_a_stale_acknowledgement_is_not_counted_either() -> None:
    commit_guard.protect(set(), {INDEX.topic})
    consumer = Offsets({INDEX: 5}, {})
    consumer.app = App(generation=4)  # type: ignore[attr-defined]
    consumer._unacked_messages = set()  # type: ignore[attr-defined]
    consumer._waiting_for_ack = None  # type: ignore[attr-defined]
    stale = message(INDEX, 5, generation=3)
    assert Consumer.ack(consumer, stale) is False  # type: ignore[arg-type]
    assert consumer._acked[INDEX] == []


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
        await commit_guard.flush_buffer(buffer)
        await sender
        return buffer.size

    assert asyncio.run(run()) == 0


def test_the_flush_fails_when_the_buffer_stopped_with_records_in_it() -> None:
    buffer = SlowBuffer(2)
    buffer.state = "stopping"
    with pytest.raises(RuntimeError):
        asyncio.run(commit_guard.flush_buffer(buffer))
