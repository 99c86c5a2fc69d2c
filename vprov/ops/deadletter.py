"""``vprov deadletter``: list, show and redrive what the workers could not process.

A dead letter (Avro ``DeadLetter`` on ``provisioning.deadletter``) keeps the raw record, its key,
where it came from and why it failed. Once the cause is fixed (a bug, a configuration), an
operator re-publishes selected records to their source topic: the workers process them like any
input, so a request already answered gets its original answer again, and a new one is decided.
The redriven record carries a ``vprov-redriven-from`` header naming the dead letter; it has no
``authenticated-device-id`` header (the dead letter does not keep headers): redriving is an
operator's act.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_reader import Read, read_topic

REDRIVEN_HEADER = "vprov-redriven-from"


@dataclass(frozen=True)
class Selection:
    """Which dead letters: every given criterion must hold."""

    ids: frozenset[str] = frozenset()
    code: int | None = None
    source_topic: str | None = None
    since_ms: int | None = None

    @property
    def empty(self) -> bool:
        return not self.ids and self.code is None and self.source_topic is None \
            and self.since_ms is None

    def matches(self, letter: dict[str, Any]) -> bool:
        if self.ids and letter["dead_letter_id"] not in self.ids:
            return False
        if self.code is not None and letter["error_code"] != self.code:
            return False
        if self.source_topic is not None and letter["source_topic"] != self.source_topic:
            return False
        return self.since_ms is None or _millis(letter["received_at"]) >= self.since_ms


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def _stamp(value: Any) -> str:
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    return when.isoformat(timespec="milliseconds")


def select(records: Iterable[Read], selection: Selection) -> list[dict[str, Any]]:
    """The decoded dead letters that match (records that do not decode are skipped)."""
    return [r.value for r in records if r.value is not None and selection.matches(r.value)]


def payload_text(payload: bytes) -> str:
    """The payload as a person reads it: indented JSON, else text, else escaped bytes."""
    try:
        return json.dumps(json.loads(payload), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return repr(payload)


def line(letter: dict[str, Any]) -> str:
    key = (letter["key"] or b"").decode("utf-8", "replace")
    source = f"{letter['source_topic']}:{letter['source_partition']}:{letter['source_offset']}"
    return (f"{letter['dead_letter_id']}  {_stamp(letter['received_at'])}  "
            f"{letter['error_code']:>5}  {source}  key={key or '-'}  "
            f"{letter['error_message'][:80]}")


def details(letter: dict[str, Any]) -> str:
    key = (letter["key"] or b"").decode("utf-8", "replace")
    return "\n".join([
        f"dead letter {letter['dead_letter_id']}",
        f"  received   {_stamp(letter['received_at'])}",
        f"  source     {letter['source_topic']} partition {letter['source_partition']} "
        f"offset {letter['source_offset']}",
        f"  key        {key or '-'}",
        f"  error      {letter['error_code']}: {letter['error_message']}",
        f"  payload    {len(letter['payload'])} bytes:",
        payload_text(letter["payload"]),
    ])


def read(config: Config, since_ms: int | None, timeout: float) -> list[Read]:
    """The dead letters of every cluster: each worker writes its own on its cluster (the global
    one, and each region's when regions have clusters of their own)."""
    topic = Catalogue(config).deadletter
    found: list[Read] = []
    for cluster in Catalogue(config).clusters_of(topic):
        view = config.seen_from(cluster.name if cluster.name in config.regions else None)
        found += read_topic(view, topic, "DeadLetter", since_ms=since_ms, timeout=timeout)
    return found


def redrive(config: Config, letters: list[dict[str, Any]], dry_run: bool, out: TextIO,
            timeout: float = 30.0) -> int:
    """Publish each letter's record to its source topic (or say what would be); the number
    the broker confirmed (or that would be sent)."""
    for letter in letters:
        verb = "would redrive" if dry_run else "redrive"
        out.write(f"{verb} {letter['dead_letter_id']} -> {letter['source_topic']} "
                  f"(key {(letter['key'] or b'').decode('utf-8', 'replace') or '-'})\n")
    if dry_run or not letters:
        return len(letters)
    from vprov.kafka.clients import ClusterProducer

    confirmed = 0
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        nonlocal confirmed
        if err is None:
            confirmed += 1
        else:
            failures.append(str(err))

    sender = ClusterProducer(Catalogue(config))  # each source topic on its own cluster
    for letter in letters:
        sender.produce(letter["source_topic"], key=letter["key"], value=letter["payload"],
                       headers=[(REDRIVEN_HEADER, letter["dead_letter_id"].encode())],
                       on_delivery=delivered)
        sender.poll(0)
    sender.flush(timeout)
    if failures:
        out.write(f"{len(failures)} not delivered: {failures[0]}\n")
    return confirmed
