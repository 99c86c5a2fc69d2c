"""A table of entries plus an in-memory index of their deadlines, so that a timer finds the
deadlines that have passed without reading the table.

The index is derived state: every write through the store updates it, and it is rebuilt from
the table itself each time a rebalance completes (after Faust has recovered the table from its
changelog), so it covers exactly the entries of the partitions this worker holds. Nothing of it
is written to Kafka: a deadline costs no table write and no changelog record of its own.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import faust
from mode.types.signals import BaseSignalT

from streams.repairs.local_state import OFFSET_KEY
from streams.shell import Shell, encode_internal, now_ms
from vprov.core.commands import Command

DEADLINE_SCAN_SECONDS = 1.0

Deadline = dict[str, Any]  # what the command is built from; "deadline_ms" when one applies


def entry_in_partition(table: Any, key: str, partition: int) -> Any:
    """The entry of ``key`` in ``partition`` of ``table``, or None. ``table.get`` reads the
    partition of the event being processed; this reads the partition named, which must be one
    this worker holds (the caller checks the assignment)."""
    store = table.data
    raw = store._db_for_partition(partition).get(store._encode_key(key.encode("utf-8")))
    return None if raw is None else store._decode_value(raw)


def key_text(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key


class DeadlineIndex:
    """key -> ``deadline_of(entry)`` for the entries that have one, with a heap ordered by
    ``deadline_ms`` of those that carry one (an index value may only count what waits, for
    /metrics, without a deadline). Heap items of a key whose deadline changed or went away are
    skipped when they come up (lazy deletion), so an update costs a dict write and at most one
    push."""

    def __init__(self, deadline_of: Callable[[Any], Deadline | None]) -> None:
        self._deadline_of = deadline_of
        self._by_key: dict[str, Deadline] = {}
        self._heap: list[tuple[int, int, str, Deadline]] = []
        self._order = itertools.count()  # ties: never compare the dicts

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Deadline | None:
        return self._by_key.get(key)

    def values(self) -> list[Deadline]:
        return list(self._by_key.values())

    def update(self, key: str, entry: Any) -> None:
        """The entry of ``key`` was written: index its deadline, or forget the key."""
        deadline = self._deadline_of(entry) if entry else None
        if deadline is None:
            self._by_key.pop(key, None)
            return
        if self._by_key.get(key) == deadline:
            return  # the same deadline written again: already in the heap
        self._by_key[key] = deadline
        if "deadline_ms" in deadline:
            heapq.heappush(self._heap, (deadline["deadline_ms"], next(self._order), key, deadline))

    def discard(self, key: str) -> None:
        self._by_key.pop(key, None)

    def rebuild(self, items: Iterable[tuple[str | bytes, Any]]) -> None:
        """Index ``items`` (key, entry) from scratch: the table's entries after a rebalance."""
        self._by_key.clear()
        self._heap.clear()
        for key, entry in items:
            self.update(key_text(key), entry)

    def pop_due(self, now: int) -> list[tuple[str, Deadline]]:
        """The deadlines that have passed by ``now``, each returned once (until its entry is
        written with another deadline, or the index is rebuilt)."""
        due: list[tuple[str, Deadline]] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, key, deadline = heapq.heappop(self._heap)
            if self._by_key.get(key) is deadline:
                due.append((key, deadline))
        return due

    def requeue(self, key: str, deadline: Deadline) -> None:
        """A due deadline that could not be announced: offer it again at the next scan, unless
        its entry has moved on meanwhile."""
        if self._by_key.get(key) is deadline:
            heapq.heappush(self._heap, (deadline["deadline_ms"], next(self._order), key, deadline))


class DeadlineIndexedStore:
    """``entries`` (a table, key -> entry) and the in-memory ``deadlines`` index of
    ``deadline_of(entry)``. Reads and writes go through here; the shell writes decisions to
    it like to a table."""

    def __init__(self, entries: Any, deadline_of: Callable[[Any], Deadline | None]) -> None:
        self.entries = entries
        self.deadlines = DeadlineIndex(deadline_of)

    def get(self, key: str) -> Any:
        return self.entries.get(key) if key else None

    def __setitem__(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = entry
        self.deadlines.update(key_text(key), entry)

    def pop(self, key: str, default: Any = None) -> Any:
        self.deadlines.discard(key_text(key))
        return self.entries.pop(key, default)

    def reindex(self) -> None:
        """Rebuild the index from the entries of the partitions this worker serves, read
        straight from their RocksDB stores: Faust's ``items()`` costs about 40 µs an entry (40 s
        for a million vehicles, with the event loop blocked), the raw read a few."""
        store = self.entries.data
        self.deadlines.rebuild(
            (key, store._decode_value(raw))  # noqa: SLF001 - in streams/repairs/faust_contract.py
            for db in store._dbs_for_actives()  # noqa: SLF001 - as above
            for key, raw in db.items() if key != OFFSET_KEY)


def deadline_timer(app: faust.App, shell: Shell, store: DeadlineIndexedStore, topic: str,
                   command: Callable[[Deadline], Command], name: str) -> None:
    """Every second, for each deadline of ``store`` that has passed, send ``command(deadline)``
    keyed by its key to ``topic``. Tables change only inside a stream, so the timer asks the
    key's own partition to decide; each deadline is announced once per worker and rebalance
    (the decision is idempotent if it is announced again, here or elsewhere).

    The index is rebuilt from the table when a rebalance completes: Faust signals it once the
    tables have recovered and before the streams resume, so no write is missed in between."""

    def reindex(sender: Any, /, *args: Any, signal: BaseSignalT, **kwargs: Any) -> None:
        store.reindex()

    app.on_rebalance_complete.connect(reindex)

    async def scan() -> None:
        if app.rebalancing:
            return
        due = store.deadlines.pop_due(now_ms())
        for done, (key, deadline) in enumerate(due):
            try:
                await shell.topic(topic).send(key=key.encode(),
                                              value=encode_internal(command(deadline).to_json()))
            except BaseException:
                for later_key, later in due[done:]:
                    store.deadlines.requeue(later_key, later)
                raise

    app.timer(interval=DEADLINE_SCAN_SECONDS, name=name)(scan)
