"""A safety net for partitions that stop moving.

Faust 0.15 can, around a rebalance, deliver records to a stream and then drop them unprocessed
(its queues are cleared when partitions are revoked) while its read offset has already moved past
them. ``streams/repairs/commit_guard.py`` keeps the commit from passing such a record; this module
brings
it back. Every few seconds it looks at each input partition of the worker for one of two states:

- records past the head (the next offset to process) were acknowledged, the head was not, and
  the agent is not holding it: the head was dropped;
- records wait past the head and the topic's agent holds nothing: Faust believes it has read
  them.

The head is the committed offset as Faust records it once the broker has the commit; the
offsets a commit under way covers count as acknowledged until then (the commit guard keeps
them), however long the commit takes.

A dropped head (the first state) is sought back at once: the agent takes a partition's records
in order, so it never comes by itself. A head that has not moved between two checks (the second
state) is sought back then. The records are processed again; decisions are deterministic and
remembered, so that changes nothing but the stall. Records are dropped when partitions move, so
the check runs every second: a failover's stall is what the check interval adds to it.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
from faust.tables.manager import TableManager

from streams.repairs.commit_guard import GuardedConsumer
from streams.repairs.offset_probe import OffsetProbe, absent_before
from streams.repairs.transport import consumer_of, transport_of

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0


def stalled_partitions(consumer: GuardedConsumer,
                       highwaters: dict[Any, int]) -> dict[Any, tuple[int, int]]:
    """Partitions that cannot move on by themselves: tp -> (head, end offset)."""
    in_flight = consumer.in_flight()
    # One agent serves all partitions of a topic: while it holds any message of the topic it
    # is busy (or waiting on Redis), and untouched partitions are just waiting their turn.
    busy_topics = {m.tp.topic for m in in_flight}
    held = {(m.tp, m.offset) for m in in_flight}
    paused = consumer.paused()
    found = {}
    for tp, end in highwaters.items():
        if end is None or tp in paused:
            continue
        head = consumer.head(tp) or 0
        if consumer.acked_offsets(tp):
            if head_dropped(consumer, tp, held):
                found[tp] = (head, end)
            continue  # otherwise the next commit moves the head
        if head < end and tp.topic not in busy_topics:
            found[tp] = (head, end)
    return found


def head_dropped(consumer: GuardedConsumer, tp: Any, held: set[tuple[Any, int]]) -> bool:
    """The agent takes a partition's records in order: an acknowledged record past an
    unacknowledged head that the agent does not hold means the head was dropped."""
    acked = consumer.acked_offsets(tp)
    head = consumer.head(tp) or 0
    return bool(acked) and min(acked) > head and (tp, head) not in held


def install(app: faust.App, sources: set[str], compacted: set[str] | None = None,
            probe: OffsetProbe | None = None) -> None:
    """Watch the partitions of ``sources`` (the agents' non-compacted input topics) and of
    ``compacted`` (their compacted ones, which need ``probe``) on this worker, and never let
    the consumer commit past records of theirs it skipped."""
    compacted = compacted or set()
    if compacted and probe is None:
        raise ValueError("watching compacted topics needs an OffsetProbe")
    transport_of(app).guarded.protect(sources, compacted)
    watched = sources | compacted
    suspects: dict[Any, int] = {}

    @app.timer(interval=CHECK_SECONDS)
    async def watch_partitions() -> None:
        # cast: the interface (AppT) does not declare the table manager's recovery
        if app.rebalancing or cast(TableManager, app.tables).recovery.in_recovery:
            suspects.clear()
            return
        await check_partitions(consumer_of(app), watched, compacted, probe, suspects)


async def check_partitions(consumer: GuardedConsumer, watched: set[str], compacted: set[str],
                           probe: OffsetProbe | None, suspects: dict[Any, int]) -> None:
    """One check: seek back a partition whose head stayed put for two checks in a row
    (``suspects`` carries the heads from one check to the next). A broker that does not answer
    skips the check: the timer must outlive an outage."""
    mine = [tp for tp in consumer.assignment() if tp.topic in watched]
    if not mine:
        return
    if any(consumer.head(tp) is None for tp in mine):
        await consumer.learn_origins()
    try:
        highwaters = dict(await consumer.highwaters(*mine))
    except Exception as exc:  # noqa: BLE001 - a broker outage: a timer must not stop the worker
        log.warning("could not read the end offsets of %d partitions (%r); checking again "
                    "in %ds", len(mine), exc, CHECK_SECONDS)
        suspects.clear()
        return
    now = stalled_partitions(consumer, highwaters)
    held = {(m.tp, m.offset) for m in consumer.in_flight()}
    dropped = {tp for tp in now if head_dropped(consumer, tp, held)}
    for tp, (head, end) in list(now.items()):
        if tp.topic in compacted:
            assert probe is not None
            try:
                found = await probe.next_offset_async(tp.topic, tp.partition, head)
            except Exception as exc:  # noqa: BLE001 - as above: ask again on the next check
                log.warning("could not probe %s:%d for offset %d (%r)", tp.topic,
                            tp.partition, head, exc)
                del now[tp]
                continue
            absent = absent_before(head, found, end)
            if absent is not None:
                # compacted away, not dropped: nothing to read again
                consumer.add_processed(tp, absent)
                del now[tp]
                continue
        if (consumer.head(tp) or 0) != head:
            del now[tp]  # a commit was recorded while the check awaited the broker
            continue
        # dropped, or it did not move in a whole check interval although it has to
        if suspects.get(tp) == head or tp in dropped:
            log.warning("partition %s:%d stopped at offset %d although it holds records "
                        "up to %d; seeking back to %d", tp.topic, tp.partition, head,
                        end - 1, head)
            await consumer.seek(tp, head)
    suspects.clear()
    suspects.update({tp: head for tp, (head, _) in now.items()})
