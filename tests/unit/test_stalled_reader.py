"""When the fleet's answer reader counts as stopped (``vprov.kafka.clients.stalled``)."""

from __future__ import annotations

from vprov.kafka.clients import stalled

A, B = ("answers", 0), ("answers", 1)


def test_a_partition_that_did_not_move_while_records_wait_is_stalled() -> None:
    assert stalled({A: 5, B: 9}, {A: 5, B: 12}, {A: 8})


def test_a_partition_that_moved_since_the_last_look_is_not() -> None:
    assert not stalled({A: 5}, {A: 6}, {A: 8})


def test_a_partition_at_its_end_is_not() -> None:
    assert not stalled({A: 5}, {A: 5}, {A: 5})


def test_the_first_look_decides_nothing() -> None:
    assert not stalled({}, {A: 5}, {A: 8})
