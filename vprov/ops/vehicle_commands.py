"""``vprov vehicle``: operators' commands after the first boot (docs/after-first-boot.md).

Each subcommand publishes one ``AdminCommand`` to the admin topic, keyed by VIN, and waits for
its final outcome on the outcome topic. Exit codes: 0 done; 1 refused or failed (nothing
changed); 2 a usage error; 3 Kafka unreachable (the command not delivered within
``--connect-timeout``); 4 no final outcome within ``--timeout`` of its delivery (the command may
still finish: send it again with the same ``--command-id`` to wait for it, which has no second
effect).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from confluent_kafka import KafkaError

from vprov import reach
from vprov.config import Config
from vprov.kafka.avro import serde_from_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import ClusterProducer, ClusterReader

EXIT_DONE, EXIT_NOT_DONE, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 1, 2, 3, 4
FINAL = ("DONE", "REFUSED", "FAILED")


def command(operation: str, vin: str, command_id: str | None = None, **fields: Any
            ) -> dict[str, Any]:
    """An ``AdminCommand``; a new command id unless one is given (to repeat a command)."""
    return {"command_id": command_id or f"cmd-{uuid.uuid4()}", "vin": vin,
            "operation": operation, "requested_at": int(time.time() * 1000),
            "requested_by": fields.pop("requested_by", ""), **fields}


def send(config: Config, cmd: dict[str, Any], timeout: float,
         on_outcome: Callable[[dict[str, Any]], None] = lambda _: None,
         deliver_within: float = reach.DEFAULT_CONNECT_TIMEOUT) -> dict[str, Any] | None:
    """Publish ``cmd`` and wait up to ``timeout`` seconds for its final outcome (None: none
    came). ``on_outcome`` sees every outcome of it on the way (ACCEPTED first). Its delivery
    has a budget of its own, ``deliver_within``: a short wait for the outcome must not turn a
    slow first request into "Kafka unreachable"."""
    cat = Catalogue(config)
    serde = serde_from_config(config)
    reader = ClusterReader({cat.home(cat.admin_outcome): [cat.admin_outcome]})
    try:
        reader.assign_ends()  # before sending: the outcome cannot come before we listen
        out = ClusterProducer(cat)
        errors: list[str] = []
        out.produce(cat.admin, key=cmd["vin"].encode(),
                    value=serde.encode("AdminCommand", cmd, topic=cat.admin),
                    on_delivery=lambda err, _msg: errors.append(err.str()) if err else None)
        left = out.close(deliver_within)  # what is left was purged: its error says only that
        if left or errors:
            raise _unreachable(config, f"the command was not delivered to {cat.admin}: "
                               f"{'no acknowledgement' if left else errors[0]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reader.consume(100, 0.5):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise _unreachable(config, f"reading {cat.admin_outcome}: {message.error()}")
                outcome = serde.decode("AdminOutcome", message.value(), topic=cat.admin_outcome)
                if outcome["command_id"] != cmd["command_id"]:
                    continue
                on_outcome(outcome)
                if outcome["outcome"] in FINAL:
                    return outcome
        return None
    finally:
        reader.close()


def _unreachable(config: Config, reason: str) -> reach.Unreachable:
    return reach.Unreachable("Kafka", config.bootstrap_servers, reach.kafka_setting(config),
                             reason)


def describe(outcome: dict[str, Any]) -> str:
    text = f"{outcome['operation']} {outcome['vin']}: {outcome['outcome']}"
    if outcome.get("region"):
        text += f" (region {outcome['region']})"
    if outcome.get("error_code") is not None:
        text += f": {outcome['error_code']} {outcome['error_message']}"
    return text


def run(config: Config, cmd: dict[str, Any], timeout: float, connect_timeout: float,
        out: TextIO, err: TextIO) -> int:
    """Send ``cmd``, report its outcomes; the exit code (module docstring)."""
    try:
        reach.kafka_of(config, connect_timeout)
        print(f"command {cmd['command_id']}: {cmd['operation']} {cmd['vin']}", file=out)
        final = send(config, cmd, timeout,
                     on_outcome=lambda o: print(describe(o), file=out, flush=True)
                     if o["outcome"] == "ACCEPTED" else None, deliver_within=connect_timeout)
    except reach.Unreachable as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE
    if final is None:
        print(f"error: no outcome within {timeout:g}s; the command may still finish. Wait for "
              f"it with the same command: --command-id {cmd['command_id']}", file=err)
        return EXIT_TIMEOUT
    print(describe(final), file=out)
    return EXIT_DONE if final["outcome"] == "DONE" else EXIT_NOT_DONE


def show_policy(config: Config, country: str | None, out: TextIO) -> int:
    """The policies that decide what the commands and a factory reset do."""
    print(f"factory reset (flow.factory_reset): {config.factory_reset}", file=out)
    print(f"move deadline (flow.move_timeout_seconds): {config.move_timeout_seconds:g}s",
          file=out)
    residency = "on: a move out of the country's region is refused unless --force" \
        if config.homing_by_country else "off: a vehicle may move to any region"
    print(f"data residency (homing.by_country): {residency}", file=out)
    for code, region in sorted(config.regions.items()):
        print(f"  {code}: {', '.join(region.countries) or '(no countries)'}", file=out)
    if country is not None:
        home = config.region_for_country(country.upper())
        print(f"{country.upper()}: " + (f"homed in {home}" if home else "in no region's list"),
              file=out)
    return 0
