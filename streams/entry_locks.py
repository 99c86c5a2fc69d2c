"""One decision at a time per table entry, across the agents of a worker.

A decision reads its key's entry, then the shell carries it out: the effects (Redis, awaited),
then the entry's write, then the records (``Shell._carry_out``). Agents run concurrently on the
event loop, and several of them write the same entry (a regional vehicle: its rehome requests,
its device requests, its own commands): while one awaits its effects, another may decide on the
entry the first has not written yet. Whichever writes last then erases the other's decision, a
provisioned device back to REGIONAL, a held request gone with no answer, and the input that
decided it is acknowledged already.

``EntryLocks`` lets the shell carry out one decision per entry at a time; an input that finds
its entry busy waits, then decides again on what the other wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from typing import Any

EntryId = tuple[int, Hashable]  # the table object's id, the key


class EntryLocks:
    """A lock per entry being carried out, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[EntryId, asyncio.Lock] = {}
        self._users: Counter[EntryId] = Counter()

    @staticmethod
    def _id(table: Any, key: Hashable | None) -> EntryId | None:
        return None if table is None or key is None else (id(table), key)

    def busy(self, table: Any, key: Hashable | None) -> bool:
        """Whether a decision on this entry is being carried out, or waits to be: taking the
        lock then could wait behind another decision, and carry this one out after it."""
        ident = self._id(table, key)
        return ident is not None and ident in self._locks

    @contextlib.asynccontextmanager
    async def holding(self, table: Any, key: Hashable | None) -> AsyncIterator[None]:
        """Hold the entry's lock (nothing for a decision without an entry). Taking the lock of
        an entry that is not ``busy`` does not yield to the event loop: nothing can decide on the
        entry in between."""
        ident = self._id(table, key)
        if ident is None:
            yield
            return
        lock = self._locks.setdefault(ident, asyncio.Lock())
        self._users[ident] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[ident] -= 1
            if not self._users[ident]:
                del self._users[ident]
                del self._locks[ident]

    async def wait_free(self, table: Any, key: Hashable | None) -> None:
        """Until the decision being carried out on this entry has been."""
        async with self.holding(table, key):
            pass

    def __len__(self) -> int:
        return len(self._locks)
