"""Fetches that batch while records flow and answer at once when they start.

A worker's cost is paid per wake-up (a fetch answered, records handed to the event loop, the
agents run), not per byte. With ``fetch.min.bytes`` 1 the broker answers a fetch as soon as one
record is there: at 300 records/s a worker wakes up for nearly every record. A fetch that waits
``kafka.fetch_batch_wait_ms`` for ``kafka.fetch_batch_bytes`` takes several records per wake-up,
but at an idle hour it would also wake the worker that often, and delay the first record of a
burst by as much.

So the fetcher switches between two settings, one fetch at a time: after a fetch that brought
records, the next one batches (records are flowing); after one that brought nothing, the next
one waits for the first byte, up to ``kafka.fetch_max_wait_ms`` (the worker is idle, and a
record that comes is fetched at once). aiokafka reads both settings from its fetcher each time
it builds a fetch request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pace:
    """A fetch's ``fetch.min.bytes`` and ``fetch.max.wait.ms``."""

    min_bytes: int
    max_wait_ms: int


@dataclass(frozen=True)
class FetchPacing:
    idle: Pace  # after a fetch that brought nothing
    flowing: Pace | None  # after one that brought records; None: always ``idle``

    def after(self, brought_records: bool) -> Pace:
        return self.flowing if brought_records and self.flowing is not None else self.idle


def install(fetcher: Any, pacing: FetchPacing) -> None:
    """Pace a started aiokafka ``Fetcher``: its settings follow what each fetch brought."""
    first = pacing.idle
    fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = first.min_bytes, first.max_wait_ms
    if pacing.flowing is None:
        return
    process = fetcher._proc_fetch_request

    async def paced(assignment: Any, node_id: Any, request: Any) -> Any:
        brought = await process(assignment, node_id, request)
        pace = pacing.after(bool(brought))
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = pace.min_bytes, pace.max_wait_ms
        return brought

    fetcher._proc_fetch_request = paced
