"""A real Faust app with the guarded transport, for the commit guard and watchdog tests: no
broker (nothing here connects), a fresh consumer and fresh guard state for every call.

Records reach the consumer the way Faust's conductor hands them over (``track_message``) and
are acknowledged the way a stream does (``Message.ack``); what Faust would commit is asked of
Faust's own selection (``_filter_committable_offsets``), which calls the guard's rule.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import faust
from faust.transport.consumer import ConsumerMessage
from faust.types import TP

from streams.repairs.commit_guard import GuardedConsumer
from streams.repairs.transport import FetchSettings, Transport, consumer_of, install

NOWHERE = "kafka://127.0.0.1:1"  # never contacted: no test here starts the app


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop of the test's own, which Faust's services pick up (and closed after it)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def guarded_app(strict: Iterable[str] = (), compacted: Iterable[str] = (),
                unguarded: Iterable[str] = (),
                fetch: FetchSettings | None = None) -> tuple[faust.App, GuardedConsumer]:
    """An app whose agents would read ``strict``, ``compacted`` and ``unguarded`` topics, with
    the guard protecting the first two; its consumer in the running state of a worker whose
    flow is active."""
    strict, compacted, unguarded = list(strict), list(compacted), list(unguarded)
    app = faust.App(f"test-guard-{uuid.uuid4().hex[:8]}", broker=NOWHERE)
    transport: Transport = install(app, fetch or FetchSettings())
    transport.guarded.protect(strict, compacted)
    for name in (*strict, *compacted, *unguarded):
        app.topics.add(app.topic(name))
    # what Faust's conductor does once subscribed: acknowledgements count for these topics
    asyncio.get_event_loop().run_until_complete(app.topics._update_indices())
    app.flow_control.resume()
    return app, consumer_of(app)


def deliver(consumer: GuardedConsumer, tp: TP, offset: int,
            generation: int | None = None) -> ConsumerMessage:
    """Hand a record to the streams (keep the message: the consumer holds it weakly)."""
    message = ConsumerMessage(
        tp.topic, tp.partition, offset, 0.0, 0, [], b"k", b"v", None, 1, 1, tp,
        generation_id=consumer.app.consumer_generation_id if generation is None else generation)
    consumer.track_message(message)
    return message


def process(consumer: GuardedConsumer, tp: TP, offsets: Iterable[int]) -> None:
    """Records handed to the streams and acknowledged after processing."""
    for offset in offsets:
        deliver(consumer, tp, offset).ack(consumer)


def set_committed(consumer: GuardedConsumer, offsets: dict[TP, int]) -> None:
    """As Faust records a seek to the committed offsets, or a successful commit."""
    consumer._committed_offset.update(offsets)


def commit_offset(consumer: GuardedConsumer, tp: TP) -> int | None:
    """The offset Faust's next commit would write for ``tp`` (None: none)."""
    return consumer._filter_committable_offsets([tp]).get(tp)


def commit(consumer: GuardedConsumer, tp: TP) -> int | None:
    """Faust's next commit of ``tp``, recorded as successful; the offset written, or None."""
    offset = commit_offset(consumer, tp)
    if offset is not None:
        set_committed(consumer, {tp: offset})
    return offset
