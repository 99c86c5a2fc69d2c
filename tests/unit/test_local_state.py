"""Which local table partitions disagree with their changelog (streams/repairs/local_state.py)."""

from __future__ import annotations

from streams.repairs.local_state import stale_partitions

IDS = {"vehicles": "id-1"}


def test_state_persisted_within_the_changelog_is_kept() -> None:
    assert stale_partitions({("vehicles", 0): 41}, {("vehicles", 0): 42}, IDS, IDS) == []
    # the changelog grew while the worker was away: Faust restores the rest
    assert stale_partitions({("vehicles", 0): 41}, {("vehicles", 0): 900}, IDS, IDS) == []


def test_state_persisted_at_or_beyond_the_changelog_end_is_stale() -> None:
    stale = stale_partitions({("vehicles", 0): 41, ("vehicles", 1): 3},
                             {("vehicles", 0): 41, ("vehicles", 1): 0}, IDS, IDS)
    assert [(s.table, s.partition) for s in stale] == [("vehicles", 0), ("vehicles", 1)]
    assert "persisted at changelog offset 41, the changelog ends at 41" in stale[0].reason


def test_a_changelog_created_again_makes_the_state_stale_whatever_its_offsets() -> None:
    stale = stale_partitions({("vehicles", 2): 5}, {("vehicles", 2): 100}, IDS,
                             {"vehicles": "id-2"})
    assert [(s.partition, "topic id changed" in s.reason) for s in stale] == [(2, True)]


def test_no_recorded_id_and_no_persisted_offset_keep_the_state() -> None:
    assert stale_partitions({("vehicles", 0): None}, {("vehicles", 0): 0}, {}, IDS) == []
    assert stale_partitions({("vehicles", 0): 7}, {("vehicles", 0): 8}, {}, IDS) == []
