"""Carry out a ``Decision``: write the table entry, run the identity effects, send the records.

The order matters for at-least-once processing. The table write goes first (to RocksDB and the
changelog), then the effects (idempotent, retried while Redis is down), then the records. If the
worker dies anywhere in between, Kafka delivers the input again and the memo in the entry makes
the decision send the same records and run the same effects again, with the same ids.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust

from vprov.avro import AvroSerde
from vprov.codes import ErrorCode
from vprov.flows.common import Context, Source, dead_letter
from vprov.identity import IdentityRegistry, apply_effect
from vprov.outputs import DELETE, KEEP, Decision, Output
from vprov.topics import Catalogue

log = logging.getLogger(__name__)

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def now_ms() -> int:
    return int(time.time() * 1000)


def header_value(headers: Any, name: str) -> str | None:
    """A Kafka header as text; Faust hands headers over as a mapping or as (name, value) pairs."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == name and value is not None:
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return None


def encode_internal(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_internal(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


class Shell:
    def __init__(self, app: faust.App, catalogue: Catalogue, config: Any, serde: AvroSerde,
                 registry: IdentityRegistry) -> None:
        self.app = app
        self.catalogue = catalogue
        self.config = config
        self.serde = serde
        self.registry = registry
        self._topics: dict[str, faust.TopicT] = {}
        self.processed = 0
        self.failures = 0

    def topic(self, name: str) -> faust.TopicT:
        if name not in self._topics:
            self._topics[name] = self.app.topic(
                name, partitions=self.config.partitions, **RAW  # type: ignore[arg-type]
            )
        return self._topics[name]

    def context(self) -> Context:
        return Context(config=self.config, topics=self.catalogue, now_ms=now_ms())

    def source(self, event: faust.EventT) -> Source:
        message = event.message
        return Source(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            authenticated=header_value(message.headers, self.config.authenticated_header),
        )

    def encode(self, output: Output) -> bytes:
        if output.kind == "reply":
            return output.value.encode("utf-8")
        if output.kind == "event":
            return self.serde.encode(output.record or "", output.value, topic=output.topic)
        return encode_internal(output.value)

    async def send(self, outputs: list[Output]) -> None:
        for output in outputs:
            await self.topic(output.topic).send(
                key=output.key.encode("utf-8"), value=self.encode(output)
            )

    async def carry_out(self, decision: Decision, table: Any = None, key: str | None = None
                        ) -> None:
        if decision.state is DELETE:
            table.pop(key, None)
        elif decision.state is not KEEP:
            table[key] = decision.state
        for effect in decision.effects:
            await apply_effect(self.registry, effect)
        await self.send(decision.outputs)

    async def guarded(self, event: faust.EventT, step: Callable[[], Awaitable[None]]) -> None:
        """Run one input's step; an unexpected error dead-letters the input instead of stopping
        the agent, so one bad record never stalls its partition."""
        try:
            await step()
            self.processed += 1
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any single input
            self.failures += 1
            log.exception("processing %s failed; sending it to the dead-letter topic",
                          self.source(event).ref)
            record = dead_letter(self.context(), self.source(event), event.message.value or b"",
                                 ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            await self.send([record])
