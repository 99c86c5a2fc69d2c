"""Offsets of the input topics are committed only over records that were processed.

Faust 0.15 decides what to commit from the offsets its streams acknowledged, and three of its
rules let a commit pass a record that was never processed:

- a single missing offset at the head of the acknowledged run is taken for a compacted-away
  record (``min(acked) - committed > 1`` in ``Consumer._new_offset``; faust-streaming issue
  #606), and no head is checked at all while the committed offset is unknown or 0;
- offsets the fetcher jumped over are recorded as "gaps" and committed as if processed;
- a stream that reads a record fetched before a rebalance, or while the flow is stopped, skips
  it and acknowledges it as if it had processed it.

The first two are right for compacted topics, where offsets really are missing. On our
non-compacted input topics every offset is a record, so a missing one is a record Faust dropped
(it does around rebalances and restarts): committing past it loses a request. For those topics:

- the commit moves only over an unbroken run of acknowledged offsets that starts exactly at the
  committed offset; anything else waits, and ``streams/watchdog.py`` seeks the partition back to
  the hole;
- a record acknowledged under an earlier consumer generation, or while the flow is stopped, does
  not count as processed: it is read again from the committed offset after the rebalance.

The compacted input topics (the registration index) get the same rule, with the one difference
compaction needs: offsets that do not exist count as processed. Offsets the fetcher jumped over
between two records it read are such offsets (Faust records them as gaps). A hole at the head
(after a seek, or in a partition never committed) is not told apart by the fetcher: the
watchdog asks the broker where the next record at or after the head is (``mark_absent``), and
either the offsets before it are gone, or the head is a record that was dropped and is read
again. So a record dropped in a rebalance is never committed past on these topics either.

One more repair, to the producer: before a commit, Faust flushes its producer, but the buffer
that holds table changelog records (``ProducerBuffer.flush``) gives up after 0.1 s without a
record sent, under load with records still in it. The commit then covers inputs whose table
writes never reached the changelog; a worker killed right after restores an older value from the
changelog and never processes those inputs again. ``flush`` here waits until the buffer is empty.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger(__name__)

_STRICT: set[str] = set()
# Compacted topics under the same rule, where the fetcher's gaps count as processed.
_COMPACTED: set[str] = set()
# Where the consumer starts a partition of a strict topic that has no committed offset: the
# log start offset (streams/app.py sets consumer_auto_offset_reset="earliest"), looked up when
# partitions are assigned (Faust keeps None there).
origins: dict[Any, int] = {}

_faust_new_offset = Consumer._new_offset
_faust_add_gap = Consumer._add_gap
_faust_perform_seek = Consumer.perform_seek
_faust_ack = Consumer.ack


def committable(acked: list[int], head: int | None) -> tuple[int | None, list[int]]:
    """The offset to commit for a partition whose next unprocessed offset is ``head``, given
    its acknowledged offsets, and the offsets that commit covers (to forget them): the commit
    moves to the end of the unbroken run that starts at ``head``, or nowhere. ``acked`` is
    sorted in place, so the covered offsets are its first ones."""
    if head is None:
        return None, []
    acked.sort()
    stale = 0
    while stale < len(acked) and acked[stale] < head:
        stale += 1
    run_end = head
    for offset in acked[stale:]:
        if offset != run_end:
            break
        run_end += 1
    if run_end == head:
        return None, acked[:stale]
    return run_end, acked[:stale + run_end - head]


def head_of(consumer: Consumer, tp: Any) -> int | None:
    """The next offset of ``tp`` that must be processed before anything is committed."""
    committed = consumer._committed_offset.get(tp)
    return committed if committed is not None else origins.get(tp)


def guarded(topic: str) -> bool:
    return topic in _STRICT or topic in _COMPACTED


def _absorb_gaps(consumer: Consumer, tp: Any) -> None:
    """Count the offsets the fetcher jumped over as processed: on a compacted topic they were
    compacted away."""
    gaps = consumer._gap.get(tp)
    if not gaps:
        return
    # Faust's gap interval for a jump from offset r to offset n is [r + 1, n + 1): it ends with
    # the record that was read, which is processed (or not) like any other.
    absent = [o for interval in gaps for o in range(interval.begin, interval.end - 1)]
    gaps.clear()
    add_processed(consumer, tp, absent)


def add_processed(consumer: Consumer, tp: Any, offsets: list[int] | range) -> None:
    """Count ``offsets`` as processed (offsets known not to exist)."""
    index = consumer._acked_index[tp]
    fresh = [o for o in offsets if o not in index]
    consumer._acked[tp].extend(fresh)
    index.update(fresh)


def _new_offset(self: Consumer, tp: Any) -> int | None:
    if not guarded(tp.topic):
        return _faust_new_offset(self, tp)
    acked = self._acked[tp]
    if tp.topic in _COMPACTED:
        _absorb_gaps(self, tp)
    if not acked:
        return None
    head = head_of(self, tp)
    offset, covered = committable(acked, head)
    if covered:
        del acked[:len(covered)]
        self._acked_index[tp].difference_update(covered)
    if offset is not None:
        origins.pop(tp, None)  # from now on the committed offset is the head
    if offset is None and head is not None and acked and acked[0] > head:
        _report_hole(tp, head, acked[0])
    return offset


_reported: set[tuple[Any, int]] = set()


def _report_hole(tp: Any, head: int, first_acked: int) -> None:
    """Once per hole: Faust's own rule would have committed past it when it is one record."""
    if (tp, head) in _reported:
        return
    if len(_reported) > 10_000:
        _reported.clear()
    _reported.add((tp, head))
    log.warning("%s:%d: offsets %d..%d were not processed but later ones were; the commit "
                "waits at %d until the watchdog brings them back", tp.topic, tp.partition,
                head, first_acked - 1, head)


async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
    # On a compacted topic Faust's gap bookkeeping is right: _new_offset absorbs it.
    if tp.topic in _STRICT:
        log.warning("offsets %d..%d of %s:%d were skipped by the consumer; they stay "
                    "uncommitted until processed", offset_from, offset_to - 1, tp.topic,
                    tp.partition)
        return
    await _faust_add_gap(self, tp, offset_from, offset_to)


def acknowledged_elsewhere(consumer: Consumer, message: Message) -> bool:
    """Whether the stream may be acknowledging ``message`` without having processed it: it
    was fetched under an earlier consumer generation, or the flow is stopped (a rebalance or a
    shutdown is under way)."""
    app = consumer.app
    fetched_in = message.generation_id
    return ((fetched_in is not None and fetched_in != app.consumer_generation_id)
            or not app.flow_control.is_active())


def _ack(self: Consumer, message: Message) -> bool:
    if not guarded(message.topic) or not acknowledged_elsewhere(self, message):
        return _faust_ack(self, message)
    # Settle the message, so nothing waits for it, without counting its offset as processed
    # (under Faust's ack lock, as its own acknowledgement is).
    with ack_lock:
        message.acked = True
        self._unacked_messages.discard(message)
    notify(self._waiting_for_ack)
    return False


async def _perform_seek(self: Consumer) -> None:
    await _faust_perform_seek(self)
    await learn_origins(self)


async def learn_origins(consumer: Consumer) -> None:
    """Record the log start offset of the assigned strict partitions that have no committed
    offset: that is where the consumer starts them, and where their first commit must start.
    An origin is forgotten once the partition has a committed offset: while a rebalance has
    cleared Faust's committed offsets, the head is unknown and nothing is committed."""
    unknown = []
    for tp in consumer.assignment():
        if not guarded(tp.topic):
            continue
        if consumer._committed_offset.get(tp) is None:
            unknown.append(tp)
        else:
            origins.pop(tp, None)
    if not unknown:
        return
    try:
        starts = await consumer.earliest_offsets(*unknown)
    except Exception as exc:  # the watchdog asks again on its next check
        log.warning("could not read the start offsets of %d partitions: %r", len(unknown), exc)
        return
    for tp, start in starts.items():
        if start is not None:
            origins[tp] = start


async def flush_buffer(buffer: Any) -> None:
    """Wait until every record put in ``buffer`` was handed to the Kafka producer (which Faust
    flushes next), however long the sender takes; fail if the buffer stops running."""
    while buffer.size:
        if buffer.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        buffer.message_sent.clear()
        try:
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=0.1)
        except TimeoutError:
            continue  # the sender is busy (or the broker slow): keep waiting


# The type checker rightly refuses assigning to a class's methods; these assignments are the
# repair itself, and each ignore names only that error.
Consumer._new_offset = _new_offset  # type: ignore[method-assign]
Consumer._add_gap = _add_gap  # type: ignore[method-assign]
Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
Consumer.ack = _ack  # type: ignore[method-assign]
ProducerBuffer.flush = flush_buffer  # type: ignore[method-assign,assignment]


def protect(sources: set[str], compacted: set[str] | frozenset[str] = frozenset()) -> None:
    """Apply the rule above to ``sources`` (the agents' non-compacted input topics) and to
    ``compacted`` (their compacted input topics)."""
    _STRICT.update(sources)
    _COMPACTED.update(compacted)


def is_compacted(topic: str) -> bool:
    return topic in _COMPACTED
