"""confluent-kafka clients for the command-line tools (register, simulate, replay, status).

They take the configuration, a cluster of it, or a bare bootstrap address:
``vprov.kafka.settings`` adds the TLS and SASL settings. ``ClusterProducer`` and
``ClusterReader`` serve tools whose topics live on several clusters (regions with clusters of
their own): each topic on the cluster the topic catalogue places it.

Producers use the murmur2 partitioner, the same as the Java clients and the workers, so a record
keyed by VIN lands on the partition that holds that VIN's state. librdkafka's log lines go
through Python logging, de-duplicated (``vprov.kafka.librdkafka_log``; shown by ``vprov -v``).

Every client is closed where its work ends (``close_producer``, ``Consumer.close``, an admin
client's ``with``), never left to the garbage collector: a client that only the cycle collector
frees is cleared before its destructor runs, and librdkafka's teardown then calls back into a
half-cleared handle, which has crashed the interpreter (confluent-kafka-python issue 1761).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from vprov.config import Cluster
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.librdkafka_log import librdkafka_logger, routed
from vprov.kafka.settings import KafkaAccess, librdkafka

log = logging.getLogger(__name__)
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
Offsets = dict[tuple[str, int], int]


def producer(kafka: KafkaAccess | str, **overrides: object) -> Producer:
    settings = {
        **librdkafka(kafka),
        "partitioner": "murmur2_random",
        "linger.ms": 2,
        "enable.idempotence": True,
        "acks": "all",
        # librdkafka's warnings (a fresh broker still loading its coordinators, and the like)
        # are retried internally; errors are reported through delivery results
        **routed(),
    }
    settings.update(overrides)
    return Producer(settings)


def close_producer(out: Producer, timeout: float = 30) -> int:
    """Deliver what ``out`` still holds for up to ``timeout`` seconds, drop what is left, and
    destroy the client now; returns how many records were dropped. (``Producer.close`` alone
    would wait without end for a broker that is gone.)"""
    left = out.flush(timeout)
    if left:
        out.purge()
        out.flush(0)  # the purged records' delivery results
    out.close()
    return left


def close_admin(admin: AdminClient) -> None:
    """Destroy an admin client now (what leaving its ``with`` block does)."""
    admin.__exit__(None, None, None)


class Producing(Protocol):
    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...


def produce_when_room(out: Producing, topic: str, **record: Any) -> None:
    """``out.produce``, serving deliveries while librdkafka's local queue is full (it raises
    ``BufferError`` instead of waiting)."""
    while True:
        try:
            out.produce(topic, **record)
            return
        except BufferError:
            out.poll(0.01)


def consumer(kafka: KafkaAccess | str, group_id: str | None = None, **overrides: object
             ) -> Consumer:
    """A consumer reading from the start; without a group id, a throw-away group that commits
    nothing (readers of audit topics must not disturb anyone's offsets)."""
    settings = {
        **librdkafka(kafka),
        "group.id": group_id or f"vprov-reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": group_id is not None,
        "enable.partition.eof": True,
        "logger": librdkafka_logger(),
    }
    settings.update(overrides)
    return Consumer(settings)


class Handover:
    """The delivery callback of a ``ClusterProducer``'s clients: a record purged from a stuck
    client while a successor is set goes to the successor instead of being reported lost;
    every other result goes to the caller's callback. A class of its own, not a method of the
    ``ClusterProducer``: the clients hold their callback, and a cycle through them would leave
    them to the cycle collector (see the module's docstring)."""

    def __init__(self, on_delivery: Callable[[Any, Any], None] | None) -> None:
        self.on_delivery = on_delivery
        self.successor: Producer | None = None

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None and self.successor is not None and err.code() in PURGED:
            self.successor.produce(msg.topic(), key=msg.key(), value=msg.value(),
                                   partition=msg.partition(), headers=msg.headers())
            return
        if self.on_delivery is not None:
            self.on_delivery(err, msg)


class ClusterProducer:
    """The ``Producer`` calls the tools make (``produce``, ``poll``, ``flush``) over one producer
    per cluster: each record goes to the cluster its topic lives on (``Catalogue.home``). With
    one cluster it is one producer."""

    def __init__(self, catalogue: Catalogue, **overrides: object) -> None:
        self._catalogue = catalogue
        self._producers: dict[Cluster, Producer] = {}
        # every delivery result passes through the hand-over first (``renew_stuck``)
        self._handover = Handover(cast(Callable[[Any, Any], None] | None,
                                       overrides.get("on_delivery")))
        self._overrides = {**overrides, "on_delivery": self._handover}
        self._suspects: set[Cluster] = set()  # producers that looked stuck at the last check

    def _for(self, topic: str) -> Producer:
        try:
            cluster = self._catalogue.home(topic)
        except KeyError:  # not one of ours (a dead letter's foreign source): the global side
            cluster = self._catalogue.global_cluster
        if cluster not in self._producers:
            self._producers[cluster] = producer(cluster, **self._overrides)
        return self._producers[cluster]

    def renew_stuck(self, timeout: float = 2.0) -> int:
        """Replace each producer that holds records, cannot reach its cluster, and could not at
        the last call either, while a new client reaches the cluster at once; its records go to
        the new producer, in order. Returns how many producers were replaced.

        After its only broker restarted, a librdkafka 2.16 client has been seen to keep its
        records for good: it had dropped the broker, which a metadata response during the
        restart did not list, and never found it again (librdkafka issue 5153 reports the same
        of consumers)."""
        renewed = 0
        for cluster, old in list(self._producers.items()):
            if not len(old) or reaches(old, timeout) or not reaches(admin_client(cluster),
                                                                    timeout, close=True):
                self._suspects.discard(cluster)
                continue
            if cluster not in self._suspects:
                self._suspects.add(cluster)  # once more before acting: it may be reconnecting
                continue
            self._suspects.discard(cluster)
            log.warning("the producer for %s holds %d records and has lost the cluster, which "
                        "answers a new client: handing them to a new producer", cluster.name,
                        len(old))
            self._handover.successor = self._producers[cluster] = producer(cluster,
                                                                            **self._overrides)
            try:
                old.purge()
                old.poll(0)  # the purged records' results: each goes to the successor
            finally:
                self._handover.successor = None
            close_producer(old, 0)
            renewed += 1
        return renewed

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        self._for(topic).produce(topic, *args, **kwargs)

    def list_topics(self, topic: str, timeout: float = 10) -> Any:
        """``topic``'s metadata, from the cluster it lives on."""
        return self._for(topic).list_topics(topic, timeout=timeout)

    def poll(self, timeout: float = 0) -> int:
        served = 0
        for one in self._producers.values():
            served += one.poll(timeout / max(1, len(self._producers)))
        return served

    def flush(self, timeout: float = 30) -> int:
        return sum(one.flush(timeout) for one in self._producers.values())

    def close(self, timeout: float = 30) -> int:
        """Flush for up to ``timeout`` seconds and close every producer; returns how many
        records were dropped. A later ``produce`` opens a new one."""
        producers, self._producers = list(self._producers.values()), {}
        return sum(close_producer(one, timeout) for one in producers)


@dataclass
class _Follower:
    """One consumer of a ``ClusterReader``, with what its looks need."""

    cluster: Cluster
    topics: list[str]
    reader: Consumer
    starts: Offsets = field(default_factory=dict)  # where it was assigned
    last: Offsets = field(default_factory=dict)  # its positions at the last look
    lost: bool = False  # the last look could not reach its cluster

    def assign(self, starts: Offsets) -> None:
        self.reader.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
        self.starts = starts

    def positions(self) -> Offsets:
        return {**self.starts, **{
            (tp.topic, tp.partition): tp.offset
            for tp in self.reader.position([TopicPartition(t, p) for t, p in self.starts])
            if tp.offset >= 0}}

    def note(self) -> None:
        """Note its positions for the next look, without asking the cluster anything."""
        self.last = self.positions()

    def look(self, timeout: float) -> tuple[bool, Offsets]:
        """One look: whether it stopped fetching (``ClusterReader.renew_stuck``), and its
        positions, which the next look compares with."""
        positions = self.positions()
        try:
            highs = _ends(self.reader, positions, self.last, timeout)
        except KafkaException:  # it cannot reach the cluster: does anyone?
            lost = reaches(admin_client(self.cluster), timeout, close=True)
            stuck, self.lost, self.last = lost and self.lost, lost, {}
        else:  # positions count only from looks in which it reached the cluster
            stuck = stalled(self.last, positions, highs)
            self.lost, self.last = False, positions
        return stuck, positions


class ClusterReader:
    """A reader of topics that may live on several clusters: one consumer per cluster,
    assigned the partitions of its cluster's topics, consumed in turn."""

    def __init__(self, placed: dict[Cluster, list[str]], **overrides: object) -> None:
        self._overrides = overrides
        self._followers = [_Follower(cluster, topics, consumer(cluster, None, **overrides))
                           for cluster, topics in placed.items() if topics]

    def assign_ends(self, timeout: float = 10) -> None:
        """Each topic from its end now: only the records written from here on."""
        for follower in self._followers:
            reader, ends = follower.reader, {}
            for topic in follower.topics:
                meta = reader.list_topics(topic, timeout=timeout).topics[topic]
                if meta.error is not None:
                    raise KafkaException(meta.error)
                for p in meta.partitions:
                    ends[(topic, p)] = reader.get_watermark_offsets(TopicPartition(topic, p),
                                                                    timeout=timeout)[1]
            follower.assign(ends)

    def assign_beginnings(self, partitions: int) -> None:
        """Partitions 0 to ``partitions`` - 1 of each topic from their first record."""
        for follower in self._followers:
            follower.assign({(t, p): 0 for t in follower.topics for p in range(partitions)})

    def note_positions(self) -> None:
        """What a call of ``renew_stuck`` compares with, noted at no cost: the looks themselves
        ask the cluster for end offsets partition by partition, which takes a while."""
        for follower in self._followers:
            follower.note()

    def renew_stuck(self, timeout: float = 2.0) -> int:
        """Replace each consumer that stopped fetching: records wait past its position on a
        partition whose position has not moved since the last call (or ``note_positions``),
        or it could not reach its cluster at this call and the last while a new client can.
        The new one goes on from the same positions. Returns how many were replaced
        (``ClusterProducer.renew_stuck`` says why this is needed). Calls should be further
        apart than a reconnection's backoff. A call blocks while it asks for the end offsets
        (up to ``timeout`` per consumer)."""
        renewed = 0
        for n, old in enumerate(self._followers):
            stuck, positions = old.look(timeout)
            if not stuck:
                continue
            log.warning("the reader of %s stopped fetching although records wait: going on "
                        "from the same offsets with a new consumer", old.cluster.name)
            fresh = _Follower(old.cluster, old.topics,
                              consumer(old.cluster, None, **self._overrides))
            fresh.assign(positions)
            self._followers[n] = fresh
            old.reader.close()
            renewed += 1
        return renewed

    def consume(self, count: int, timeout: float) -> list[Any]:
        """Up to ``count`` records: those already fetched at once, else the first to come
        within ``timeout`` and any fetched with it. (librdkafka's batch consume waits out its
        whole timeout unless the batch fills, and every record it returns waited as long.)"""
        found: list[Any] = []
        for follower in self._followers:
            found += follower.reader.consume(count, 0)
        if found or timeout <= 0:
            return found
        for follower in self._followers:  # the wait shared among the clusters, as before
            first = follower.reader.poll(timeout / len(self._followers))
            if first is not None:  # librdkafka refuses a batch of none
                return [first, *(follower.reader.consume(count - 1, 0) if count > 1 else [])]
        return found

    def close(self) -> None:
        for follower in self._followers:
            follower.reader.close()


def _ends(reader: Consumer, positions: Offsets, last: Offsets, timeout: float) -> Offsets:
    """End offsets of the partitions whose position has not moved since ``last``, for as
    long as ``timeout`` allows; partitions the cluster does not have (a topic not created yet)
    are left out. Raises ``KafkaException`` when the reader cannot reach the cluster."""
    metadata = reader.list_topics(timeout=timeout).topics
    began = time.monotonic()
    ends: Offsets = {}
    for (topic, partition), offset in positions.items():
        meta = metadata.get(topic)
        if last.get((topic, partition)) != offset or meta is None or meta.error is not None \
                or partition not in meta.partitions:
            continue
        if time.monotonic() - began > timeout:
            break  # the next look sees the rest
        ends[(topic, partition)] = reader.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout)[1]
    return ends


def stalled(last: Offsets, positions: Offsets, highs: Offsets) -> bool:
    """Whether a reader stopped fetching: on a partition it was at the same position at the
    last check, and records wait past it (``highs``: end offsets of such partitions)."""
    return any(last.get(key) == offset and highs.get(key, offset) > offset
               for key, offset in positions.items())


def reaches(client: Producer | Consumer | AdminClient, timeout: float, close: bool = False
            ) -> bool:
    """Whether ``client`` gets the cluster's metadata within ``timeout``; ``close``: it was
    made for the question, and is closed after it."""
    try:
        client.list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False
    finally:
        if close:
            close_admin(cast(AdminClient, client))


def admin_client(kafka: KafkaAccess | str, **overrides: object) -> AdminClient:
    # librdkafka's log lines go through Python logging, de-duplicated (librdkafka_log)
    # cast: the client's annotations allow only scalar values, but it takes a logger object
    return AdminClient(cast(dict[str, Any], {**librdkafka(kafka), "socket.timeout.ms": 10000,
                                             "logger": librdkafka_logger(), **overrides}))
