"""A safety net for partitions that stop moving.

Faust 0.15 can, around a rebalance, deliver messages to a stream and then drop them unprocessed
(its queues are cleared when partitions are revoked) while its read offset has already moved past
them: the partition then waits forever for messages it believes it has read. The watchdog looks
for that state — messages in the partition past its committed offset, none of them in flight nor
acknowledged — and when it lasts across two checks it seeks the partition back to its committed
offset. The
messages are processed again; decisions are deterministic and remembered, so that changes
nothing but the stall.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)
CHECK_SECONDS = 5.0


def stalled_partitions(consumer: Any, highwaters: dict[Any, int]) -> dict[Any, tuple[int, int]]:
    """Partitions with messages past their committed offset but nothing in flight nor waiting to
    be committed: tp -> (committed offset, end offset)."""
    # One agent serves all partitions of a topic: while it holds any message of the topic it
    # is busy (or waiting on Redis), and untouched partitions are just waiting their turn.
    busy_topics = {m.tp.topic for m in list(consumer._unacked_messages) if not m.acked}
    paused = set(consumer._paused_partitions)
    found = {}
    for tp, end in highwaters.items():
        if end is None or tp in paused or tp.topic in busy_topics:
            continue
        # Faust keeps no committed offset for a partition the group never committed (nor for
        # offset 0): it is then read from the beginning.
        committed = consumer._committed_offset.get(tp) or 0
        acked = consumer._acked.get(tp)
        if acked and min(acked) <= committed:
            continue  # processed from the committed offset on: the next commit moves it
        # acknowledged messages past a hole are a stall too: the hole is never filled
        if committed < end:
            found[tp] = (committed, end)
    return found


_NO_HOLES: set[str] = set()
_fill_holes = Consumer._add_gap


async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
    """Faust treats offsets it did not see as processed ("gaps", meant for compaction and
    transaction markers). On our non-compacted topics every offset is a record, so a gap means
    records the consumer skipped: leave the hole, so the commit stops there and the watchdog
    brings the records back, instead of committing past them."""
    if tp.topic in _NO_HOLES:
        log.warning("offsets %d..%d of %s:%d were skipped by the consumer; they stay "
                    "uncommitted until processed", offset_from, offset_to - 1, tp.topic,
                    tp.partition)
        return
    await _fill_holes(self, tp, offset_from, offset_to)


Consumer._add_gap = _add_gap  # type: ignore[method-assign]


def install(app: faust.App, sources: set[str]) -> None:
    """Watch the partitions of ``sources`` (the agents' non-compacted input topics) on this
    worker, and never let the consumer commit past records of theirs it skipped."""
    _NO_HOLES.update(sources)
    suspects: dict[Any, tuple[int, int]] = {}

    @app.timer(interval=CHECK_SECONDS)
    async def watch_partitions() -> None:
        if app.rebalancing or app.tables.recovery.in_recovery:
            suspects.clear()
            return
        consumer = app.consumer
        mine = [tp for tp in consumer.assignment() if tp.topic in sources]
        if not mine:
            return
        highwaters = dict(await consumer.highwaters(*mine))
        now = stalled_partitions(consumer, highwaters)
        for tp, (committed, end) in now.items():
            # the same picture five seconds apart: nothing moved although there is work
            if suspects.get(tp) == (committed, end):
                log.warning("partition %s:%d stopped at offset %d although it holds messages "
                            "up to %d; seeking back to %d", tp.topic, tp.partition, committed,
                            end - 1, committed)
                await consumer.seek(tp, committed)
        suspects.clear()
        suspects.update(now)
