"""A worker's RocksDB state is a cache of its changelog topics; the changelog is the truth.

Before Faust opens the tables, each local table partition is checked against its changelog on
the broker. Local state that cannot belong to that changelog is discarded, and Faust restores
the partition from the changelog as it does on a new machine:

- the persisted offset (the last changelog record the local state includes) is at or beyond the
  changelog's end: the topic was re-created or truncated (a rebuilt cluster, a restore);
- the changelog's topic id differs from the one recorded beside the state: the topic was deleted
  and created again, whatever its offsets now say.

Faust 0.15 would instead stop with ``ConsistencyError`` in the first case and silently keep
stale entries in the second. Kafka Streams treats a corrupted task the same way: wipe the local
store, restore from the changelog.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vprov.kafka.librdkafka_log import routed
from vprov.kafka.settings import KafkaAccess, librdkafka

log = logging.getLogger(__name__)

OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps the persisted offset
IDS_FILE = "changelog-topic-ids.json"


@dataclass(frozen=True)
class Stale:
    table: str
    partition: int
    reason: str

    def __str__(self) -> str:
        return f"{self.table}[{self.partition}]: {self.reason}"


def stale_partitions(persisted: Mapping[tuple[str, int], int | None],
                     ends: Mapping[tuple[str, int], int],
                     recorded_ids: Mapping[str, str], current_ids: Mapping[str, str]
                     ) -> list[Stale]:
    """The local table partitions to discard. ``persisted``: (table, partition) -> the offset
    the local state was persisted at (None: no offset, nothing applied yet); ``ends``: the
    changelog's end offset of each; ``recorded_ids``/``current_ids``: table -> changelog topic
    id when the state was written / now."""
    found = []
    for (table, partition), offset in sorted(persisted.items()):
        recorded, current = recorded_ids.get(table), current_ids.get(table)
        if recorded is not None and current is not None and recorded != current:
            found.append(Stale(table, partition, "its changelog topic was deleted and created "
                                                 "again (the topic id changed)"))
            continue
        end = ends.get((table, partition))
        if offset is not None and end is not None and offset >= end:
            found.append(Stale(table, partition, f"the state was persisted at changelog offset "
                                                 f"{offset}, the changelog ends at {end}"))
    return found


def partition_dir(tables_dir: Path, table: str, partition: int) -> Path:
    return tables_dir / f"{table}-{partition}.db"


def local_partitions(tables_dir: Path, table: str) -> list[int]:
    found = []
    for path in tables_dir.glob(f"{table}-*.db"):
        suffix = path.name[len(table) + 1:-3]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def read_persisted_offset(path: Path) -> int | None:
    """The offset Faust persisted in one table partition's RocksDB (read-only)."""
    import rocksdict

    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True),
                         access_type=rocksdict.AccessType.read_only())
    try:
        value = db.get(OFFSET_KEY)
    finally:
        db.close()
    return int(value) if value is not None else None


def reconcile(kafka: KafkaAccess | str, tables_dir: Path, changelogs: Mapping[str, str],
              timeout: float = 30.0, group_id: str = "vprov-local-state") -> list[Stale]:
    """Check every local partition of ``changelogs`` (table -> changelog topic) against the
    broker, discard the stale ones, record the topic ids; returns what was discarded."""
    if not tables_dir.exists():
        tables_dir.mkdir(parents=True, exist_ok=True)
    current_ids, ends = _broker_facts(kafka, group_id, changelogs,
                                      {t: local_partitions(tables_dir, t) for t in changelogs},
                                      timeout)
    ids_path = tables_dir / IDS_FILE
    recorded: dict[str, str] = {}
    if ids_path.exists():
        try:
            recorded = json.loads(ids_path.read_text())
        except ValueError:
            recorded = {}
    persisted = {}
    for table in changelogs:
        for partition in local_partitions(tables_dir, table):
            try:
                persisted[(table, partition)] = read_persisted_offset(
                    partition_dir(tables_dir, table, partition))
            except Exception as exc:  # noqa: BLE001 - unreadable local state is stale too
                log.warning("local state %s[%d] cannot be read (%s); it is restored from the "
                            "changelog", table, partition, exc)
                persisted[(table, partition)] = None
                _discard(tables_dir, [Stale(table, partition, "unreadable")])
    stale = stale_partitions(persisted, ends, recorded, current_ids)
    if stale:
        log.warning("local state disagrees with the changelog for %d table partitions; "
                    "discarding them and restoring from the changelog: %s", len(stale),
                    "; ".join(str(s) for s in stale))
        _discard(tables_dir, stale)
    ids_path.write_text(json.dumps(current_ids, sort_keys=True))
    return stale


def _discard(tables_dir: Path, stale: Iterable[Stale]) -> None:
    for item in stale:
        shutil.rmtree(partition_dir(tables_dir, item.table, item.partition), ignore_errors=True)


def _broker_facts(kafka: KafkaAccess | str, group_id: str, changelogs: Mapping[str, str],
                  partitions: Mapping[str, list[int]], timeout: float
                  ) -> tuple[dict[str, str], dict[tuple[str, int], int]]:
    """Topic ids of the changelogs, and the end offsets of the locally held partitions."""
    from confluent_kafka import Consumer, TopicCollection, TopicPartition
    from confluent_kafka.admin import AdminClient

    with AdminClient({**librdkafka(kafka), **routed()}) as admin:
        deadline = time.monotonic() + timeout
        ids: dict[str, str] = {}
        # the worker has just created missing topics: their metadata may take a moment to appear
        while True:
            wanted = sorted({t for table, t in changelogs.items() if table not in ids})
            described = admin.describe_topics(TopicCollection(wanted), request_timeout=timeout)
            for table, topic in changelogs.items():
                if table in ids:
                    continue
                try:
                    ids[table] = str(described[topic].result(timeout).topic_id)
                except Exception:  # noqa: BLE001 - not there yet; asked again below
                    continue
            if len(ids) == len(changelogs) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    missing = sorted(set(changelogs) - set(ids))
    if missing:
        log.warning("changelog topics of %s not found on the broker; their local state is "
                    "kept unchecked", ", ".join(missing))
    reader = Consumer({**librdkafka(kafka), "group.id": group_id,
                       "enable.auto.commit": False, **routed()})
    ends = {}
    try:
        for table, topic in changelogs.items():
            if table not in ids:
                continue
            for partition in partitions.get(table, []):
                ends[(table, partition)] = watermarks(reader, TopicPartition(topic, partition),
                                                      deadline)[1]
    finally:
        reader.close()
    return ids, ends


def watermarks(reader: Any, tp: Any, deadline: float) -> tuple[int, int]:
    """The partition's (log start, end) offsets; a topic created a moment ago may not have a
    leader yet (the worker creates missing topics just before), so retriable errors are
    retried until ``deadline`` (monotonic)."""
    from confluent_kafka import KafkaException

    while True:
        try:
            low, high = reader.get_watermark_offsets(tp, timeout=max(
                0.5, deadline - time.monotonic()))
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            if time.monotonic() >= deadline or not (error.retriable() or error.name() in (
                    "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE",
                    "UNKNOWN_TOPIC_OR_PART")):
                raise
            time.sleep(0.2)
