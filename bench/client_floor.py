"""The client floor: what one record costs a relay that does nothing else, built on each Kafka
client a worker could stand on, at the record rates the pipeline's workers see.

Each relay runs as a process of its own, reads a fresh topic and writes every record to a second
one; a paced producer in the benchmark process feeds it. Its CPU (all threads) over a fixed
window, divided by the records it relayed in that window, is its cost per record. The three:

- ``faust``: a Faust agent that forwards each record, on the workers' stack (Faust over aiokafka,
  uvloop, the workers' linger, commit interval and partition count). No tables, no decisions:
  the least any Faust agent pays per record.
- ``aiokafka``: aiokafka's consumer and producer alone, on uvloop.
- ``librdkafka``: confluent-kafka's consumer and producer, with the project's client settings
  (the same client as the relay baseline).

A worker consumes one record and writes about three per record (answers, events, changelog), so
its cost per consumed record cannot fall below the ``faust`` figure at its rate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from bench.deploy import Broker, TopicUnknown

CLIENTS = ("faust", "aiokafka", "librdkafka")
LINGER_MS = 5  # the workers' kafka.producer_linger_ms default
RECORD = b"x" * 300  # about a device message's size


@dataclass
class FloorResult:
    client: str
    rate: float  # records/s offered
    sent: int  # records offered in the window
    relayed: int  # of them, records that reached the relay's output topic
    seconds: float
    cpu_seconds: float  # the relay process over the window, all threads

    @property
    def us_per_record(self) -> float:
        return 1e6 * self.cpu_seconds / self.relayed if self.relayed else float("nan")


# --- the relays (each runs in a process of its own) -------------------------------------------

def faust_relay(bootstrap: str, source: str, sink: str, group: str, partitions: int,
                datadir: str) -> None:
    import faust
    import mode.loop

    from streams.app import COMMIT_EVERY_NEVER  # the workers' commit policy: on the timer

    mode.loop.use("uvloop")
    app = faust.App(group, broker=f"kafka://{bootstrap}", web_enabled=False, datadir=datadir,
                    producer_linger=LINGER_MS / 1000, topic_partitions=partitions,
                    broker_commit_interval=1.0, broker_commit_every=COMMIT_EVERY_NEVER,
                    consumer_auto_offset_reset="latest")
    inbound = app.topic(source, key_serializer="raw", value_serializer="raw")
    outbound = app.topic(sink, key_serializer="raw", value_serializer="raw")

    @app.agent(inbound)
    async def forward(stream):  # Faust's agent signature: untyped
        async for key, value in stream.items():
            await outbound.send(key=key, value=value)

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def aiokafka_relay(bootstrap: str, source: str, sink: str, group: str) -> None:
    import uvloop
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def run() -> None:
        reader = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                  auto_offset_reset="latest")
        writer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=LINGER_MS, acks="all")
        await reader.start()
        await writer.start()
        async for record in reader:
            await writer.send(sink, record.value, key=record.key)

    uvloop.run(run())


def librdkafka_relay(bootstrap: str, source: str, sink: str, group: str) -> None:
    from vprov.kafka.clients import consumer, produce_when_room, producer

    reader = consumer(bootstrap, group_id=group, **{"enable.partition.eof": False,
                                                     "auto.offset.reset": "latest"})
    writer = producer(bootstrap, **{"linger.ms": LINGER_MS})
    reader.subscribe([source])
    while True:
        for msg in reader.consume(1000, 0.1):
            if msg.error() is None:
                produce_when_room(writer, sink, key=msg.key(), value=msg.value())
        writer.poll(0)


# --- the measurement ----------------------------------------------------------------------------

def _await_leaders(broker: Broker, topics: list[str], attempts: int = 50) -> None:
    """Return once ``topics``, just created, have partition leaders (offsets can be read)."""
    from confluent_kafka import KafkaException

    for attempt in range(attempts):
        try:
            broker.end_offsets(topics)
            return
        except (KafkaException, TopicUnknown):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def _send(writer: Producer, topic: str, rate: float, seconds: float, start: int) -> int:
    """``rate`` records/s for ``seconds``, keys counting on from ``start``; returns the count."""
    from vprov.kafka.clients import produce_when_room

    count = int(rate * seconds)
    began = time.monotonic()
    for n in range(count):
        wait = began + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        produce_when_room(writer, topic, key=str(start + n).encode(), value=RECORD)
        writer.poll(0)
    writer.flush(30)
    return count


def measure(client: str, rate: float, *, bootstrap: str, broker: Broker, prefix: str,
            partitions: int, seconds: float, log_dir: Path, join_timeout: float = 60.0
            ) -> FloorResult:
    from vprov.kafka.clients import producer

    tag = f"{prefix}.floor-{client}-{rate:g}"
    source, sink = f"{tag}-in", f"{tag}-out"
    admin = broker.admin
    for future in admin.create_topics([NewTopic(t, num_partitions=partitions,
                                                replication_factor=1) for t in (source, sink)],
                                      operation_timeout=30).values():
        future.result()
    _await_leaders(broker, [source, sink])
    # The checkout on the path: ``-m bench.client_floor`` then imports from any directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)}
    args = [sys.executable, "-m", "bench.client_floor", client, "--bootstrap", bootstrap,
            "--source", source, "--sink", sink, "--group", f"{tag}-relay",
            "--partitions", str(partitions), "--datadir", str(log_dir / f"floor-{client}")]
    writer = producer(bootstrap)
    with (log_dir / "client-floor.log").open("ab") as log:
        relay = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        # Warm up at the measured rate until the relay has joined its group and forwards.
        sent, deadline = 0, time.monotonic() + join_timeout
        while broker.end_offsets([sink])[sink] == 0:
            if relay.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {client} relay did not start forwarding in "
                                   f"{join_timeout:.0f} s (exit {relay.returncode}); "
                                   f"see {log_dir / 'client-floor.log'}")
            sent += _send(writer, source, rate, 1.0, sent)
        sent += _send(writer, source, rate, 2.0, sent)
        time.sleep(1.0)
        cpu = psutil.Process(relay.pid)
        before, relayed_before = cpu.cpu_times(), broker.end_offsets([sink])[sink]
        began = time.monotonic()
        count = _send(writer, source, rate, seconds, sent)
        window = time.monotonic() - began
        relayed = 0
        for _ in range(50):  # the window's last records reach the sink within a few hops
            relayed = broker.end_offsets([sink])[sink] - relayed_before
            if relayed >= count:
                break
            time.sleep(0.1)
        after = cpu.cpu_times()
    finally:
        relay.terminate()
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            relay.kill()
        for future in admin.delete_topics([source, sink], operation_timeout=30).values():
            future.result()
    spent = (after.user + after.system) - (before.user + before.system)
    return FloorResult(client, rate, count, relayed, window, spent)


def run_floor(bootstrap: str, broker: Broker, prefix: str, partitions: int,
              rates: list[float], seconds: float, log_dir: Path) -> list[FloorResult]:
    results = []
    for rate in rates:
        for client in CLIENTS:
            print(f"client floor: {client} at {rate:g} records/s for {seconds:g} s",
                  file=sys.stderr)
            result = measure(client, rate, bootstrap=bootstrap, broker=broker, prefix=prefix,
                             partitions=partitions, seconds=seconds, log_dir=log_dir)
            print(f"  {result.us_per_record:,.0f} µs of CPU per record "
                  f"({result.relayed:,} of {result.sent:,} relayed)", file=sys.stderr)
            results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description="a relay on one Kafka client (client floor)")
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--datadir", default="floor-data")
    args = parser.parse_args()
    if args.client == "faust":
        sys.argv = [sys.argv[0], "worker"]  # Faust's worker reads its own command line
        faust_relay(args.bootstrap, args.source, args.sink, args.group, args.partitions,
                    args.datadir)
    elif args.client == "aiokafka":
        aiokafka_relay(args.bootstrap, args.source, args.sink, args.group)
    else:
        librdkafka_relay(args.bootstrap, args.source, args.sink, args.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
