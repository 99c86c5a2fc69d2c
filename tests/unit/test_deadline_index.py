"""The in-memory deadline index behind the rehome and hold timers: every write through the
store updates it, a rebuild from the table replaces it, and each passed deadline comes up once."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from streams.repairs.local_state import OFFSET_KEY
from streams.stores import DeadlineIndex, DeadlineIndexedStore
from vprov.flows.topology import rehome_deadline


def vehicle(request_id: str | None, deadline_ms: int = 0) -> dict[str, Any]:
    pending = None if request_id is None else {"request_id": request_id,
                                               "deadline_ms": deadline_ms, "waiters": []}
    return {"state": "REHOMING" if pending else "REGISTERED", "pending": pending}


def test_a_passed_deadline_comes_up_once_in_deadline_order() -> None:
    index = DeadlineIndex(rehome_deadline)
    index.update("B", vehicle("rq-b", 200))
    index.update("A", vehicle("rq-a", 100))
    index.update("C", vehicle("rq-c", 900))
    assert index.pop_due(50) == []
    assert index.pop_due(500) == [("A", {"request_id": "rq-a", "deadline_ms": 100, "waiters": 0}),
                                  ("B", {"request_id": "rq-b", "deadline_ms": 200, "waiters": 0})]
    assert index.pop_due(500) == []
    assert len(index) == 3  # announced, still pending until the entry says otherwise


def test_an_entry_written_again_with_the_same_deadline_is_not_announced_again() -> None:
    index = DeadlineIndex(rehome_deadline)
    index.update("A", vehicle("rq-a", 100))
    assert [key for key, _ in index.pop_due(100)] == ["A"]
    index.update("A", vehicle("rq-a", 100))  # the input processed again after a crash
    assert index.pop_due(1000) == []


def test_a_changed_or_cleared_deadline_replaces_the_old_one() -> None:
    index = DeadlineIndex(rehome_deadline)
    index.update("A", vehicle("rq-1", 100))
    index.update("A", vehicle("rq-2", 300))  # cancelled and rehomed again
    index.update("B", vehicle("rq-b", 100))
    index.update("B", vehicle(None))  # answered before its deadline
    assert index.pop_due(200) == []
    assert index.pop_due(300) == [("A", {"request_id": "rq-2", "deadline_ms": 300, "waiters": 0})]
    assert index.get("B") is None


def test_a_deadline_that_could_not_be_announced_comes_up_again() -> None:
    index = DeadlineIndex(rehome_deadline)
    index.update("A", vehicle("rq-a", 100))
    [(key, deadline)] = index.pop_due(100)
    index.requeue(key, deadline)
    assert index.pop_due(100) == [("A", deadline)]


def test_requeue_skips_a_deadline_its_entry_has_moved_past() -> None:
    index = DeadlineIndex(rehome_deadline)
    index.update("A", vehicle("rq-a", 100))
    [(key, deadline)] = index.pop_due(100)
    index.update("A", vehicle(None))
    index.requeue(key, deadline)
    assert index.pop_due(1000) == []


def test_a_rebuild_indexes_the_table_and_forgets_what_it_no_longer_holds() -> None:
    index = DeadlineIndex(rehome_deadline)
    index.update("GONE", vehicle("rq-x", 100))  # a partition given away in the rebalance
    index.rebuild([(b"A", vehicle("rq-a", 100)), (b"B", vehicle(None)), (b"C", None)])
    assert len(index) == 1
    assert index.pop_due(100) == [("A", {"request_id": "rq-a", "deadline_ms": 100, "waiters": 0})]


def test_the_store_writes_the_table_and_the_index_together() -> None:
    table: dict[Any, Any] = {}
    store = DeadlineIndexedStore(table, rehome_deadline)
    store["A"] = vehicle("rq-a", 100)
    assert store.get("A") == table["A"]
    assert store.deadlines.get("A") == {"request_id": "rq-a", "deadline_ms": 100, "waiters": 0}
    store.pop("A")
    assert "A" not in table and store.deadlines.get("A") is None


class HeldPartitions:
    """What the rebuild reads of a Faust RocksDB store: the databases of the partitions this
    worker serves (real RocksDB here, with Faust's offset key), and its value codec."""

    def __init__(self, dbs: list[Any]) -> None:
        self.dbs = dbs

    def _dbs_for_actives(self) -> list[Any]:
        return self.dbs

    def _decode_value(self, raw: bytes) -> Any:
        return json.loads(raw)


def test_the_store_rebuilds_its_index_from_the_table(tmp_path: Path) -> None:
    import rocksdict

    db = rocksdict.Rdict(str(tmp_path / "vehicles-0.db"), options=rocksdict.Options(raw_mode=True))
    for key, entry in ((b"A", vehicle("rq-a", 100)), (b"B", vehicle(None))):
        db.put(key, json.dumps(entry).encode())
    db.put(OFFSET_KEY, b"41")
    table = SimpleNamespace(data=HeldPartitions([db]))
    store = DeadlineIndexedStore(table, rehome_deadline)
    assert len(store.deadlines) == 0  # written before this worker held the partition
    store.reindex()
    assert [key for key, _ in store.deadlines.pop_due(100)] == ["A"]
    db.close()


def test_a_value_without_a_deadline_is_counted_but_never_comes_up() -> None:
    """A regional vehicle holding a secondary for its primary: held, with no deadline. It is in
    the index (``/metrics`` counts it) and never announced."""
    index = DeadlineIndex(lambda entry: entry)
    index.update("V1", {"held": 1})
    index.update("V2", {"held": 2, "deadline_ms": 5})
    assert sorted(v["held"] for v in index.values()) == [1, 2]
    assert [key for key, _ in index.pop_due(10)] == ["V2"]
    assert index.pop_due(10**12) == []
