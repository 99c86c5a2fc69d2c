"""Carry out a ``Decision``: run the identity effects, write the table entry, send the records.

The order matters for at-least-once processing. The effects go first (idempotent, retried while
the registry is down), then the table write (to RocksDB and the changelog), then the records. If
the worker dies anywhere in between, Kafka delivers the input again: before the write, the input
is decided again from the state before and repeats the effects; after it, the memo in the entry
makes the decision send the same records and run the same effects again, with the same ids.

Errors are split in two. Anything that goes wrong while decoding an input, deciding, or encoding
the records is about that input: it goes to the dead-letter topic and the partition moves on.
Anything that goes wrong while carrying out a decision is about the infrastructure: it is retried
until it succeeds, holding the partition, because moving on would lose the input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import faust

from streams.entry_locks import EntryLocks
from streams.in_flight import KeyedWindow
from streams.store_options import rocksdb_options
from vprov.core.codes import ErrorCode
from vprov.core.outputs import DELETE, KEEP, Decision, Output
from vprov.flows.common import dead_letter
from vprov.flows.context import Context, Source
from vprov.flows.lifecycle import TransitionRefused
from vprov.flows.validation import routing_vin
from vprov.identity import IdentityRegistry, apply_effect
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.partitioning import ORIGIN_HEADER, origin_value, owner, parse_origin

if TYPE_CHECKING:
    from streams.metrics import Metrics
    from streams.repairs.bulk_restore import Restored

log = logging.getLogger(__name__)

# Table entries: keys are the raw UTF-8 key (VIN, device_id, system_id), as in the input topics,
# so Faust's table routing finds the owner of a key; values are plain JSON. Faust picks a table's
# serializers from its types: bytes keys are raw, untyped values JSON. Reads and writes may pass
# str keys (encoded as UTF-8); iteration yields bytes.
RETRY_MAX_SECONDS = 5.0
RETRY_REPORT_SECONDS = 30.0

# What one input step returns: the decision, and the table and key its state belongs to.
Step = tuple[Decision, Any, "str | None"]
# An input's key (its inputs go in order) and the work that carries it out
Planned = tuple["bytes | None", Callable[[], Awaitable[None]]]
# A record to send: topic, key, value, headers (None: none)
OutRecord = tuple[str, bytes, bytes, "list[tuple[str, bytes]] | None"]


def now_ms() -> int:
    return int(time.time() * 1000)


def record_time_ms(event: faust.EventT | None) -> int:
    timestamp = getattr(event.message, "timestamp", None) if event is not None else None
    if isinstance(timestamp, int | float) and timestamp > 0:
        # Faust exposes the Kafka timestamp in seconds (float); keep millisecond precision.
        return int(round(timestamp * 1000))
    return now_ms()


def header_value(headers: Any, name: str) -> str | None:
    """A Kafka header as text; Faust hands headers over as a mapping or as (name, value) pairs."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == name and value is not None:
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return None


def _header_items(headers: Any) -> list[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v if isinstance(v, bytes) or v is None else str(v).encode()) for k, v in items]


def encode_internal(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def dead_letter_code(exc: Exception) -> ErrorCode:
    """The code of an input that failed: a transition the lifecycle table refuses changes nothing
    (SPEC 2.3: 5000); any other failure, an unknown internal command among them, is the
    processor's own (9000, ``ErrorCode.INTERNAL_ERROR``)."""
    return exc.code if isinstance(exc, TransitionRefused) else ErrorCode.INTERNAL_ERROR


def key_text(event: faust.EventT) -> str:
    return (event.message.key or b"").decode("utf-8", errors="replace")


class Shell:
    def __init__(self, app: faust.App, catalogue: Catalogue, config: Any, serde: AvroSerde,
                 registry: IdentityRegistry, metrics: Metrics | None = None) -> None:
        self.app = app
        self.catalogue = catalogue
        self.config = config
        self.serde = serde
        self.registry = registry
        self.metrics = metrics  # counts each input with the records its decision sent
        self._topics: dict[str, faust.TopicT] = {}
        self.processed = 0
        self.dead_lettered = 0
        self.retries = 0
        self.forwarded = 0
        self.local_state_discarded = 0  # table partitions restored afresh at start
        self.bulk_restored: Restored | None = None  # what was read in bulk before Faust started
        self.changelog_records_applied = 0  # by Faust's recovery, to active and standby tables
        # the ingress' rerouted topics: their records carry their origin in a header
        self._rerouted: set[str] = set()
        self.entries = EntryLocks()  # the entries whose decisions are being carried out

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(
                name, partitions=self.config.partitions, key_type=bytes, value_type=bytes,
                key_serializer="raw", value_serializer="raw",
            )
        return self._topics[name]

    def context(self, event: faust.EventT | None = None) -> Context:
        """The decision's context. Its time is the input record's timestamp, not the clock, so
        processing the same record again after a crash decides exactly the same, down to the
        bytes of the answer. A record without a usable timestamp falls back to the clock."""
        return Context(config=self.config, topics=self.catalogue, now_ms=record_time_ms(event))

    def source(self, event: faust.EventT) -> Source:
        """Where the record came from. A record forwarded by the ingress names the record the
        producer sent, so its answer and dead-letter ids are the ones it would have had."""
        message = event.message
        topic, partition, offset = message.topic, message.partition, message.offset
        if topic in self._rerouted:
            origin = parse_origin(header_value(message.headers, ORIGIN_HEADER))
            if origin is not None:
                topic, partition, offset = origin
        return Source(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key,
            authenticated=header_value(message.headers, self.config.authenticated_header),
        )

    def encode(self, output: Output) -> OutRecord:
        """Topic, key, value and headers: a reply to an authenticated device's request names
        that device in the authenticated-device header (``Output.to``), so that the edge bridge
        gives it to the connection the request came from."""
        headers = None
        if output.kind == "reply":
            value = output.value.encode("utf-8")
            if output.to:
                headers = [(self.config.authenticated_header, output.to.encode("utf-8"))]
        elif output.kind == "event":
            value = self.serde.encode(output.record or "", output.value, topic=output.topic)
        else:
            value = encode_internal(output.value)
        return output.topic, output.key.encode("utf-8"), value, headers

    def table(self, name: str) -> Any:
        """A table of JSON entries keyed by the raw key, partitioned like every topic. The
        changelog records Faust's recovery applies to it (restores, standbys, takeovers) are
        counted in ``changelog_records_applied``."""
        table = self.app.Table(name, partitions=self.config.partitions, default=None,
                               key_type=bytes, value_type=None,
                               options=rocksdb_options(self.config))
        apply_batch = table.apply_changelog_batch

        def counted(batch: Any) -> None:
            batch = list(batch)
            self.changelog_records_applied += len(batch)
            apply_batch(batch)

        table.apply_changelog_batch = counted  # type: ignore[method-assign]
        return table

    def agent(self, topic: str, step: Callable[[faust.EventT], Step], name: str) -> None:
        """An agent that runs ``step`` on each record of ``topic``: up to
        ``flow.inputs_in_flight`` records at once, those of a key one after another, each
        acknowledged once carried out (``streams/in_flight.py``)."""

        def plan(event: faust.EventT) -> Planned:
            return event.message.key, partial(self.process, event, partial(step, event))

        async def consume(stream: faust.StreamT) -> None:
            await self._carry_out_each(plan, stream)

        self.app.agent(self.topic(topic), name=name)(consume)

    async def _carry_out_each(self, plan: Callable[[faust.EventT], Planned],
                              stream: faust.StreamT) -> None:
        """An agent's loop: each record's work as ``plan`` gives it, in a window of inputs
        under way, acknowledged once done. An input that fails (a defect) stops the agent at
        once, with its error, and Faust starts the agent again; when the agent stops, the
        inputs still under way stop unacknowledged and are read again (the watchdog seeks
        their partitions back to the first of them)."""
        agent = asyncio.current_task()

        def stop_agent(exc: BaseException) -> None:
            if agent is not None:
                agent.cancel()

        window = KeyedWindow(self.config.inputs_in_flight, on_failure=stop_agent)
        acking = cast(faust.Stream, stream).noack()  # StreamT does not declare it
        try:
            async for event in acking.events():
                key, work = plan(event)
                await window.submit(key, work, partial(acking.ack, event))
        except asyncio.CancelledError:
            window.raise_failure()  # stopped by an input's failure: that is the agent's error
            raise
        finally:
            window.cancel()

    def ingress_agent(self, topic: str, rerouted: str, step: Callable[[faust.EventT], Step],
                      name: str, *, by_vin: bool = False) -> None:
        """Agents for an external input topic whose producers may partition and key records their
        own way (SPEC 3.7). A record's routing key is its record key or, with ``by_vin``, the
        VIN its request names (``routing_vin``): the record key is a hint, and a gateway keys by
        what it has, a device id, a client id, or nothing. A record on the partition that owns
        its routing key (murmur2, like the tables) and keyed by it is processed where it is;
        another is forwarded once to ``rerouted``, keyed by its routing key, and processed there
        by the worker that owns that key's table partition. A record without a routing key has
        no state to find: it is processed where it is (and answered by its flow)."""
        partitions = self.config.partitions
        limit = self.config.max_payload_bytes
        self._rerouted.add(rerouted)

        def routing_key(message: Any) -> bytes | None:
            if by_vin:
                vin = routing_vin(message.value, max_payload_bytes=limit)
                if vin is not None:
                    return vin.encode("utf-8")
            return cast(bytes | None, message.key)

        def plan(event: faust.EventT) -> Planned:
            message = event.message
            key = routing_key(message)
            if key is not None and (key != message.key
                                    or owner(key, partitions) != message.partition):
                return key, partial(self._retrying, self.source(event).ref,
                                    partial(self._forward_counted, event, rerouted, key))
            return key, partial(self.process, event, partial(step, event))

        async def consume(stream: faust.StreamT) -> None:
            await self._carry_out_each(plan, stream)

        self.app.agent(self.topic(topic), name=name)(consume)
        self.agent(rerouted, step, name=f"{name}.rerouted")

    async def _forward_counted(self, event: faust.EventT, rerouted: str, key: bytes) -> None:
        await self._forward(event, rerouted, key)
        self.forwarded += 1

    async def _forward(self, event: faust.EventT, rerouted: str, key: bytes) -> None:
        message = event.message
        headers = [(k, v) for k, v in _header_items(message.headers) if k != ORIGIN_HEADER]
        headers.append((ORIGIN_HEADER,
                        origin_value(message.topic, message.partition, message.offset)))
        # The record keeps its timestamp: decisions take their time from it (``context``), so
        # the answer is the same, byte for byte, on either path. (+0.5 ms: Faust truncates.)
        timestamp = (record_time_ms(event) + 0.5) / 1000
        # cast: a header may have no value; Kafka carries None, Faust's annotation says bytes
        await self.topic(rerouted).send(key=key, value=message.value,
                                        timestamp=timestamp,
                                        headers=cast(list[tuple[str, bytes]], headers))

    async def process(self, event: faust.EventT, step: Callable[[], Step]) -> None:
        """Decide on one input and carry the decision out, one decision per table entry at a
        time (``streams/entry_locks.py``): an input whose entry another agent is carrying out a
        decision on waits for it, then decides again on what it wrote."""
        while True:
            try:
                decision, table, key = step()
                records = [self.encode(o) for o in decision.outputs]
            except Exception as exc:  # noqa: BLE001 - an input must never stop its partition
                await self._dead_letter(event, exc)
                return
            if not self.entries.busy(table, key):
                break
            await self.entries.wait_free(table, key)
        # no await between the decision and taking the entry: nothing decides on it in between
        async with self.entries.holding(table, key):
            await self._retrying(self.source(event).ref,
                                 lambda: self._carry_out(decision, records, table, key))
        self.processed += 1
        if self.metrics is not None:
            self.metrics.count(event, decision.outputs)

    async def _dead_letter(self, event: faust.EventT, exc: Exception) -> None:
        """An input its decision failed on (called while handling ``exc``): to the dead-letter
        topic with its code."""
        log.exception("cannot process %s; sending it to the dead-letter topic",
                      self.source(event).ref)
        self.dead_lettered += 1
        record = dead_letter(self.context(event), self.source(event),
                             event.message.value or b"", dead_letter_code(exc),
                             f"{type(exc).__name__}: {exc}")
        await self._retrying("dead-letter", lambda: self._send([self.encode(record)]))
        if self.metrics is not None:
            self.metrics.count(event, [record])

    async def _retrying(self, what: str, action: Callable[[], Any]) -> None:
        """Run ``action`` until it succeeds. An outage is reported in one line when it starts,
        at most every ``RETRY_REPORT_SECONDS`` while it lasts, and once when it is over."""
        delay = 0.1
        failures = 0
        reported = 0.0
        while True:
            try:
                await action()
                if failures:
                    log.warning("carrying out %s succeeded after %d retries", what, failures)
                return
            except Exception as exc:  # noqa: BLE001 - infrastructure: retry, never skip the input
                self.retries += 1
                failures += 1
                now = time.monotonic()
                if failures == 1 or now - reported >= RETRY_REPORT_SECONDS:
                    reported = now
                    log.warning("carrying out %s failed (%s: %s); retrying every %.0fs at most",
                                what, type(exc).__name__, exc, RETRY_MAX_SECONDS)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _carry_out(self, decision: Decision, records: list[OutRecord],
                         table: Any, key: str | None) -> None:
        # The effects first: a crash after them and before the write processes the input
        # again from the state before, which repeats them (each is idempotent); a crash after
        # the write would find the state that says they were done, and skip them for good.
        for effect in decision.effects:
            await apply_effect(self.registry, effect)
        if decision.state is DELETE:
            table.pop(key, None)
        elif decision.state is not KEEP:
            table[key] = decision.state
        await self._send(records)

    async def _send(self, records: list[OutRecord]) -> None:
        for topic, key, value, headers in records:
            await self.topic(topic).send(key=key, value=value, headers=headers)
