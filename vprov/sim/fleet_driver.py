"""The fleet driver: vehicles going through both flows as their edge software would.

A trip: the vehicle's primary sends PROVISION_QUERY; on a successful answer every device sends
DEVICE_PROVISION to the region the answer's ``iot_gateway_endpoint`` names (primary first, or
shuffled). A trip ends when each of its requests has an answer, or at its first failed answer.

Open loop (``rate``): vehicle i is due at t0 + i/rate whatever the answers do, so a late client or
a slow pipeline shows up as latency measured from ``due_at`` instead of as a lower offered load.
Closed loop (``window``): at most that many trips in flight. Neither: every vehicle at once.

One thread, one producer, one consumer: the client shares the machine with the broker and the
workers, so it does the least it can. Answers are read by a consumer assigned at the answer
topics' end offsets before the first trip starts, so none is missed and no older run's answer is
read. Message ids name the trip (``<tag>-<index>-q``, ``<tag>-<index>-d<k>``).

``vprov simulate``, the benchmark and the reliability tests drive their fleets with it; each adds
what it measures or checks through the hooks (``check``, ``on_answer``, ``on_end``, ...).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException, Message

from vprov.config import Cluster, Config
from vprov.core import envelope
from vprov.kafka.avro import AvroSerde, serde_from_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import ClusterProducer, ClusterReader, produce_when_room
from vprov.kafka.settings import PROMPT_READER
from vprov.ops.progress import progress
from vprov.ops.registration_file import to_record
from vprov.sim import fleet
from vprov.webclient import WebClient

INDEX_POLL_SECONDS = 0.05
MAX_RECONNECTS = 3  # an MQTT device whose connection breaks connects again at most this often
TICK_SECONDS = 0.5
# no answer for this long while trips wait: look for a Kafka client that stopped working
QUIET_SECONDS = 15.0


@dataclass(eq=False)
class Trip:
    """One vehicle's way through the flows; times are ``time.monotonic()`` seconds."""

    index: int  # names its message ids; unique within the driver's tag
    vehicle: fleet.SimVehicle
    due_at: float = math.nan  # when it was meant to start
    started_at: float = math.nan  # when its first request went out
    devices_at: float = math.nan  # when its device requests went out
    region: str | None = None  # home region, from the query answer's endpoint
    endpoint: str | None = None  # that endpoint (where an MQTT device connects next)
    sent: list[str] = field(default_factory=list)  # message ids of its requests
    waiting: set[str] = field(default_factory=set)  # message ids without an answer yet
    failure: str | None = None
    failure_code: str | None = None
    ended_at: float | None = None
    last_answer_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def ok(self) -> bool:
        return self.ended and self.failure is None


@dataclass(eq=False)
class Request:
    """One message a trip sent, and how many answers it has had."""

    message_id: str
    trip: Trip
    kind: str  # query, device, or a driver's own kind
    topic: str
    raw: bytes
    sent_at: float
    device: fleet.SimDevice | None = None
    answers: int = 0


class FleetDriver:
    """Drives trips through the workers of ``config``'s deployment."""

    def __init__(self, config: Config, tag: str, *, shuffle: bool = False,
                 rng: random.Random | None = None, progress_stream: TextIO | None = None) -> None:
        self.config = config
        self.catalogue = Catalogue(config)
        self.tag = tag
        self.shuffle = shuffle
        self.rng = rng or random.Random()
        self.progress_stream = progress_stream
        self.endpoints = {r.gateway_endpoint: r.code for r in config.regions.values()}
        self.answer_topics = {self.catalogue.query_response} | {
            self.catalogue.device_response(r) for r in config.regions}
        # Only failed deliveries call back: a callback per record would cost the client CPU.
        # each record to the cluster its topic lives on (one producer with one cluster)
        self.producer = ClusterProducer(self.catalogue, **{
            "delivery.report.only.error": True, "on_delivery": self._on_delivery})
        self.reader: Any = None  # assigned by listen()
        self.requests: dict[str, Request] = {}
        self.trips: list[Trip] = []
        self.by_vin: dict[str, Trip] = {}
        self.delivery_errors: Counter[str] = Counter()
        self.in_flight = 0
        self.failed = 0
        self.all_started_at: float | None = None
        self.stopped = threading.Event()
        self.last_answer_at = time.monotonic()
        self._last_client_check = 0.0
        # Kafka clients replaced after they stopped working, by kind
        self.clients_renewed: Counter[str] = Counter()
        # Forget an ended trip's requests (a long run's memory), and so its late repeats too.
        self.forget_ended = False
        self._bar: Any = None
        # devices as MQTT clients of the IoT brokers (use_mqtt), else records on the topics
        self.edge: Any = None
        self._closing: list[Trip] = []  # trips whose connections close once nothing is owed
        self.reconnects: Counter[Trip] = Counter()

    def use_mqtt(self) -> None:
        """Devices speak MQTT to the IoT brokers (vprov.edge.devices) instead of writing to the
        topics: requests go through their connections and the edge bridges, answers come back
        on them; a trip ends once its primary is refused by the global broker."""
        from vprov.edge.devices import EdgeDevices

        self.edge = EdgeDevices(self.config, self._on_edge_answer, self._on_edge_refused,
                                self._on_edge_lost)

    # --- hooks: what a driver measures or checks ------------------------------------------

    def check(self, request: Request, doc: dict[str, Any], topic: str) -> tuple[str, str] | None:
        """Why the first answer to a query or device request is a failure, as (reason, code)."""
        if doc.get("status") != envelope.STATUS_SUCCESS:
            code = (doc.get("property_bag") or {}).get("error_code")
            return f"{request.kind} {code}", str(code)
        return None

    def on_start(self, trip: Trip, now: float) -> None:  # before the trip's query is sent
        pass

    def on_devices(self, trip: Trip) -> None:  # before the trip's device requests are sent
        pass

    def on_answer(self, request: Request, doc: dict[str, Any], topic: str, raw: bytes,
                  now: float) -> None:  # every answer to a request of the driver, repeats too
        pass

    def on_end(self, trip: Trip) -> None:  # the trip ended (``trip.failure``: whether it failed)
        pass

    def on_other(self, topic: str, value: bytes) -> None:  # a dead letter
        pass

    def outstanding(self) -> bool:  # whether answers beyond the trips' own are still awaited
        return False

    def partition_for(self, trip: Trip, topic: str, key: bytes) -> int | None:
        return None  # the key's owner (murmur2); a driver may pick another

    def trip_outstanding(self, trip: Trip) -> bool:  # answers still owed to an ended trip
        return False

    # --- sending ----------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        self.delivery_errors[f"{msg.topic()}: {err.str()}"] += 1
        trip = self.by_vin.get((msg.key() or b"").decode(errors="replace"))
        if trip is not None:
            self.fail(trip, f"not delivered to {msg.topic()}: {err.str()}", "delivery")

    def produce(self, topic: str, key: str | bytes, value: bytes, partition: int | None = None
                ) -> None:
        key = key.encode() if isinstance(key, str) else key
        # partition -1: the producer's murmur2 partitioner picks the key's owner
        produce_when_room(self.producer, topic, key=key, value=value,
                          partition=-1 if partition is None else partition)

    def send(self, trip: Trip, kind: str, topic: str, raw: bytes, message_id: str,
             device: fleet.SimDevice | None = None) -> Request:
        now = time.monotonic()
        request = Request(message_id, trip, kind, topic, raw, now, device)
        self.requests[message_id] = request
        trip.sent.append(message_id)
        if math.isnan(trip.started_at):
            trip.started_at = now
        self.transmit(trip, topic, raw)
        return request

    def transmit(self, trip: Trip, topic: str, raw: bytes) -> None:
        """One request of ``trip`` on its way: over the primary's MQTT connection, or onto the
        topic keyed by VIN."""
        if self.edge is not None:
            self.edge.send(trip, topic, raw)
            return
        key = trip.vehicle.vin.encode()
        self.produce(topic, key, raw, self.partition_for(trip, topic, key))

    def resend(self, request: Request) -> None:
        """The same request again (same message id), as a device that missed its answer."""
        self.transmit(request.trip, request.topic, request.raw)

    def _start_trip(self, trip: Trip, due_at: float) -> None:
        now = time.monotonic()
        trip.due_at = due_at
        self.in_flight += 1
        self.on_start(trip, now)
        message_id = f"{self.tag}-{trip.index}-q"
        raw = fleet.query(trip.vehicle, message_id, int(time.time()))
        self.send(trip, "query", self.catalogue.query, raw, message_id)
        trip.waiting.add(message_id)

    def _provision(self, trip: Trip) -> None:
        self.on_devices(trip)
        region = trip.region or trip.vehicle.region
        devices = list(enumerate(trip.vehicle.devices))
        if self.shuffle:
            self.rng.shuffle(devices)
        now_s = int(time.time())
        trip.devices_at = time.monotonic()
        for k, device in devices:
            message_id = f"{self.tag}-{trip.index}-d{k}"
            raw = fleet.device_provision(trip.vehicle, device, message_id, now_s)
            self.send(trip, "device", self.catalogue.device(region), raw, message_id, device)
            trip.waiting.add(message_id)

    # --- answers ----------------------------------------------------------------------------

    def fail(self, trip: Trip, reason: str, code: str) -> None:
        """Record the trip's first failure and end it."""
        if trip.failure is None:
            trip.failure, trip.failure_code = reason, code
            self.failed += 1
        if not trip.ended:
            self._end(trip, time.monotonic())

    def _end(self, trip: Trip, now: float) -> None:
        trip.ended_at = now
        self.in_flight -= 1
        if self.edge is not None:
            self._closing.append(trip)
        self.on_end(trip)
        if self.forget_ended:
            for message_id in trip.sent:
                self.requests.pop(message_id, None)
        if self._bar is not None:
            self._bar.set_postfix_str(f"in flight {self.in_flight}, failed {self.failed}",
                                      refresh=False)
            self._bar.update()

    def _on_answer(self, topic: str, raw: bytes, now: float) -> None:
        try:
            doc = envelope.parse_response(raw)
        except ValueError:
            return
        request = self.requests.get(str(doc.get("correlation_id")))
        if request is None:
            return  # another client's answer
        request.answers += 1
        self.last_answer_at = now
        self.on_answer(request, doc, topic, raw, now)
        trip = request.trip
        if request.message_id not in trip.waiting or trip.ended:
            return  # a repeat, or an answer after the trip failed
        trip.waiting.discard(request.message_id)
        trip.last_answer_at = now
        problem = self.check(request, doc, topic)
        if problem is not None:
            self.fail(trip, *problem)
            return
        if request.kind == "query":
            endpoint = (doc.get("body") or {}).get("iot_gateway_endpoint")
            trip.region = self.endpoints.get(str(endpoint), trip.vehicle.region)
            trip.endpoint = str(endpoint)
            self._provision(trip)
        if not trip.waiting:
            if self.edge is None:
                self._end(trip, now)
            else:
                self._probe_global(trip, now)

    # --- devices over MQTT ------------------------------------------------------------------

    def _on_edge_answer(self, trip: Trip, topic: str, raw: bytes) -> None:
        self._on_answer(topic, raw, time.monotonic())

    def _on_edge_refused(self, trip: Trip, why: str) -> None:
        if not trip.ended:
            self.fail(trip, why, "refused")

    def _on_edge_lost(self, trip: Trip, topic: str, why: str) -> None:
        """A device whose connection broke connects again and sends what is still unanswered
        there (the same message ids: the workers answer a repeat with the same bytes)."""
        if trip.ended:
            return
        again = [self.requests[m] for m in sorted(trip.waiting)
                 if m in self.requests and self.requests[m].topic == topic]
        if not again:
            return
        self.reconnects[trip] += 1
        if self.reconnects[trip] > MAX_RECONNECTS:
            self.fail(trip, f"{why} ({MAX_RECONNECTS} times)", "connection")
            return
        for request in again:
            self.transmit(trip, request.topic, request.raw)

    def _probe_global(self, trip: Trip, answered_at: float) -> None:
        """Every answer is in: the device leaves the global broker and must now be refused
        there (provisioning deleted its identity); the trip ends when the broker says so."""
        from vprov.core.outputs import GLOBAL_SCOPE

        self.edge.release(trip, GLOBAL_SCOPE)

        def refused(problem: str | None) -> None:
            if trip.ended:
                return
            if problem is not None:
                self.fail(trip, problem, "global")
            else:
                self._end(trip, answered_at)

        self.edge.probe_refused(trip, refused)

    def _close_finished(self) -> None:
        keep = []
        for trip in self._closing:
            if self.trip_outstanding(trip):
                keep.append(trip)
            else:
                self.edge.release(trip)
        self._closing = keep

    def listen(self) -> None:
        """Assign the answer reader at the end of the answer and dead-letter topics (over MQTT:
        the dead-letter topics only, the answers come on the devices' connections)."""
        if self.reader is not None:
            return
        cat = self.catalogue
        placed: dict[Cluster, list[str]] = {}
        for topic in sorted(self.answer_topics if self.edge is None else ()):
            placed.setdefault(cat.home(topic), []).append(topic)
        for cluster in cat.clusters_of(cat.deadletter):  # wherever a worker writes them
            placed.setdefault(cluster, []).append(cat.deadletter)
        reader = ClusterReader(placed, **PROMPT_READER, **{"enable.partition.eof": False})
        try:
            reader.assign_ends()
        except KafkaException as exc:
            reader.close()
            raise RuntimeError(f"answer topics: {exc}") from None
        self.reader = reader

    def _read(self, wait: float) -> None:
        if self.edge is not None:
            self.edge.poll(wait)
            self._close_finished()
            wait = 0
        for msg in self.reader.consume(1000, wait):
            if msg.error() is not None or msg.value() is None:
                continue
            if msg.topic() in self.answer_topics:
                self._on_answer(msg.topic(), msg.value(), time.monotonic())
            else:
                self.on_other(msg.topic(), msg.value())

    # --- running ----------------------------------------------------------------------------

    def plan(self, vehicles: Iterable[fleet.SimVehicle], first: int = 1) -> list[Trip]:
        """Trips for ``vehicles``, numbered from ``first``."""
        return [Trip(first + i, vehicle) for i, vehicle in enumerate(vehicles)]

    def drive(self, trips: list[Trip], *, rate: float | None = None, window: int | None = None,
            until: float = math.inf, grace: float = math.inf, label: str = "provisioning",
            tick: Callable[[float], None] | None = None) -> None:
        """Start ``trips`` at ``rate`` per second, or keeping ``window`` in flight, or all at
        once; return when every trip ended and nothing is ``outstanding``, at ``until``
        (monotonic), ``grace`` seconds after the last start, or on ``stop()``."""
        self.listen()
        self.trips = trips
        self.by_vin = {trip.vehicle.vin: trip for trip in trips}
        self.in_flight = self.failed = 0
        self.all_started_at = None
        n = len(trips)
        self._bar = progress(label, total=n, stream=self.progress_stream)
        start = last_tick = self.last_answer_at = time.monotonic()
        started = 0
        try:
            while not self.stopped.is_set():
                now = time.monotonic()
                while started < n and (
                        (rate is not None and start + started / rate <= now)
                        or (rate is None and (window is None or self.in_flight < window))):
                    self._start_trip(trips[started], start + started / rate if rate else now)
                    started += 1
                if started == n and self.all_started_at is None:
                    self.all_started_at = now
                self.producer.poll(0)
                if started == n and all(t.ended for t in trips) and not self.outstanding():
                    break
                if now >= until or (self.all_started_at is not None
                                    and now > self.all_started_at + grace):
                    break
                wait = 0.05
                if rate is not None and started < n:
                    wait = min(wait, max(0.001, start + started / rate - now))
                self._read(wait)
                self._renew_stuck_clients(now)
                if tick is not None and now - last_tick >= TICK_SECONDS:
                    last_tick = now
                    tick(now)
        finally:
            self._bar.close()
            self._bar = None

    def _renew_stuck_clients(self, now: float) -> None:
        """Every ``QUIET_SECONDS`` while trips wait, and only once a request has waited that
        long for its answer, look for a Kafka client that stopped working after a broker came
        back (``ClusterProducer.renew_stuck``), and replace it: a request the fleet never
        delivered, or an answer it never read, is not the stack's loss. The producer is looked
        at once no answer came for as long, the reader every time (it may stop on some
        partitions only). A look asks the cluster for end offsets and blocks the fleet while
        it waits: when nothing is overdue the reader only notes its positions, so a fleet that
        is answered never stalls its own sending. (librdkafka reconnects to a broker back from
        an outage within its backoff, 10 s at most: looks that far apart do not take a client
        still reconnecting for a stuck one.)"""
        if (self.edge is not None or not self.in_flight
                or now - self._last_client_check < QUIET_SECONDS):
            return
        self._last_client_check = now
        if now - self.oldest_wait_started(now) < QUIET_SECONDS:
            self.reader.note_positions()
            return
        if now - self.last_answer_at >= QUIET_SECONDS:
            self.clients_renewed["producer"] += self.producer.renew_stuck()
        self.clients_renewed["reader"] += self.reader.renew_stuck()

    def oldest_wait_started(self, now: float) -> float:
        """When the request waiting longest for its answer was sent (``now``: none waits)."""
        oldest = now
        for trip in self.trips:
            if trip.ended:
                continue
            for message_id in trip.waiting:
                request = self.requests.get(message_id)
                if request is not None and request.sent_at < oldest:
                    oldest = request.sent_at
        return oldest

    def stop(self) -> None:
        """End ``drive`` from another thread."""
        self.stopped.set()

    def close(self) -> None:
        self.producer.close(30)
        if self.reader is not None:
            self.reader.close()
        if self.edge is not None:
            self.edge.close()

    # --- registration -----------------------------------------------------------------------

    def register(self, vehicles: Iterable[fleet.SimVehicle], serde: AvroSerde | None = None,
                 total: int | None = None) -> None:
        """Publish every device of ``vehicles`` on the registration topic."""
        serde = serde or serde_from_config(self.config)
        topic = self.catalogue.registrations
        bar = progress("registering devices", total=total, stream=self.progress_stream)
        now_ms = int(time.time() * 1000)
        for vehicle in vehicles:
            for reg in fleet.registrations(vehicle):
                value = serde.encode("DeviceRegistration", to_record(reg, now_ms), topic=topic)
                self.produce(topic, reg["device_id"], value)
            self.producer.poll(0)
            bar.update(len(vehicle.devices))
        self.producer.flush(60)
        bar.close()


def wait_indexed(web: WebClient, vehicles: list[fleet.SimVehicle], until: float,
                 stream: TextIO | None = None) -> bool:
    """Until ``until`` (monotonic), poll the global worker's ``/systems/{id}/`` view until each
    vehicle's system is indexed with all its devices; False when time ran out first."""
    bar = progress("indexing registrations", total=len(vehicles), stream=stream)
    try:
        for vehicle in vehicles:
            while True:
                status, body = web.get(f"/systems/{vehicle.system_id}/")
                if status == 200 and isinstance(body, dict) and \
                        len(body.get("devices") or ()) == len(vehicle.devices):
                    break
                if time.monotonic() > until:
                    return False
                time.sleep(INDEX_POLL_SECONDS)
            bar.update()
        return True
    finally:
        bar.close()
