"""Fetches that batch while records flow and answer at once when they start.

A worker's cost is paid per wake-up (a fetch answered, records handed to the event loop, the
agents run), not per byte. With ``fetch.min.bytes`` 1 the broker answers a fetch as soon as one
record is there: at 300 records/s a worker wakes up for nearly every record. A fetch that waits
``kafka.fetch_batch_wait_ms`` for ``kafka.fetch_batch_bytes`` takes several records per wake-up,
but at an idle hour it would also wake the worker that often, and delay the first record of a
burst by as much.

So the fetcher switches between two settings, one fetch at a time: after a fetch that brought
records, the next ones batch (records are flowing); once ``IDLE_AFTER`` fetches in a row brought
nothing, the next ones wait for the first byte, up to ``kafka.fetch_max_wait_ms`` (the worker is
idle, and a record that comes is fetched at once). Not after the first empty fetch: while
records flow, a fetch leaves out the partitions whose records the worker has not taken yet and
may bring nothing, and the records that come meanwhile in the others would wait for it, up to
``fetch_max_wait_ms`` (aiokafka sends one fetch at a time to a broker). aiokafka reads both
settings from its fetcher each time it builds a fetch request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pace:
    """A fetch's ``fetch.min.bytes`` and ``fetch.max.wait.ms``."""

    min_bytes: int
    max_wait_ms: int


IDLE_AFTER = 8  # empty fetches in a row (8 x 25 ms) before a worker counts as idle


@dataclass(frozen=True)
class FetchPacing:
    idle: Pace  # after IDLE_AFTER fetches in a row that brought nothing
    flowing: Pace | None  # after one that brought records; None: always ``idle``

    def after(self, empty_in_a_row: int) -> Pace:
        """The next fetch's settings, given how many fetches in a row brought nothing."""
        if self.flowing is None or empty_in_a_row >= IDLE_AFTER:
            return self.idle
        return self.flowing


def install(fetcher: Any, pacing: FetchPacing) -> None:
    """Pace a started aiokafka ``Fetcher``: its settings follow what each fetch brought."""
    first = pacing.idle
    fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = first.min_bytes, first.max_wait_ms
    if pacing.flowing is None:
        return
    process = fetcher._proc_fetch_request
    empty = IDLE_AFTER  # fetches in a row that brought nothing; a new worker starts idle

    async def paced(assignment: Any, node_id: Any, request: Any) -> Any:
        nonlocal empty
        brought = await process(assignment, node_id, request)
        empty = 0 if brought else empty + 1
        pace = pacing.after(empty)
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = pace.min_bytes, pace.max_wait_ms
        return brought

    fetcher._proc_fetch_request = paced
