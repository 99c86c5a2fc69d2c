"""The baseline: the least a Kafka stream processor can do, a consume -> produce relay.

``run_baseline`` seeds a topic with N of the pipeline's own device-facing messages (not timed),
then starts this file as a separate process (so it does not share the interpreter with the load
generator). The relay joins a consumer group and produces every record it reads back to the
same topic, with the same producer settings as the project's clients (acks=all, idempotence,
murmur2), so the N records circulate and the relay never runs dry. After a warm-up it counts the
records it moves in a fixed window of wall-clock time: records per second is that count over
the window, one record consumed and one produced per relayed record, through the same broker as
the pipeline. A fixed window, rather than a fixed count, keeps the figure independent of how
many records the run happens to seed (a count the relay moves in a fraction of a second is
mostly start-up and scheduling noise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from vprov.kafka.clients import close_producer, consumer, produce_when_room, producer
from vprov.sim import fleet

SEED_RECORDS = 20_000  # in flight around the loop: enough for full fetches on every partition


@dataclass
class BaselineResult:
    """The median of ``repeats`` relay runs, each a fixed window of steady-state relaying."""

    records: int  # moved in the median run's window
    mean_bytes: float
    seconds: float  # the median run's window, its closing flush included
    cpu_seconds: float
    delivered: int
    rates: list[float]
    startup_seconds: float  # partitions assigned -> first record, median run

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads, librdkafka's included
    return usage.ru_utime + usage.ru_stime


def relay(bootstrap: str, topic: str, group: str, seconds: float, warmup: float,
          timeout: float) -> dict[str, float]:
    reader = consumer(bootstrap, group_id=group, **{"enable.partition.eof": False})
    writer = producer(bootstrap)
    assigned: list[float] = []

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not assigned:
            assigned.append(time.monotonic())

    reader.subscribe([topic], on_assign=on_assign)
    first = window_start = window_end = cpu_start = 0.0
    moved = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        if window_end and now >= window_end:
            break
        if first and not window_start and now >= first + warmup:
            # Steady state from here on, as the pipeline's workers were already running.
            window_start, cpu_start, moved = now, _cpu_seconds(), 0
            window_end = now + seconds
        for msg in reader.consume(1000, 0.1):
            if msg.error() is not None:
                continue
            if not first:
                first = time.monotonic()
            produce_when_room(writer, topic, key=msg.key(), value=msg.value())
            moved += 1
        writer.poll(0)
    left = writer.flush(60)
    end = time.monotonic()
    cpu = _cpu_seconds() - cpu_start
    reader.close()
    close_producer(writer, 0)
    if not window_start:
        raise SystemExit(f"relay: no steady state within {timeout:.0f} s (records seen: {moved})")
    startup = first - assigned[0] if assigned else 0.0
    return {"moved": moved, "undelivered": left, "seconds": end - window_start,
            "cpu_seconds": cpu, "startup_seconds": startup}


def _sample_messages(tag: str, region: str, vehicles: int) -> list[tuple[bytes, bytes]]:
    """The pipeline's own inputs, a query and two device messages per vehicle: similar sizes."""
    out = []
    now = int(time.time())
    for index in range(1, vehicles + 1):
        vehicle = fleet.make_vehicle(tag, index, region)
        key = vehicle.vin.encode()
        out.append((key, fleet.query(vehicle, f"{tag}-{index}-q", now)))
        for k, device in enumerate(vehicle.devices):
            out.append((key, fleet.device_provision(vehicle, device, f"{tag}-{index}-d{k}", now)))
    return out


def _seed(bootstrap: str, admin: AdminClient, topic: str, partitions: int,
          samples: list[tuple[bytes, bytes]], records: int) -> int:
    """Creates ``topic`` with ``records`` of the samples in it; returns their bytes."""
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=30)
    for future in futures.values():
        future.result()
    writer = producer(bootstrap)
    size = 0
    for n in range(records):
        key, value = samples[n % len(samples)]
        size += len(value)
        produce_when_room(writer, topic, key=key, value=value)
        writer.poll(0)
    close_producer(writer, 60)
    return size


def run_baseline(bootstrap: str, admin: AdminClient, prefix: str, partitions: int, region: str,
                 log_dir: Path, seconds: float = 5.0, repeats: int = 3,
                 records: int = SEED_RECORDS, timeout: float = 120.0) -> BaselineResult:
    samples = _sample_messages(fleet.run_tag(prefix), region, 200)
    # The checkout on the path: ``-m bench.relay`` then imports from any directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)}
    runs = []
    size = 0
    for run in range(repeats):
        # A fresh topic each run: a run that started on its predecessor's backlog would read a
        # log of millions of records instead of circulating the seed.
        topic = f"{prefix}.baseline-{run}"
        size = _seed(bootstrap, admin, topic, partitions, samples, records)
        args = [sys.executable, "-m", "bench.relay", "--bootstrap", bootstrap,
                "--topic", topic, "--group", f"{prefix}-baseline-{run}",
                "--seconds", str(seconds), "--timeout", str(timeout)]
        with (log_dir / "baseline-relay.log").open("ab") as log:
            done = subprocess.run(args, stdout=subprocess.PIPE, stderr=log, env=env,
                                  timeout=timeout + 120, check=True)
        runs.append(json.loads(done.stdout))
        admin.delete_topics([topic], operation_timeout=30)[topic].result()
    rates = [int(r["moved"]) / r["seconds"] for r in runs]
    median = sorted(runs, key=lambda r: int(r["moved"]) / r["seconds"])[len(runs) // 2]
    moved = int(median["moved"])
    return BaselineResult(records=moved, mean_bytes=size / max(records, 1),
                          seconds=float(median["seconds"]),
                          cpu_seconds=float(median["cpu_seconds"]),
                          delivered=moved - int(median["undelivered"]),
                          startup_seconds=float(median["startup_seconds"]), rates=rates)


def main() -> int:
    parser = argparse.ArgumentParser(description="consume -> produce relay (benchmark baseline)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--seconds", type=float, default=5.0, help="the timed window")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of relaying before the window opens")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    result = relay(args.bootstrap, args.topic, args.group, args.seconds, args.warmup,
                   args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
