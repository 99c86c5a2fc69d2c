"""Restore table partitions from their changelogs in bulk, before Faust opens them.

Faust's own recovery costs about 100 µs per changelog record in Python (a task, a decode and
counters per record): an empty disk restores at about 10,000 records/s, so a worker rescheduled
onto a new machine answers nothing for minutes. This module reads the changelog with librdkafka
in large batches and writes it into each partition's RocksDB store with write batches, then
records the offset where Faust's RocksDB store keeps it (``OFFSET_KEY``). Faust's recovery then
reads only what was written since: the tail.

It runs after ``streams.repairs.local_state.reconcile`` (which discards local state the changelog
disowns), on every partition of the worker's tables that is behind its changelog, when together
they are ``min_records`` or more behind: a worker cannot know its assignment before it joins its
group, and with standbys a worker of two holds every partition, active or standby.

The store holds exactly what Faust's recovery writes: a record's key and value bytes as they are
in the changelog, a tombstone deletes its key, the last record of a key wins (in offset order).
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.repairs.local_state import OFFSET_KEY, partition_dir, read_persisted_offset, watermarks
from vprov.kafka.librdkafka_log import routed
from vprov.kafka.settings import KafkaAccess, librdkafka

log = logging.getLogger(__name__)

# The reader's memory follows the size of its fetches and of the batches it hands over (each
# record it hands over keeps its whole fetch buffer alive), more than its queue: on a million
# vehicles, 16 MB fetches and batches of 20,000 took the worker 480 MB above its size before the
# load, 8 MB and 5,000 take 280 MB, at 86,000 records/s instead of 133,000
BATCH_RECORDS = 5_000  # records per consume() call, and per RocksDB write batch
FETCH_BYTES = 8 * 1024 * 1024  # one fetch from the broker (a quarter of it per partition)
QUEUE_KBYTES = 32 * 1024  # fetched records waiting to be written
WAVE_PARTITIONS = 6  # table partitions loaded at a time
DEFAULT_MIN_RECORDS = 10_000  # behind in all; below this, Faust's own recovery is quick enough
PROGRESS_SECONDS = 5.0
# RocksDB during the bulk load only (Faust reopens the store with its own options): a write
# buffer per partition of the wave being loaded. Large ones (64 MB, all 24 partitions at once)
# held most of the 1.4 GB a million vehicles once took.
LOAD_WRITE_BUFFER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Range:
    """What one table partition needs: changelog offsets ``start`` up to ``end`` (exclusive)."""

    table: str
    topic: str
    partition: int
    start: int
    end: int

    @property
    def records(self) -> int:
        return max(self.end - self.start, 0)


@dataclass(frozen=True)
class Restored:
    partitions: int
    records: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def plan(persisted: Mapping[tuple[str, int], int | None],
         bounds: Mapping[tuple[str, int], tuple[int, int]], topics: Mapping[str, str],
         min_records: int) -> list[Range]:
    """The partitions a bulk load reads: every partition behind its changelog, when together
    they are ``min_records`` or more behind (below that, Faust's own recovery is as quick as
    starting a reader); else none. ``persisted``: (table, partition) -> the offset of the last
    record the local store applied (None: none); ``bounds``: (table, partition) -> (log start,
    end offset) of its changelog; ``topics``: table -> changelog topic."""
    ranges = []
    for (table, partition), (low, high) in sorted(bounds.items()):
        applied = persisted.get((table, partition))
        start = low if applied is None else max(applied + 1, low)
        wanted = Range(table, topics[table], partition, start, high)
        if wanted.records > 0:
            ranges.append(wanted)
    return ranges if sum(r.records for r in ranges) >= min_records else []


def restore(kafka: KafkaAccess | str, tables_dir: Path, changelogs: Mapping[str, str],
            partitions: int, *, min_records: int = DEFAULT_MIN_RECORDS,
            timeout: float = 30.0) -> Restored:
    """Bulk-load every partition of ``changelogs`` (table -> changelog topic) that is at least
    ``min_records`` behind; returns what it did."""
    from confluent_kafka import Consumer

    began = time.monotonic()
    reader = Consumer({
        **librdkafka(kafka), "group.id": "vprov-bulk-restore", "enable.auto.commit": False,
        "enable.partition.eof": True, **routed(),
        # many records per round trip, a few fetches ahead: the worker's memory (see above)
        "fetch.max.bytes": FETCH_BYTES, "max.partition.fetch.bytes": FETCH_BYTES // 4,
        "queued.max.messages.kbytes": QUEUE_KBYTES,
    })
    try:
        persisted = {(table, p): _persisted(tables_dir, table, p)
                     for table in changelogs for p in range(partitions)}
        bounds = _bounds(reader, changelogs, partitions, timeout)
        ranges = plan(persisted, bounds, changelogs, min_records)
        if not ranges:
            return Restored(0, 0, time.monotonic() - began)
        total = sum(r.records for r in ranges)
        log.info("restoring %d table partitions in bulk: %d changelog records", len(ranges),
                 total)
        done = _load(reader, tables_dir, ranges, total)
    finally:
        reader.close()
    # what the load freed stays in the allocator's heap, where the worker would hold it for good
    # (340 of 500 MB at a million vehicles): give it back before Faust starts
    release_freed_memory()
    result = Restored(len(ranges), done, time.monotonic() - began)
    log.info("restored %d changelog records into %d table partitions in %.1f s (%.0f "
             "records/s)", result.records, result.partitions, result.seconds,
             result.records_per_second)
    return result


def release_freed_memory() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``); False where the
    C library has no such call."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def _persisted(tables_dir: Path, table: str, partition: int) -> int | None:
    path = partition_dir(tables_dir, table, partition)
    return read_persisted_offset(path) if path.exists() else None


def _bounds(reader: Any, changelogs: Mapping[str, str], partitions: int, timeout: float
            ) -> dict[tuple[str, int], tuple[int, int]]:
    from confluent_kafka import TopicPartition

    deadline = time.monotonic() + timeout
    return {(table, partition): watermarks(reader, TopicPartition(topic, partition), deadline)
            for table, topic in changelogs.items() for partition in range(partitions)}


class _Store:
    """One table partition's RocksDB store, open for the bulk load."""

    def __init__(self, path: Path) -> None:
        import rocksdict

        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(LOAD_WRITE_BUFFER_BYTES)
        self._rocksdict = rocksdict
        self.db = rocksdict.Rdict(str(path), options=options)
        self.batch = rocksdict.WriteBatch(raw_mode=True)
        self.last_offset: int | None = None

    def flush(self) -> None:
        if self.last_offset is None:
            return
        # the offset goes with the data it covers: one atomic write
        self.batch.put(OFFSET_KEY, str(self.last_offset).encode())
        self.db.write(self.batch)
        self.batch = self._rocksdict.WriteBatch(raw_mode=True)

    def close(self) -> None:
        self.flush()
        self.db.close()


def _load(reader: Any, tables_dir: Path, ranges: list[Range], total: int) -> int:
    """Load ``ranges`` a wave of ``WAVE_PARTITIONS`` at a time: each open store holds write
    buffers, so a wave bounds the memory whatever the number of partitions."""
    progress = _Progress(total)
    for first in range(0, len(ranges), WAVE_PARTITIONS):
        _load_wave(reader, tables_dir, ranges[first:first + WAVE_PARTITIONS], progress)
    return progress.done


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.reported = time.monotonic()

    def add(self, records: int) -> None:
        self.done += records
        now = time.monotonic()
        if now - self.reported >= PROGRESS_SECONDS:
            self.reported = now
            log.info("bulk restore: %d of %d changelog records", self.done, self.total)


def _load_wave(reader: Any, tables_dir: Path, ranges: list[Range], progress: _Progress) -> None:
    from confluent_kafka import KafkaError, TopicPartition

    by_tp = {(r.topic, r.partition): r for r in ranges}
    stores = {(r.topic, r.partition): _Store(partition_dir(tables_dir, r.table, r.partition))
              for r in ranges}
    reader.assign([TopicPartition(r.topic, r.partition, r.start) for r in ranges])
    open_tps = set(by_tp)
    try:
        while open_tps:
            messages = reader.consume(num_messages=BATCH_RECORDS, timeout=1.0)
            touched = set()
            done = 0
            for message in messages:
                error = message.error()
                tp = (message.topic(), message.partition())
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_tps.discard(tp)
                        continue
                    raise RuntimeError(f"reading changelog {tp[0]}:{tp[1]}: {error}")
                offset = message.offset()
                wanted = by_tp[tp]
                if offset >= wanted.end:  # written after the plan: Faust reads it
                    open_tps.discard(tp)
                    continue
                store = stores[tp]
                value = message.value()
                if value is None:
                    store.batch.delete(message.key())
                else:
                    store.batch.put(message.key(), value)
                store.last_offset = offset
                touched.add(tp)
                done += 1
                if offset == wanted.end - 1:
                    open_tps.discard(tp)
            for tp in touched:
                stores[tp].flush()
            progress.add(done)
    finally:
        reader.unassign()
        for store in stores.values():
            store.close()
