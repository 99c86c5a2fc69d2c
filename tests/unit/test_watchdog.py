"""The stalled-partition check of streams/watchdog.py, on a consumer's bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from streams.watchdog import stalled_partitions

P0, P1 = TP("provisioning.device.NA", 0), TP("provisioning.device.NA", 1)


@dataclass(frozen=True)
class Msg:
    tp: TP
    offset: int = -1
    acked: bool = False


@dataclass
class Bookkeeping:
    _read_offset: dict[TP, Any] = field(default_factory=dict)
    _committed_offset: dict[TP, Any] = field(default_factory=dict)
    _acked: dict[TP, list[int]] = field(default_factory=dict)
    _unacked_messages: set[Any] = field(default_factory=set)
    _paused_partitions: set[TP] = field(default_factory=set)


def test_messages_past_the_committed_offset_with_nothing_in_flight_is_a_stall() -> None:
    consumer = Bookkeeping({P0: 35, P1: 10}, {P0: 17, P1: 11})
    assert stalled_partitions(consumer, {P0: 36, P1: 11}) == {P0: (17, 36)}


def test_caught_up_partition_is_not_stalled() -> None:
    assert stalled_partitions(Bookkeeping({P0: 10}, {P0: 11}), {P0: 11}) == {}


def test_caught_up_right_after_a_seek_is_not_stalled() -> None:
    # after a seek Faust's read offset is the next offset, equal to the committed one
    assert stalled_partitions(Bookkeeping({P0: 12}, {P0: 12}), {P0: 12}) == {}


def test_messages_in_flight_are_not_a_stall() -> None:
    consumer = Bookkeeping({P0: 35}, {P0: 17}, _unacked_messages={Msg(P0)})  # type: ignore[arg-type]
    assert stalled_partitions(consumer, {P0: 36}) == {}


def test_a_busy_agent_is_not_a_stall_of_its_other_partitions() -> None:
    consumer = Bookkeeping({P0: 35}, {P0: 17, P1: 3}, _unacked_messages={Msg(P1)})  # type: ignore[arg-type]
    assert stalled_partitions(consumer, {P0: 36, P1: 9}) == {}


def test_acknowledged_but_not_yet_committed_is_not_a_stall() -> None:
    assert stalled_partitions(Bookkeeping({P0: 35}, {P0: 17}, {P0: [17, 18]}), {P0: 36}) == {}


def test_acknowledged_past_a_hole_is_a_stall() -> None:
    # 9..19 were dropped, 20..45 processed: the commit can never pass offset 9
    consumer = Bookkeeping({P0: 45}, {P0: 9}, {P0: list(range(20, 46))})
    assert stalled_partitions(consumer, {P0: 46}) == {P0: (9, 46)}


def test_one_dropped_record_at_the_head_is_a_stall_even_while_the_agent_is_busy() -> None:
    # offset 9 was dropped, 10.. processed, and traffic keeps the agent busy on partition 1
    consumer = Bookkeeping({P0: 12}, {P0: 9}, {P0: [10, 11, 12]},
                           _unacked_messages={Msg(P1, 4)})  # type: ignore[arg-type]
    assert stalled_partitions(consumer, {P0: 20, P1: 9}) == {P0: (9, 20)}


def test_a_head_the_agent_still_holds_is_not_a_stall() -> None:
    consumer = Bookkeeping({P0: 12}, {P0: 9}, {P0: [10, 11]},
                           _unacked_messages={Msg(P0, 9)})  # type: ignore[arg-type]
    assert stalled_partitions(consumer, {P0: 20}) == {}


def test_paused_partitions_are_left_alone() -> None:
    consumer = Bookkeeping({P0: 35}, {P0: 17}, _paused_partitions={P0})
    assert stalled_partitions(consumer, {P0: 36}) == {}


def test_a_partition_never_committed_counts_from_the_beginning() -> None:
    # nothing committed yet (Faust keeps None), messages there, nothing in flight
    assert stalled_partitions(Bookkeeping({P1: 5}, {}), {P1: 9}) == {P1: (0, 9)}
    assert stalled_partitions(Bookkeeping({}, {P1: None}), {P1: 0}) == {}
