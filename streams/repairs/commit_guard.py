"""Offsets of the input topics are committed only over records that were processed.

Faust 0.15 decides what to commit from the offsets its streams acknowledged, and three of its
rules let a commit pass a record that was never processed (docs/faust-defects.md, defects 1-3):

- a single missing offset at the head of the acknowledged run is taken for a compacted-away
  record (``min(acked) - committed > 1`` in ``Consumer._new_offset``; faust-streaming issue
  #606), and no head is checked at all while the committed offset is unknown or 0;
- offsets the fetcher jumped over are recorded as "gaps" and committed as if processed;
- a stream that reads a record fetched before a rebalance, or while the flow is stopped, skips
  it and acknowledges it as if it had processed it.

The first two are right for compacted topics, where offsets really are missing. On our
non-compacted input topics every offset is a record, so a missing one is a record Faust dropped
(it does around rebalances and restarts): committing past it loses a request. For those topics
``GuardedConsumer``:

- moves the commit only over an unbroken run of acknowledged offsets that starts exactly at the
  committed offset; anything else waits, and ``streams/repairs/watchdog.py`` seeks the partition
  back to the hole;
- keeps the offsets a commit covers (and the origin of a first commit) until Faust records the
  commit, which it does only once the broker answered: a slow commit (the first ones on a new
  cluster, a broker failover) is not taken by the watchdog for processed records that vanished;
- does not count a record acknowledged under an earlier consumer generation, or while the flow
  is stopped, as processed: it is read again from the committed offset after the rebalance.

The compacted input topics (the registration index) get the same rule, with the one difference
compaction needs: offsets that do not exist count as processed. Offsets the fetcher jumped over
between two records it read are such offsets (Faust records them as gaps). A hole at the head
(after a seek, or in a partition never committed) is not told apart by the fetcher: the
watchdog asks the broker where the next record at or after the head is, and either the offsets
before it are gone (``add_processed``), or the head is a record that was dropped and is read
again. So a record dropped in a rebalance is never committed past on these topics either.

Faust's seek runs aiokafka's from the app's event loop while the consumer thread reads the
fetched records it deletes (defect 7): ``GuardedConsumer._seek`` seeks on the consumer thread.

One more repair, to the producer (defect 4): before a commit, Faust flushes its producer, but
the buffer that holds table changelog records gives up after 0.1 s without a record sent, under
load with records still in it. ``DrainingProducer.flush`` waits until the buffer is empty.

Every rule is a method of a subclass that ``streams/repairs/transport.py`` installs for one app; the
private Faust names they use are checked at start-up (``streams/repairs/faust_contract.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from faust.transport.drivers import aiokafka as driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger(__name__)
REPORTED_HOLES_KEPT = 10_000  # holes remembered so that each is logged once


def committable(acked: list[int], head: int | None) -> tuple[int | None, list[int]]:
    """The offset to commit for a partition whose next unprocessed offset is ``head``, given
    its acknowledged offsets, and the offsets below the head (committed already: to forget):
    the commit moves to the end of the unbroken run that starts at ``head``, or nowhere.
    ``acked`` is sorted in place, so the offsets to forget are its first ones. The run itself
    is forgotten only once its commit is recorded (it is then below the head): until then it
    counts as processed and not committed, also for the watchdog."""
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
    return (run_end if run_end > head else None), acked[:stale]


@dataclass
class GuardedTopics:
    """The input topics whose commits are guarded: the agents' non-compacted input topics
    (``strict``) and their compacted ones."""

    strict: set[str] = field(default_factory=set)
    compacted: set[str] = field(default_factory=set)

    def protect(self, strict: Iterable[str], compacted: Iterable[str] = ()) -> None:
        self.strict.update(strict)
        self.compacted.update(compacted)

    def __contains__(self, topic: object) -> bool:
        return topic in self.strict or topic in self.compacted


class FetchedRecords(dict[TP, list[Any]]):
    """A batch of records the consumer thread took from aiokafka, with how many times each
    partition had been sought when it took them."""

    def __init__(self, records: Mapping[TP, list[Any]], seeks: Mapping[TP, int]) -> None:
        super().__init__(records)
        self.seeks = dict(seeks)


class GuardedConsumerThread(driver.AIOKafkaConsumerThread):
    """The consumer thread: seeks, and tells which records were fetched before a seek."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeks: dict[TP, int] = {}  # seeks per partition, counted on this thread

    async def seek_counted(self, partition: TP, offset: int) -> None:
        """Seek (on this thread): aiokafka drops what it holds of the partition and fetches
        from ``offset``."""
        self.seek(partition, offset)
        self.seeks[partition] = self.seeks.get(partition, 0) + 1

    async def _fetch_records(self, consumer: Any, active_partitions: set[TP],
                             timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                               max_records=max_records)
        # nothing ran on this thread since aiokafka handed the records over
        return FetchedRecords(records, self.seeks)


class GuardedConsumer(driver.Consumer):
    """Faust's aiokafka consumer with the commit rules above for the guarded topics; every
    other topic keeps Faust's own rules."""

    def __init__(self, transport: Any, *args: Any, guarded: GuardedTopics | None = None,
                 **kwargs: Any) -> None:
        self.guarded = guarded if guarded is not None else GuardedTopics()
        # Where the consumer starts a guarded partition that has no committed offset: the log
        # start offset (streams/app.py sets consumer_auto_offset_reset="earliest"), looked up
        # when partitions are assigned (Faust keeps None there).
        self.origins: dict[TP, int] = {}
        self._reported_holes: set[tuple[TP, int]] = set()
        self._batch_seeks: dict[TP, int] | None = None  # the seeks when the batch was fetched
        super().__init__(transport, *args, **kwargs)

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return GuardedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # --- what the watchdog reads ---------------------------------------------------------

    def head(self, tp: TP) -> int | None:
        """The next offset of ``tp`` that must be processed before anything is committed."""
        committed = self._committed_offset.get(tp)
        return committed if committed is not None else self.origins.get(tp)

    def acked_offsets(self, tp: TP) -> list[int]:
        """Offsets of ``tp`` processed but not committed yet, those of a commit under way
        included (they are forgotten once it is recorded)."""
        head = self.head(tp)
        return [o for o in list(self._acked.get(tp) or ()) if head is None or o >= head]

    def in_flight(self) -> list[Message]:
        """Messages handed to the streams and not acknowledged yet."""
        return [m for m in list(self._unacked_messages) if not m.acked]

    def _holds(self, tp: TP, offset: int) -> bool:
        """Whether a stream holds the record at ``offset``: an agent carries out several
        records at once (``streams/in_flight.py``), so later ones may be done before it."""
        return any(m.tp == tp and m.offset == offset for m in self.in_flight())

    def paused(self) -> set[TP]:
        return set(self._paused_partitions)

    def positions(self) -> dict[str, Any]:
        """Read and committed offsets, paused and active partitions (``/debug/consumer``)."""
        def name(tp: TP) -> str:
            return f"{tp.topic}:{tp.partition}"

        return {
            "paused": sorted(map(name, self._paused_partitions)),
            "active": sorted(map(name, self._active_partitions or ())),
            "read_offset": {name(tp): off for tp, off in self._read_offset.items()},
            "committed_offset": {name(tp): off for tp, off in self._committed_offset.items()},
        }

    def add_processed(self, tp: TP, offsets: Iterable[int]) -> None:
        """Count ``offsets`` as processed (offsets known not to exist)."""
        index = self._acked_index[tp]
        fresh = [o for o in offsets if o not in index]
        self._acked[tp].extend(fresh)
        index.update(fresh)

    async def learn_origins(self) -> None:
        """Record the log start offset of the assigned guarded partitions that have no
        committed offset: that is where the consumer starts them, and where their first commit
        must start. An origin is forgotten once the partition has a committed offset (or is no
        longer assigned): while a rebalance has cleared Faust's committed offsets, the head is
        unknown and nothing is committed."""
        assigned = self.assignment()
        for tp in set(self.origins) - assigned:
            del self.origins[tp]
        unknown = []
        for tp in assigned:
            if tp.topic not in self.guarded:
                continue
            if self._committed_offset.get(tp) is None:
                unknown.append(tp)
            else:
                self.origins.pop(tp, None)
        if not unknown:
            return
        try:
            starts = await self.earliest_offsets(*unknown)
        except Exception as exc:  # the watchdog asks again on its next check
            log.warning("could not read the start offsets of %d partitions: %r",
                        len(unknown), exc)
            return
        for tp, start in starts.items():
            # (a first commit may have been recorded meanwhile)
            if start is not None and self._committed_offset.get(tp) is None:
                self.origins[tp] = start

    # --- Faust's hooks ---------------------------------------------------------------------

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic not in self.guarded:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if tp.topic in self.guarded.compacted:
            self._absorb_gaps(tp)
        if not acked:
            return None
        head = self.head(tp)
        offset, done = committable(acked, head)
        if done:
            del acked[:len(done)]
            self._acked_index[tp].difference_update(done)
        if offset is None and head is not None and acked and acked[0] > head \
                and not self._holds(tp, head):
            self._report_hole(tp, head, acked[0])
        return offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # On a compacted topic Faust's gap bookkeeping is right: _new_offset absorbs it.
        if tp.topic in self.guarded.strict:
            log.warning("offsets %d..%d of %s:%d were skipped by the consumer; they stay "
                        "uncommitted until processed", offset_from, offset_to - 1, tp.topic,
                        tp.partition)
            return
        await super()._add_gap(tp, offset_from, offset_to)

    def ack(self, message: Message) -> bool:
        if message.topic not in self.guarded or not self.acknowledged_elsewhere(message):
            return super().ack(message)
        # Settle the message, so nothing waits for it, without counting its offset as processed
        # (under Faust's ack lock, as its own acknowledgement is).
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
        return False

    async def perform_seek(self) -> None:
        await super().perform_seek()
        await self.learn_origins()

    async def _commit_offsets(self, offsets: Mapping[TP, int],
                              start_new_transaction: bool = True) -> bool:
        try:
            return await super()._commit_offsets(offsets, start_new_transaction)
        finally:
            # Faust records the committed offsets once the broker has them: from then on they
            # are the heads. Until then the origin stays the head of a first commit.
            for tp in offsets:
                if self._committed_offset.get(tp) is not None:
                    self.origins.pop(tp, None)

    async def _seek(self, partition: TP, offset: int) -> None:
        # Faust's seek calls aiokafka's from the app's event loop, while the consumer thread's
        # loop may be walking the fetched records that aiokafka's seek deletes (KeyError in
        # Fetcher.fetched_records, which stops the worker): seek on the consumer thread.
        thread = cast(GuardedConsumerThread, self._thread)
        await thread.call_thread(thread.seek_counted, partition, offset)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        records = await super()._getmany(active_partitions, timeout)
        self._batch_seeks = records.seeks if isinstance(records, FetchedRecords) else None
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        # A batch's records of a partition sought after it was fetched are read again from the
        # seek's offset. Handed on, one past that offset would move Faust's read offset past
        # it (logged as skipped offsets), and Faust would then drop the records read again.
        async for tp, message in super().getmany(timeout):
            if self._fetched_before_a_seek(tp):
                continue
            yield tp, message

    def _fetched_before_a_seek(self, tp: TP) -> bool:
        fetched = self._batch_seeks
        if fetched is None:  # not fetched by the guarded thread
            return False
        seeks = cast(GuardedConsumerThread, self._thread).seeks
        return seeks.get(tp, 0) != fetched.get(tp, 0)

    # --- the rules -------------------------------------------------------------------------

    def acknowledged_elsewhere(self, message: Message) -> bool:
        """Whether the stream may be acknowledging ``message`` without having processed it: it
        was fetched under an earlier consumer generation, or the flow is stopped (a rebalance
        or a shutdown is under way)."""
        fetched_in = message.generation_id
        return ((fetched_in is not None and fetched_in != self.app.consumer_generation_id)
                or not self.app.flow_control.is_active())

    def _absorb_gaps(self, tp: TP) -> None:
        """Count the offsets the fetcher jumped over as processed: on a compacted topic they
        were compacted away."""
        gaps = self._gap.get(tp)
        if not gaps:
            return
        # Faust's gap interval for a jump from offset r to offset n is [r + 1, n + 1): it ends
        # with the record that was read, which is processed (or not) like any other.
        absent = [o for interval in gaps for o in range(interval.begin, interval.end - 1)]
        gaps.clear()
        self.add_processed(tp, absent)

    def _report_hole(self, tp: TP, head: int, first_acked: int) -> None:
        """Once per hole: Faust's own rule would have committed past it when it is one
        record."""
        if (tp, head) in self._reported_holes:
            return
        if len(self._reported_holes) > REPORTED_HOLES_KEPT:
            self._reported_holes.clear()
        self._reported_holes.add((tp, head))
        log.warning("%s:%d: offsets %d..%d were not processed but later ones were; the commit "
                    "waits at %d until the watchdog brings them back", tp.topic, tp.partition,
                    head, first_acked - 1, head)


async def drain_buffer(buffer: ProducerBuffer) -> None:
    """Wait until every record put in ``buffer`` was handed to the Kafka producer, however
    long the sender takes; fail if the buffer stops running."""
    while buffer.size:
        if buffer.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        buffer.message_sent.clear()
        try:
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=0.1)
        except TimeoutError:
            continue  # the sender is busy (or the broker slow): keep waiting


class DrainingProducer(driver.Producer):
    """Faust's aiokafka producer whose flush (run before every offset commit) empties the
    buffer of table changelog records before it flushes the Kafka producer."""

    async def flush(self) -> None:
        # cast: the interface (ProducerT) declares the buffer's protocol, not its class
        await drain_buffer(cast(ProducerBuffer, self.buffer))
        await super().flush()
