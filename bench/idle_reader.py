"""What an idle prompt reader costs the broker, by its fetch wait.

A reader that hands on each record as soon as it comes (the edge bridge's answer reader, the
fleet simulator's) asks with ``fetch.min.bytes`` 1. The broker answers such a fetch as soon as a
record reaches one of its partitions, so ``fetch.wait.max.ms`` should only decide how often a
reader with nothing to read asks again. This measures both sides of that claim: the broker's
CPU while a reader of ``--topics`` x ``--partitions`` partitions waits, and how long a record
written every 200 ms takes to reach it, for each wait in turn.

    make up && .venv/bin/python -m bench.idle_reader --waits 10,500,10,500
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from bench.deploy import ProcessSampler, listener_pid
from vprov.kafka.clients import admin_client, close_admin, close_producer, consumer, producer
from vprov.kafka.settings import PROMPT_READER

WRITE_EVERY = 0.2  # seconds between the records whose delivery is timed
LOST_AFTER = 30.0  # seconds: a record not read by then is not coming


@dataclass(frozen=True)
class Result:
    wait_ms: int
    broker_cores: float  # over the window
    p50_ms: float  # write -> read
    max_ms: float
    records: int


def measure(bootstrap: str, topics: list[str], partitions: int, wait_ms: int,
            seconds: float, broker: ProcessSampler) -> Result:
    reader = consumer(bootstrap, None, **{**PROMPT_READER, "fetch.wait.max.ms": wait_ms,
                                          "enable.partition.eof": False})
    writer = producer(bootstrap, **{"linger.ms": 0})
    try:
        reader.assign([TopicPartition(t, p, -1) for t in topics for p in range(partitions)])
        reader.consume(1, 2.0)  # connected and fetching before the window
        began, cpu = time.monotonic(), broker.cpu_seconds()
        delays: list[float] = []
        while time.monotonic() - began < seconds:
            time.sleep(WRITE_EVERY)
            sent = time.monotonic()
            writer.produce(topics[len(delays) % len(topics)], key=str(len(delays)).encode(),
                           value=b"x" * 200)
            writer.poll(0)
            while not reader.consume(1, 1.0):  # one record: batch reads wait for a full batch
                if time.monotonic() - sent > LOST_AFTER:
                    raise SystemExit(f"a record did not come back within {LOST_AFTER:g} s: is "
                                     "the broker still up?")
            delays.append((time.monotonic() - sent) * 1000)
        cores = (broker.cpu_seconds() - cpu) / (time.monotonic() - began)
        return Result(wait_ms, round(cores, 3), round(statistics.median(delays), 1),
                      round(max(delays), 1), len(delays))
    finally:
        reader.close()
        close_producer(writer, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--waits", default="10,500,10,500", help="fetch.wait.max.ms, in turn")
    parser.add_argument("--topics", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="window per wait")
    args = parser.parse_args()
    pid = listener_pid(int(args.bootstrap.rsplit(":", 1)[1]))
    if pid is None:
        raise SystemExit(f"no broker listens on {args.bootstrap}: start one with `make up`")
    broker = ProcessSampler(pid)
    admin = admin_client(args.bootstrap)
    topics = [f"idle-reader-{uuid.uuid4().hex[:8]}.{n}" for n in range(args.topics)]
    try:
        for future in admin.create_topics(
                [NewTopic(t, args.partitions, 1) for t in topics]).values():
            future.result()
        print(f"{'wait ms':>8} {'broker cores':>13} {'p50 ms':>7} {'max ms':>7} {'records':>8}")
        for wait in (int(w) for w in args.waits.split(",")):
            r = measure(args.bootstrap, topics, args.partitions, wait, args.seconds, broker)
            print(f"{r.wait_ms:>8} {r.broker_cores:>13.3f} {r.p50_ms:>7.1f} {r.max_ms:>7.1f} "
                  f"{r.records:>8}", flush=True)
    finally:
        admin.delete_topics(topics, operation_timeout=30)
        close_admin(admin)


if __name__ == "__main__":
    main()
