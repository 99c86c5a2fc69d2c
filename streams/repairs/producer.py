"""The workers' Kafka producer: librdkafka (confluent-kafka) behind Faust's producer interface.

Faust's own producer (aiokafka) builds, batches and sends every produce request in Python on the
event loop. Handing the records to librdkafka instead moves that work to its C threads: the
event loop only enqueues a record and, later, settles its delivery future
(``bench/findings.md``, "librdkafka producer"). Faust's tables, its producer buffer and the commit
path are unchanged; they reach this class through ``Transport.Producer``.

- **Deliveries** are reported by librdkafka from ``poll``: a thread of this producer polls and
  hands each batch of results to the event loop in one callback.
- **Flush** (Faust runs it before every offset commit): the buffer of table changelog records
  first, then every record handed to librdkafka. A record whose delivery failed fails the flush
  and so the commit: the input is read again after a restart, never skipped.
- **Partitions**: ``murmur2_random``, the partitioner of aiokafka and of the Java client, so a
  record keyed by VIN lands where the VIN's state is, as with Faust's own producer.
- **Idempotence** on: librdkafka retries a request without duplicating or reordering records.
- **Two clients.** librdkafka sends each partition's records in a produce request of its own
  (its issue 1700), and a worker writes about seventeen records per vehicle, nearly all to
  different partitions: one request, and one round of broker work, per record. Records that no
  answer waits for and one worker alone writes to a partition (``Batching``: table changelogs,
  onboarding requests, the registration index's commands) go through a second client that
  lingers longer, so each of its requests carries several records of a partition. Each topic
  uses one client, so a partition's records keep their order; the flush before a commit sends
  and waits for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic
from faust.exceptions import ProducerSendError
from faust.transport import base
from faust.transport.producer import ProducerBuffer
from faust.types import TP, HeadersArg, RecordMetadata, TransportT
from mode.utils.times import Seconds, want_seconds

from streams.repairs.commit_guard import drain_buffer
from vprov.kafka.clients import close_admin, close_producer
from vprov.kafka.librdkafka_log import routed
from vprov.kafka.partitioning import owner
from vprov.kafka.settings import LEADER_MOVES

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1  # the delivery thread's longest wait, and so its reaction to a stop
FULL_QUEUE_PAUSE = 0.005  # librdkafka's local queue is full: let deliveries make room
SLOW_FLUSH_SECONDS = 1.0  # a flush longer than this is logged


@dataclass(frozen=True)
class Batching:
    """Records of ``topics`` wait up to ``linger_ms`` for more of their partition, on a client of
    their own; 0, or no topics: one client for everything."""

    topics: frozenset[str] = frozenset()
    linger_ms: int = 0


NO_BATCHING = Batching()

Delivery = tuple[asyncio.Future[RecordMetadata], "confluent_kafka.KafkaError | None",
                 "confluent_kafka.Message"]


class LibrdkafkaProducer(base.Producer):
    """Faust's producer interface over one ``confluent_kafka.Producer``."""

    allow_headers = True

    def __init__(self, transport: TransportT, *, settings: Mapping[str, Any],
                 batching: Batching = NO_BATCHING, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self._settings = {
            **settings,
            **LEADER_MOVES,  # a partition that moves is followed within a fraction of a second
            "client.id": self.client_id,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "message.max.bytes": self.max_request_size,
            "compression.type": self.compression_type or "none",
            # retried for as long as Faust's own producer would wait for a request
            "message.timeout.ms": int(self.request_timeout * 1000),
            **routed(),  # warnings are retried inside librdkafka; errors reach deliveries
        }
        self._batching = batching
        self._producer: confluent_kafka.Producer | None = None
        self._batched: confluent_kafka.Producer | None = None  # the batching client, if any
        self._pollers: list[threading.Thread] = []
        self._deliveries: deque[Delivery] = deque()
        self._settle_scheduled = False
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._partition_counts: dict[str, int] = {}
        self._connection = dict(settings)  # brokers and credentials, for the admin client
        self._admin: AdminClient | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def on_start(self) -> None:
        await super().on_start()  # the buffer of table changelog records
        self._producer = confluent_kafka.Producer(self._settings)
        batching = self._batching
        if batching.topics and batching.linger_ms > self._settings["linger.ms"]:
            self._batched = confluent_kafka.Producer({
                **self._settings, "linger.ms": batching.linger_ms,
                "client.id": f"{self.client_id}-batched"})
        self._stopping.clear()
        self._pollers = [
            threading.Thread(target=self._poll_deliveries, args=(client,), daemon=True,
                             name=f"{self.client_id}-deliveries-{n}")
            for n, client in enumerate(self._clients())]
        for poller in self._pollers:
            poller.start()

    def _client_for(self, topic: str) -> confluent_kafka.Producer:
        if self._batched is not None and topic in self._batching.topics:
            return self._batched
        return self._ensure_producer()

    def _clients(self) -> list[confluent_kafka.Producer]:
        return [c for c in (self._producer, self._batched) if c is not None]

    async def on_stop(self) -> None:
        await super().on_stop()
        clients = self._clients()
        loop = asyncio.get_running_loop()
        left = sum(await asyncio.gather(
            *(loop.run_in_executor(None, client.flush, 30.0) for client in clients)))
        if left:
            log.error("stopped with %d records not yet delivered to Kafka; their input "
                      "offsets were not committed and are read again at the next start", left)
        self._stopping.set()
        for poller in self._pollers:
            await loop.run_in_executor(None, poller.join)
        self._settle()
        self._producer = self._batched = None
        # closed here, not left to the garbage collector (vprov.kafka.clients)
        for client in clients:
            close_producer(client, 0)
        if self._admin is not None:
            close_admin(self._admin)
            self._admin = None

    # --- sending ---------------------------------------------------------------------------

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None,
                   headers: HeadersArg | None, *,
                   transactional_id: str | None = None) -> Awaitable[RecordMetadata]:
        if transactional_id:
            raise ProducerSendError("transactions (exactly_once) are not supported by this "
                                    "producer; the workers run at_least_once")
        producer = self._client_for(topic)
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        self.app.on_produce_message.send(key=key, value=value, partition=partition,
                                         timestamp=timestamp, headers=headers)
        future: asyncio.Future[RecordMetadata] = self.loop.create_future()
        record: dict[str, Any] = {"key": key, "value": value,
                                  "on_delivery": partial(self._on_delivery, future)}
        if partition is not None:
            record["partition"] = partition
        if timestamp:
            record["timestamp"] = int(timestamp * 1000)
        if headers:
            record["headers"] = headers
        while True:
            try:
                producer.produce(topic, **record)
                return future
            except BufferError:
                await asyncio.sleep(FULL_QUEUE_PAUSE)
            except confluent_kafka.KafkaException as exc:
                raise ProducerSendError(f"Error while sending to {topic}: {exc}") from exc

    async def send_and_wait(self, topic: str, key: bytes | None, value: bytes | None,
                            partition: int | None, timestamp: float | None,
                            headers: HeadersArg | None, *,
                            transactional_id: str | None = None) -> RecordMetadata:
        future = await self.send(topic, key, value, partition, timestamp, headers,
                                 transactional_id=transactional_id)
        return await future

    async def flush(self) -> None:
        await drain_buffer(cast(ProducerBuffer, self.buffer))
        clients = self._clients()
        if clients:
            began, waiting = time.monotonic(), sum(len(client) for client in clients)
            # a flush sends what lingers at once: the batching client does not hold a commit
            await asyncio.gather(*(self._flush_client(client) for client in clients))
            self._settle()
            took = time.monotonic() - began
            if took > SLOW_FLUSH_SECONDS:  # the commit waits as long: name what held it
                log.warning("the flush before an offset commit waited %.1f s for %d records "
                            "to be acknowledged", took, waiting)
        if self._failure is not None:
            raise ProducerSendError(f"a record was not delivered: {self._failure}")

    async def _flush_client(self, client: confluent_kafka.Producer) -> None:
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, client.flush, POLL_SECONDS * 10):
            if self.should_stop:
                break

    # --- deliveries (librdkafka's thread -> the event loop) ---------------------------------

    def _on_delivery(self, future: asyncio.Future[RecordMetadata],
                     error: confluent_kafka.KafkaError | None,
                     message: confluent_kafka.Message) -> None:
        # on the delivery thread (or a flush's executor thread): queue, and wake the loop
        # once per batch rather than once per record
        self._deliveries.append((future, error, message))
        if not self._settle_scheduled:
            self._settle_scheduled = True
            # a closed loop raises RuntimeError: nobody waits for these any more
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._settle)

    def _poll_deliveries(self, client: confluent_kafka.Producer) -> None:
        while not self._stopping.is_set():
            client.poll(POLL_SECONDS)

    def _settle(self) -> None:
        self._settle_scheduled = False
        deliveries = self._deliveries
        while deliveries:
            future, error, message = deliveries.popleft()
            if error is not None:
                exc = ProducerSendError(f"{message.topic()}: {error.str()}")
                if self._failure is None:
                    self._failure = exc
                    log.error("a record for %s was not delivered: %s; the next offset commit "
                              "fails, so its input is processed again", message.topic(),
                              error.str())
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                # a delivered record always has them (None only on a consumer's error event)
                topic, partition = cast(str, message.topic()), cast(int, message.partition())
                stamp_type, stamp = message.timestamp()
                future.set_result(RecordMetadata(
                    topic, partition, TP(topic, partition), cast(int, message.offset()),
                    stamp / 1000.0 if stamp_type else None, stamp_type or None))

    # --- the rest of Faust's producer interface --------------------------------------------

    def _ensure_producer(self) -> confluent_kafka.Producer:
        if self._producer is None:
            raise ProducerSendError("the producer is not started")
        return self._producer

    async def create_topic(self, topic: str, partitions: int, replication: int, *,
                           config: Mapping[str, Any] | None = None, timeout: Seconds = 20.0,
                           retention: Seconds | None = None, compacting: bool | None = None,
                           deleting: bool | None = None, ensure_created: bool = False
                           ) -> None:
        """Create ``topic`` unless it exists (the workers create theirs before Faust starts,
        ``vprov.kafka.topic_admin.ensure_topics``, so this is normally a no-op)."""
        if not self.app.conf.topic_allow_declare:
            return
        settings = {k: str(v) for k, v in (config or {}).items()}
        policies = [name for name, on in (("compact", compacting), ("delete", deleting)) if on]
        if policies:
            settings["cleanup.policy"] = ",".join(policies)
        if retention:
            settings["retention.ms"] = str(int(want_seconds(retention) * 1000))
        if self._admin is None:  # Faust declares every topic at start: one client for them all
            self._admin = AdminClient({**self._connection, **routed()})
        new = NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                       config=settings)
        future = self._admin.create_topics([new],
                                           operation_timeout=want_seconds(timeout))[topic]
        try:
            await asyncio.wrap_future(future)
        except confluent_kafka.KafkaException as exc:
            if exc.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def key_partition(self, topic: str, key: bytes) -> TP:
        """The partition the producer's murmur2 partitioner gives ``key``."""
        count = self._partition_counts.get(topic)
        if count is None:
            meta = self._ensure_producer().list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise ProducerSendError(f"topic {topic}: {meta.error}")
            count = self._partition_counts[topic] = len(meta.partitions)
        return TP(topic, owner(key, count))

    def supports_headers(self) -> bool:
        return True

    async def begin_transaction(self, transactional_id: str) -> None:
        raise NotImplementedError("transactions are not supported; at_least_once only")

    async def commit_transaction(self, transactional_id: str) -> None:
        raise NotImplementedError("transactions are not supported; at_least_once only")

    async def abort_transaction(self, transactional_id: str) -> None:
        raise NotImplementedError("transactions are not supported; at_least_once only")

    async def stop_transaction(self, transactional_id: str) -> None:
        raise NotImplementedError("transactions are not supported; at_least_once only")

    async def maybe_begin_transaction(self, transactional_id: str) -> None:
        raise NotImplementedError("transactions are not supported; at_least_once only")

    async def commit_transactions(self, tid_to_offset_map: Mapping[str, Mapping[TP, int]],
                                  group_id: str, start_new_transaction: bool = True) -> None:
        raise NotImplementedError("transactions are not supported; at_least_once only")
