"""The edge bridge: one IoT broker (the global one, or a region's) and Kafka
(``vprov edge --scope global|R``; docs/architecture.md, "The device edge").

Device -> Kafka. One MQTT 5 session that the broker keeps across restarts (a fixed client id,
``clean_start`` off, a session expiry), subscribed with QoS 1 to ``device/+/out``: a plain
subscription, never a shared one (``$share`` hands a device's messages round-robin to several
subscribers and its order is lost). Each message becomes a Kafka record on the scope's request
topic (``provisioning.query`` for global, ``provisioning.device.<R>`` for a region), keyed by the
VIN its body names (``routing_vin``; else the device id), with the authenticated device in the
``authenticated-device-id`` header: the topic level the broker's ACL ties to the client, so a
device cannot speak for another. The broker's message is acknowledged (manual PUBACK) only once
Kafka has the record, and in the order the messages arrived: a message is acknowledged when it
and every message before it are in Kafka. A bridge that dies leaves the unacknowledged messages
in its session; the broker sends them again to the next bridge with that session, which writes
them to Kafka again (the workers' memo answers a repeated message id with the same bytes).

Kafka -> device. A consumer group (``vprov-gateway-<prefix>-<scope>``) on the scope's answer
topic; each answer is published with QoS 1, unchanged, to ``device/<D>/in``, D being the
device the answer's header names (the request's authenticated sender; a secondary device talks
through its primary's connection) or else the answer's ``device_id``. A partition's offset is
committed only up to the answers the broker has acknowledged, in order: a bridge that dies
publishes the unacknowledged ones again after a restart (a device may see an answer twice,
byte for byte the same).

Scaling. One bridge per broker carries a broker's traffic at the rates here (docs/operations.md).
More instances of a scope split the devices by a hash of the device id (``--shard i/n``): each
instance subscribes to every device's messages, forwards those of its shard and acknowledges
the others at once, so a device's messages always go through one instance, in order. The
answers are split by the consumer group. Change the number of shards only with every instance
of the scope stopped: the broker holds each instance's unacknowledged messages in its session.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from vprov.config import Config
from vprov.core.outputs import GLOBAL_SCOPE
from vprov.edge.mqtt import (
    OUT_FILTER,
    device_of,
    in_topic,
    new_client,
    scope_endpoint,
    session_properties,
)
from vprov.flows.validation import routing_vin
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import close_producer, consumer, producer
from vprov.kafka.settings import PROMPT_READER

log = logging.getLogger(__name__)
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 5
SESSION_EXPIRY_SECONDS = 24 * 3600  # how long the broker keeps a stopped bridge's messages
RECEIVE_MAXIMUM = 1000  # device messages in flight to the bridge, not yet acknowledged
MAX_UNANSWERED = 2000  # answers published and not yet acknowledged by the broker
STATS_SECONDS = 30.0
DRAIN_SECONDS = 10.0  # at a stop: how long to wait for Kafka and the broker to confirm


def shard_of(device_id: str, shards: int) -> int:
    return zlib.crc32(device_id.encode()) % shards


def valid_device(device_id: str) -> bool:
    """A device id that can be a topic level (no wildcard, separator or control character)."""
    return bool(device_id) and not any(c in device_id for c in "/+#\x00") \
        and device_id.isprintable()


def answer_target(value: bytes | None, headers: Any, header: str) -> str | None:
    """The device whose ``in`` topic gets an answer: the one its header names (the request's
    authenticated sender), else the answer's ``device_id``."""
    items = headers.items() if isinstance(headers, dict) else headers or ()
    for name, raw in items:
        if name == header and raw:
            return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return None
    device = doc.get("device_id") if isinstance(doc, dict) else None
    return device if isinstance(device, str) else None


@dataclass
class Inbound:
    """A device message on its way to Kafka."""

    mid: int
    qos: int
    generation: int  # the MQTT connection it came on: only that connection may acknowledge it
    done: bool = False


class InboundOrder:
    """Device messages in the order they arrived; ``complete`` returns those that may now be
    acknowledged: the run at the head of which every message is in Kafka."""

    def __init__(self) -> None:
        self._queue: deque[Inbound] = deque()

    def add(self, mid: int, qos: int, generation: int) -> Inbound:
        entry = Inbound(mid, qos, generation)
        self._queue.append(entry)
        return entry

    def complete(self, entry: Inbound, generation: int) -> list[Inbound]:
        entry.done = True
        ready = []
        while self._queue and self._queue[0].done:
            head = self._queue.popleft()
            if head.generation == generation:  # an older connection's: the broker resends it
                ready.append(head)
        return ready

    def __len__(self) -> int:
        return len(self._queue)


@dataclass
class PartitionLog:
    """The answers of one partition published and not yet all acknowledged."""

    pending: deque[list[Any]] = field(default_factory=deque)  # [offset, acknowledged]
    committable: int | None = None  # the offset to commit (next to read), once changed


class AnswerOffsets:
    """Per partition, the offset that may be committed: past every answer the broker has
    acknowledged, in order."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, int], PartitionLog] = {}

    def add(self, topic: str, partition: int, offset: int) -> list[Any]:
        item = [offset, False]
        self.parts.setdefault((topic, partition), PartitionLog()).pending.append(item)
        return item

    def acknowledged(self, topic: str, partition: int, item: list[Any]) -> None:
        item[1] = True
        part = self.parts.get((topic, partition))
        if part is None:
            return
        while part.pending and part.pending[0][1]:
            part.committable = part.pending.popleft()[0] + 1

    def take_commits(self) -> list[TopicPartition]:
        commits = []
        for (topic, partition), part in self.parts.items():
            if part.committable is not None:
                commits.append(TopicPartition(topic, partition, part.committable))
                part.committable = None
        return commits

    def forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.parts.pop((tp.topic, tp.partition), None)

    def unanswered(self) -> int:
        return sum(len(p.pending) for p in self.parts.values())


class BridgeRefused(RuntimeError):
    """The broker refused the bridge's credentials or a subscription: waiting would not help."""


class Bridge:
    def __init__(self, config: Config, scope: str, shard: int = 0, shards: int = 1,
                 instance: str | None = None) -> None:
        if scope != GLOBAL_SCOPE:
            config.region(scope)  # an unknown region: ConfigError
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} of {shards}: expected 0 <= shard < shards")
        self.config = config
        self.scope = scope
        self.shard, self.shards = shard, shards
        cat = Catalogue(config)
        region = None if scope == GLOBAL_SCOPE else scope
        self.request_topic = cat.query if region is None else cat.device(region)
        self.answer_topic = cat.query_response if region is None else cat.device_response(region)
        self.cluster = config.cluster(region)
        self.endpoint = scope_endpoint(config, scope)
        self.header = config.authenticated_header
        edge = config.edge
        name = f"{edge.bridge_username}-{config.app_prefix}-{scope}"
        if shards > 1:
            name += f"-{shard}of{shards}"
        self.client_id = instance or name  # fixed: the broker keeps the session under it
        self.group_id = f"vprov-gateway-{config.app_prefix}-{scope}"
        self.mqtt = new_client(self.client_id, edge.bridge_username, edge.bridge_password,
                               self.endpoint, edge.ca_location, manual_ack=True)
        self.mqtt.reconnect_delay_set(1, 5)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_publish = self._on_publish
        # paho's thread hands everything over through these; the main thread does the rest
        self._messages: queue.SimpleQueue[tuple[int, mqtt.MQTTMessage]] = queue.SimpleQueue()
        self._acks: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.generation = 0
        self.subscribed = threading.Event()
        self.inbound = InboundOrder()
        self.offsets = AnswerOffsets()
        self._published: dict[int, tuple[str, int, list[Any]]] = {}
        self.stopping = threading.Event()
        self.failure: tuple[int, str] | None = None
        self.stats = {"forwarded": 0, "skipped": 0, "answered": 0, "unroutable": 0}
        self.producer = producer(self.cluster, **{"queue.buffering.max.messages": 100_000})
        self.consumer = consumer(self.cluster, self.group_id, **{
            **PROMPT_READER, "enable.auto.commit": False, "enable.partition.eof": False,
            "session.timeout.ms": 10_000,
            "topic.metadata.refresh.interval.ms": 10_000,
            "heartbeat.interval.ms": 1_000})

    # --- paho's network thread --------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not reason.is_failure:
            # the messages of this connection carry its number: only this connection may
            # acknowledge them (set here, before its first message can arrive)
            self.generation += 1
        self._events.put(("connect", reason))
        if not reason.is_failure:
            # a session kept by the broker has the subscription already; asking again is harmless
            client.subscribe(OUT_FILTER, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        self._events.put(("subscribe", reasons[0] if reasons else None))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._events.put(("disconnect", reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
                    ) -> None:
        self._messages.put((self.generation, message))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._acks.put((mid, reason))

    # --- the main thread -----------------------------------------------------------------------

    def _on_delivery(self, entry: Inbound, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.fail(EXIT_UNREACHABLE, f"Kafka did not take a device message for "
                                        f"{msg.topic()}: {err.str()}")
            return
        self._complete(entry)

    def _complete(self, entry: Inbound) -> None:
        for ready in self.inbound.complete(entry, self.generation):
            self.mqtt.ack(ready.mid, ready.qos)

    def fail(self, code: int, reason: str) -> None:
        if self.failure is None:
            self.failure = (code, reason)
            log.error("edge bridge %s: %s", self.scope, reason)
        self.stopping.set()

    def _forward(self, generation: int, message: mqtt.MQTTMessage) -> None:
        entry = self.inbound.add(message.mid, message.qos, generation)
        device = device_of(message.topic)
        if device is None or not valid_device(device):
            self.stats["unroutable"] += 1
            self._complete(entry)  # not a device topic: nothing to forward
            return
        if self.shards > 1 and shard_of(device, self.shards) != self.shard:
            self.stats["skipped"] += 1
            self._complete(entry)  # another shard's device
            return
        payload = bytes(message.payload)
        vin = routing_vin(payload, max_payload_bytes=self.config.max_payload_bytes)
        key = (vin or device).encode("utf-8")
        while True:
            try:
                self.producer.produce(self.request_topic, key=key, value=payload,
                                      headers=[(self.header, device.encode("utf-8"))],
                                      partition=-1,
                                      on_delivery=partial(self._on_delivery, entry))
                break
            except BufferError:
                self.producer.poll(0.01)
        self.stats["forwarded"] += 1

    def _publish_answer(self, msg: Message) -> None:
        topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), \
            int(msg.offset() or 0)
        item = self.offsets.add(topic, partition, offset)
        target = answer_target(msg.value(), msg.headers(), self.header)
        if target is None or not valid_device(target):
            log.warning("answer %s:%d:%d names no device: not delivered", topic, partition,
                        offset)
            self.stats["unroutable"] += 1
            self.offsets.acknowledged(topic, partition, item)
            return
        info = self.mqtt.publish(in_topic(target), msg.value() or b"", qos=1)
        self._published[info.mid] = (topic, partition, item)

    def _on_answer_ack(self, mid: int, reason: Any) -> None:
        found = self._published.pop(mid, None)
        if found is None:
            return
        if reason is not None and getattr(reason, "is_failure", False):
            self.fail(EXIT_REFUSED, f"the broker refused an answer ({reason}): check the "
                                    f"bridge user's role (publish device/+/in)")
            return
        topic, partition, item = found
        self.offsets.acknowledged(topic, partition, item)
        self.stats["answered"] += 1

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._commit(synchronous=True)
        self.offsets.forget(partitions)

    def _commit(self, synchronous: bool = False) -> None:
        commits = self.offsets.take_commits()
        if not commits:
            return
        try:
            if synchronous:
                self.consumer.commit(offsets=commits, asynchronous=False)
            else:
                self.consumer.commit(offsets=commits, asynchronous=True)
        except KafkaException as exc:
            log.warning("committing answer offsets failed (%s); they are read again", exc)

    def _handle_event(self, kind: str, reason: Any) -> None:
        if kind == "connect":
            if reason.is_failure:
                message = f"the {self.scope} broker at {self.endpoint} refused user " \
                          f"{self.config.edge.bridge_username!r}: {reason}; check " \
                          "VPROV_EDGE_BRIDGE_USERNAME and VPROV_EDGE_BRIDGE_PASSWORD"
                if reason.value in (0x86, 0x87, 0x85, 0x8C):  # bad credentials, not authorized
                    self.fail(EXIT_REFUSED, message)
                else:
                    log.warning("%s", message)
                return
            log.info("connected to the %s broker at %s", self.scope, self.endpoint)
        elif kind == "subscribe":
            if reason is None or reason.is_failure:
                self.fail(EXIT_REFUSED, f"the {self.scope} broker refused the subscription to "
                                        f"{OUT_FILTER}: {reason}; check the bridge user's role")
            else:
                self.subscribed.set()
        elif kind == "disconnect":
            self.subscribed.clear()
            if not self.stopping.is_set():
                log.warning("the %s broker at %s closed the connection (%s); reconnecting",
                            self.scope, self.endpoint, reason)

    def _step(self, wait: float) -> bool:
        """One turn of the main loop; whether anything happened."""
        busy = False
        while True:
            try:
                kind, reason = self._events.get_nowait()
            except queue.Empty:
                break
            self._handle_event(kind, reason)
        try:
            generation, message = self._messages.get(timeout=wait)
            busy = True
            self._forward(generation, message)
            for _ in range(500):
                generation, message = self._messages.get_nowait()
                self._forward(generation, message)
        except queue.Empty:
            pass
        self.producer.poll(0)
        while True:
            try:
                mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            busy = True
            self._on_answer_ack(mid, reason)
        if not self.stopping.is_set() and self.offsets.unanswered() < MAX_UNANSWERED:
            for msg in self.consumer.consume(200, 0):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("reading answers: %s", error)
                    continue
                busy = True
                self._publish_answer(msg)
        self._commit()
        return busy

    def _connect(self) -> None:
        """Connect (retrying while the broker is unreachable), start paho's network thread."""
        props = session_properties(SESSION_EXPIRY_SECONDS, RECEIVE_MAXIMUM)
        reported = 0.0
        while not self.stopping.is_set():
            try:
                self.mqtt.connect(self.endpoint.host, self.endpoint.port, keepalive=15,
                                  clean_start=False, properties=props)
                break
            except OSError as exc:  # refused, unreachable, timed out, TLS
                if time.monotonic() - reported >= 5:
                    reported = time.monotonic()
                    log.warning("not ready: the %s broker at %s is unreachable (%s); trying "
                                "again", self.scope, self.endpoint, exc)
                time.sleep(0.5)
        self.mqtt.loop_start()

    def _wait_for_topics(self) -> None:
        """Until the request and answer topics exist (the workers create them, or ``vprov
        topics create``): a subscription to a missing topic would wait minutes for metadata."""
        wanted = {self.request_topic, self.answer_topic}
        reported = 0.0
        while not self.stopping.is_set():
            try:
                missing = wanted - set(self.consumer.list_topics(timeout=5).topics)
            except KafkaException as exc:
                missing, why = wanted, str(exc)
            else:
                why = "not created yet (the workers create them, or vprov topics create)"
            if not missing:
                return
            if time.monotonic() - reported >= 10:
                reported = time.monotonic()
                log.warning("not ready: topics %s: %s", ", ".join(sorted(missing)), why)
            time.sleep(1)

    def run(self, ready: Callable[[], None] | None = None) -> int:
        """Bridge until stopped (SIGTERM, SIGINT, ``stop()``) or failed; the exit code."""
        self._wait_for_topics()
        self.consumer.subscribe([self.answer_topic], on_revoke=self._on_revoke)
        self._connect()
        last_stats = time.monotonic()
        announced = False
        try:
            while not self.stopping.is_set():
                busy = self._step(0.0 if announced and not self._messages.empty() else 0.01)
                if not announced and self.subscribed.is_set():
                    announced = True
                    log.info("edge bridge %s: %s (%s) -> %s, %s -> %s", self.scope,
                             OUT_FILTER, self.endpoint, self.request_topic, self.answer_topic,
                             "device/<id>/in")
                    if ready is not None:
                        ready()
                now = time.monotonic()
                if now - last_stats >= STATS_SECONDS:
                    last_stats = now
                    log.info("edge bridge %s: %s", self.scope, self.stats)
                if not busy:
                    continue
            self._drain()
        finally:
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
            self.consumer.close()
            # the drain has waited already: what Kafka has not confirmed by now was not
            # acknowledged over MQTT either, and the broker delivers it again to the next bridge
            close_producer(self.producer, 0)
        return self.failure[0] if self.failure else 0

    def _drain(self) -> None:
        """At a stop: let Kafka confirm what was sent and the broker what was published, so
        that the next bridge repeats as little as possible (it repeats the rest)."""
        if self.failure is not None:
            return
        until = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < until and (len(self.inbound) or self._published):
            self.producer.poll(0.01)
            while True:
                try:
                    mid, reason = self._acks.get_nowait()
                except queue.Empty:
                    break
                self._on_answer_ack(mid, reason)
        self._commit(synchronous=True)

    def stop(self) -> None:
        self.stopping.set()


def run_bridge(config: Config, scope: str, shard: int = 0, shards: int = 1) -> int:
    """``vprov edge``: run one bridge until SIGTERM or SIGINT."""
    bridge = Bridge(config, scope, shard, shards)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: bridge.stop())
    code = bridge.run()
    if bridge.failure is not None:
        print(f"error: {bridge.failure[1]}", flush=True)
    return code
