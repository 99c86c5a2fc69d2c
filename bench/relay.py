"""The baseline: the least a Kafka stream processor can do, a consume -> produce relay.

``run_baseline`` fills a source topic with N device messages (not timed), then starts this file
as a separate process (so it does not share the interpreter with the load generator). The relay
joins a consumer group and produces every record it reads to the target topic with the same
producer settings as the project's clients (acks=all, idempotence, murmur2) until N records are
delivered. Records per second is N over the time from the first record read to the last delivery:
one record consumed and one produced per relayed record, through the same broker as the pipeline.
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

from confluent_kafka.admin import AdminClient, NewTopic

from vprov import fleet
from vprov.kafka_clients import consumer, producer


@dataclass
class BaselineResult:
    """The median of ``repeats`` relay runs over the same N records (a sub-second run is
    sensitive to whatever else the broker does at that moment)."""

    records: int
    mean_bytes: float
    seconds: float
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


def relay(bootstrap: str, source: str, target: str, count: int, group: str,
          timeout: float) -> dict[str, float]:
    reader = consumer(bootstrap, group_id=group, **{"enable.partition.eof": False})
    writer = producer(bootstrap)
    assigned: list[float] = []

    def on_assign(consumer: object, partitions: list[object]) -> None:
        if not assigned:
            assigned.append(time.monotonic())

    reader.subscribe([source], on_assign=on_assign)
    moved = 0
    first = cpu_first = 0.0
    deadline = time.monotonic() + timeout
    while moved < count and time.monotonic() < deadline:
        for msg in reader.consume(1000, 0.5):
            if msg.error() is not None:
                continue
            if moved == 0:
                # Steady state from the first record on, as the pipeline's workers were
                # already running; start-up (offset lookup, first fetch) is reported apart.
                first, cpu_first = time.monotonic(), _cpu_seconds()
            while True:
                try:
                    writer.produce(target, key=msg.key(), value=msg.value())
                    break
                except BufferError:
                    writer.poll(0.01)
            moved += 1
        writer.poll(0)
    left = writer.flush(60)
    end = time.monotonic()
    cpu = _cpu_seconds() - cpu_first
    reader.close()
    startup = first - assigned[0] if assigned and moved else 0.0
    return {"moved": moved, "undelivered": left, "seconds": end - first if moved else 0.0,
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


def run_baseline(bootstrap: str, admin: AdminClient, prefix: str, records: int, partitions: int,
                 region: str, log_dir: Path, repeats: int = 3, timeout: float = 300.0
                 ) -> BaselineResult:
    source, target = f"{prefix}.baseline.in", f"{prefix}.baseline.out"
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in (source, target)],
        operation_timeout=30)
    for future in futures.values():
        future.result()
    samples = _sample_messages(fleet.run_tag(prefix), region, 200)
    writer = producer(bootstrap)
    size = 0
    for n in range(records):
        key, value = samples[n % len(samples)]
        size += len(value)
        while True:
            try:
                writer.produce(source, key=key, value=value)
                break
            except BufferError:
                writer.poll(0.01)
        writer.poll(0)
    writer.flush(60)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)}
    runs = []
    for run in range(repeats):
        # A new group each time: every run reads the N records from the start.
        args = [sys.executable, str(Path(__file__).resolve()), "--bootstrap", bootstrap,
                "--source", source, "--target", target, "--count", str(records),
                "--group", f"{prefix}-baseline-{run}", "--timeout", str(timeout)]
        with (log_dir / "baseline-relay.log").open("ab") as log:
            done = subprocess.run(args, stdout=subprocess.PIPE, stderr=log, env=env,
                                  timeout=timeout + 120, check=True)
        runs.append(json.loads(done.stdout))
    runs.sort(key=lambda r: r["seconds"])
    median = runs[len(runs) // 2]
    moved = int(median["moved"])
    return BaselineResult(records=moved, mean_bytes=size / max(records, 1),
                          seconds=float(median["seconds"]),
                          cpu_seconds=float(median["cpu_seconds"]),
                          delivered=moved - int(median["undelivered"]),
                          startup_seconds=float(median["startup_seconds"]),
                          rates=[int(r["moved"]) / r["seconds"] for r in runs if r["seconds"]])


def main() -> int:
    parser = argparse.ArgumentParser(description="consume -> produce relay (benchmark baseline)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    result = relay(args.bootstrap, args.source, args.target, args.count, args.group,
                   args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
