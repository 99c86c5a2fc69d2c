"""A safety net for partitions that stop moving.

Faust 0.15 can, around a rebalance, deliver messages to a stream and then drop them unprocessed
(its queues are cleared when partitions are revoked) while its read offset has already moved past
them: the partition then waits forever for messages it believes it has read. The watchdog looks
for exactly that state — messages read but neither in flight, nor acknowledged, nor committed —
and when it lasts across two checks it seeks the partition back to its committed offset. The
messages are processed again; decisions are deterministic and remembered, so that changes
nothing but the stall.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

log = logging.getLogger(__name__)
CHECK_SECONDS = 5.0


def stalled_partitions(consumer: Any) -> dict[Any, tuple[int, int]]:
    """Partitions whose read offset is past their committed offset with nothing in flight or
    waiting to be committed: tp -> (committed, read)."""
    in_flight = {m.tp for m in list(consumer._unacked_messages) if not m.acked}
    paused = set(consumer._paused_partitions)
    found = {}
    for tp, read in list(consumer._read_offset.items()):
        committed = consumer._committed_offset.get(tp)
        if read is None or committed is None or tp in paused or tp in in_flight:
            continue
        if consumer._acked.get(tp):
            continue  # processed, waiting for the next commit
        if committed <= read:
            found[tp] = (committed, read)
    return found


def install(app: faust.App, sources: set[str]) -> None:
    """Watch the partitions of ``sources`` (the agents' input topics) on this worker."""
    suspects: dict[Any, tuple[int, int]] = {}

    @app.timer(interval=CHECK_SECONDS)
    async def watch_partitions() -> None:
        if app.rebalancing or app.tables.recovery.in_recovery:
            suspects.clear()
            return
        consumer = app.consumer
        assigned = consumer.assignment()
        now = {tp: offsets for tp, offsets in stalled_partitions(consumer).items()
               if tp.topic in sources and tp in assigned}
        for tp, (committed, read) in now.items():
            if suspects.get(tp) == (committed, read):
                log.warning("partition %s:%d stopped at offset %d with offsets up to %d read "
                            "but never processed; seeking back to %d", tp.topic, tp.partition,
                            committed, read, committed)
                await consumer.seek(tp, committed)
        suspects.clear()
        suspects.update(now)
