"""A table of entries plus its index of deadlines, written together so that the index never
disagrees with the entries: a timer then scans the small index, not the whole table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from streams.shell import Shell, encode_internal, now_ms
from vprov.commands import Command

DEADLINE_SCAN_SECONDS = 1.0


class DeadlineIndexedStore:
    """``entries`` (key -> entry) and ``deadlines`` (key -> ``deadline_of(entry)``, present only
    while that is not None). Reads and writes go through here; the shell writes decisions to it
    like to a table."""

    def __init__(self, entries: Any, deadlines: Any,
                 deadline_of: Callable[[Any], dict[str, Any] | None]) -> None:
        self.entries = entries
        self.deadlines = deadlines
        self._deadline_of = deadline_of

    def get(self, key: str) -> Any:
        return self.entries.get(key) if key else None

    def __setitem__(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = entry
        deadline = self._deadline_of(entry)
        if deadline is not None:
            # written again even when unchanged: like the entry, so a re-processed input puts
            # it in the changelog after a crash
            self.deadlines[key] = deadline
        elif self.deadlines.get(key) is not None:
            self.deadlines.pop(key, None)

    def pop(self, key: str, default: Any = None) -> Any:
        self.deadlines.pop(key, None)
        return self.entries.pop(key, default)


def deadline_timer(app: faust.App, shell: Shell, deadlines: Any, topic: str,
                   command: Callable[[dict[str, Any]], Command], name: str) -> None:
    """Every second, for each deadline index entry whose ``deadline_ms`` has passed, send
    ``command(entry)`` keyed by its key to ``topic``. Tables change only inside a stream, so the
    timer asks the key's own partition to decide; each deadline is announced once per worker
    (the decision is idempotent if a rebalance announces it again elsewhere)."""
    announced: set[tuple[str, str]] = set()

    async def scan() -> None:
        if app.rebalancing:
            return
        now = now_ms()
        live = set()
        # a comprehension, not list(): list() asks the table for its length first, which walks
        # every RocksDB key once more
        for key, entry in [item for item in deadlines.items()]:
            if not entry or "deadline_ms" not in entry:
                continue  # an index entry may count what waits without a deadline
            text = key.decode() if isinstance(key, bytes) else key
            marker = (text, encode_internal(entry).decode())
            live.add(marker)
            if entry["deadline_ms"] <= now and marker not in announced:
                announced.add(marker)
                await shell.topic(topic).send(key=text.encode(),
                                              value=encode_internal(command(entry).to_json()))
        announced.intersection_update(live)

    app.timer(interval=DEADLINE_SCAN_SECONDS, name=name)(scan)
