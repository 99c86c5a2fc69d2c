"""The Kafka transport of a worker's Faust app: Faust's aiokafka transport with the commit guard
(``streams/repairs/commit_guard.py``), the fetch settings of the configuration and, unless
``kafka.producer_client = "aiokafka"``, the librdkafka producer (``streams/repairs/producer.py``).

Faust builds its consumer and producer through ``app.transport`` (``Transport.Consumer`` and
``Transport.Producer``); ``install`` gives one app this transport, so nothing else in the
process changes. Faust passes aiokafka a fixed ``fetch_max_wait_ms=1500`` and no
``fetch_min_bytes``: ``TunedConsumerThread`` sets both on the aiokafka consumer it creates,
before it starts (aiokafka hands them to its fetcher in ``start``). It also gives the consumer's
offset commits a connection of their own (``commits_on_their_own_connection``, defect 6 of
docs/faust-defects.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiokafka
import faust
from aiokafka.client import ConnectionGroup
from aiokafka.protocol.commit import OffsetCommitRequest
from faust.transport.drivers import aiokafka as driver

from streams.repairs import faust_contract, fetch_pacing
from streams.repairs.commit_guard import (
    DrainingProducer,
    GuardedConsumer,
    GuardedConsumerThread,
    GuardedTopics,
)
from streams.repairs.fetch_pacing import FetchPacing, Pace
from streams.repairs.producer import NO_BATCHING, Batching, LibrdkafkaProducer
from streams.repairs.static_leave import leave_when_stopped


@dataclass(frozen=True)
class FetchSettings:
    """How long the broker may hold a fetch, and for how many bytes (``kafka.fetch_*``)."""

    min_bytes: int = 1  # aiokafka's default: answer as soon as one record is there
    max_wait_ms: int = 1500  # Faust's value
    # while records flow (streams/repairs/fetch_pacing.py); batch_wait_ms 0: never batch
    batch_bytes: int = 1
    batch_wait_ms: int = 0

    def pacing(self) -> FetchPacing:
        idle = Pace(self.min_bytes, self.max_wait_ms)
        flowing = Pace(self.batch_bytes, self.batch_wait_ms) if self.batch_wait_ms else None
        return FetchPacing(idle, flowing)


# The connection group of the offset commits, beside aiokafka's DEFAULT (fetches, metadata) and
# COORDINATION (heartbeats, joins, offset fetches): the client keeps one connection per node
# and group.
COMMIT_CONNECTION = "offset-commit"


def commits_on_their_own_connection(client: Any) -> None:
    """Send ``client``'s OffsetCommit requests on a connection of their own.

    A broker answers the requests of one connection in order. aiokafka sends the group's
    heartbeats and its offset commits on the same connection to the coordinator, and a commit
    waits until every in-sync replica of ``__consumer_offsets`` has it: while a SIGKILLed broker
    is still counted in sync (until the controller fences it, seconds later), the commit waits,
    the heartbeats queued behind it are read too late, and the coordinator drops the worker from
    its group after the session timeout. The group then rebalances, which a broker crash alone
    needs not: every partition's records are read again, and answers wait for it."""
    send = client.send

    async def send_routed(node_id: Any, request: Any, *,
                          group: Any = ConnectionGroup.DEFAULT) -> Any:
        if group == ConnectionGroup.COORDINATION and isinstance(request, OffsetCommitRequest):
            group = COMMIT_CONNECTION
        return await send(node_id, request, group=group)

    client.send = send_routed


class TunedConsumerThread(GuardedConsumerThread):
    def _create_worker_consumer(self, transport: driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        fetch = cast("Transport", self.transport).fetch
        consumer._fetch_min_bytes = fetch.min_bytes
        consumer._fetch_max_wait_ms = fetch.max_wait_ms
        commits_on_their_own_connection(consumer._client)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()  # creates and starts the consumer, and with it its fetcher
        consumer = self._consumer
        assert consumer is not None
        fetch_pacing.install(consumer._fetcher, cast("Transport", self.transport).fetch.pacing())

    async def on_thread_stop(self) -> None:
        if self._consumer is not None:  # started: its coordinator exists
            leave_when_stopped(self._consumer)
        await super().on_thread_stop()


class Consumer(GuardedConsumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """Faust's aiokafka transport for one app: the guarded consumer, the draining producer,
    the configured fetch settings."""

    Consumer = Consumer
    Producer = DrainingProducer

    def __init__(self, *args: Any, fetch: FetchSettings | None = None,
                 librdkafka: Mapping[str, Any] | None = None,
                 batching: Batching = NO_BATCHING, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch = fetch or FetchSettings()
        self.guarded = GuardedTopics()
        self.librdkafka = librdkafka  # connection settings; None: Faust's aiokafka producer
        self.batching = batching  # the librdkafka producer's batching client

    def create_producer(self, **kwargs: Any) -> Any:
        if self.librdkafka is None:
            return super().create_producer(**kwargs)
        return LibrdkafkaProducer(self, settings=self.librdkafka, batching=self.batching,
                                  **kwargs)

    def create_consumer(self, callback: Any, **kwargs: Any) -> Any:
        return super().create_consumer(callback, guarded=self.guarded, **kwargs)


def install(app: faust.App, fetch: FetchSettings,
            librdkafka: Mapping[str, Any] | None = None,
            batching: Batching = NO_BATCHING) -> Transport:
    """Give ``app`` this transport; call it right after creating the app, before anything
    reaches ``app.transport`` (declaring a topic or an agent does). ``librdkafka``: the
    connection settings of the librdkafka producer; None keeps Faust's aiokafka producer.
    ``batching``: the topics that producer sends through its batching client, and its linger.
    Fails with ``faust_contract.UnsupportedFaust`` when the installed Faust lacks what the
    guard uses."""
    faust_contract.check()
    transport = Transport(app.conf.broker_consumer, app, fetch=fetch, librdkafka=librdkafka,
                          batching=batching)
    app.transport = transport
    return transport


def transport_of(app: faust.App) -> Transport:
    transport = app.transport
    if not isinstance(transport, Transport):
        raise TypeError(f"{app.conf.id} runs without the guarded transport "
                        "(streams.repairs.transport.install)")
    return transport


def consumer_of(app: faust.App) -> GuardedConsumer:
    consumer = app.consumer
    if not isinstance(consumer, GuardedConsumer):
        raise TypeError(f"{app.conf.id} runs without the guarded consumer "
                        "(streams.repairs.transport.install)")
    return consumer
