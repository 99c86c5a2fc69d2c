"""The demo's second act: a few vehicles after their first boot (docs/after-first-boot.md).

``make demo`` runs it after the simulated fleet, against the same workers:
``python -m vprov.sim.after_boot_demo``. Six vehicles are provisioned in the first configured
region; then two get a device replaced (the primary, and a secondary), two move to the second
region (one MIGRATE, one RESET, whose devices then provision again there), and two are
decommissioned. Each command goes through ``vprov vehicle``'s code path. The devices taken out,
and a decommissioned vehicle, are heard from once more: answered 13132 and 13133. Last,
``vprov replay --verify`` audits the six histories against the tables. Exit code 0 when every
step went as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from vprov import config as config_module
from vprov.config import Cluster, Config
from vprov.core import envelope
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import ClusterReader
from vprov.ops import audit, deployment, vehicle_commands
from vprov.ops.lifecycle_events import dedupe, histories, read_lifecycle
from vprov.sim import fleet
from vprov.sim.fleet_driver import FleetDriver, wait_indexed
from vprov.webclient import WebClient

VEHICLES = 6


def say(text: str) -> None:
    print(f"[after first boot] {text}", flush=True)


class Devices:
    """Single device requests and their answers, outside the fleet driver's trips."""

    def __init__(self, config: Config, driver: FleetDriver) -> None:
        self.cat = Catalogue(config)
        self.driver = driver
        topics = [self.cat.device_response(r) for r in config.regions] + [self.cat.query_response]
        placed: dict[Cluster, list[str]] = {}
        for topic in topics:
            placed.setdefault(self.cat.home(topic), []).append(topic)
        self.reader = ClusterReader(placed)
        self.reader.assign_ends()

    def ask(self, topic: str, vin: str, raw: bytes, message_id: str, timeout: float = 30
            ) -> dict[str, Any]:
        self.driver.produce(topic, vin, raw)
        self.driver.producer.flush(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.reader.consume(100, 0.5):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(str(message.error()))
                doc = envelope.parse_response(message.value())
                if doc.get("correlation_id") == message_id:
                    return doc
        raise TimeoutError(f"no answer to {message_id} within {timeout:g}s")

    def provision(self, vehicle: fleet.SimVehicle, device: fleet.SimDevice, region: str
                  ) -> dict[str, Any]:
        message_id = f"demo-{uuid.uuid4()}"
        raw = fleet.device_provision(vehicle, device, message_id, int(time.time()))
        return self.ask(self.cat.device(region), vehicle.vin, raw, message_id)

    def query(self, vehicle: fleet.SimVehicle) -> dict[str, Any]:
        message_id = f"demo-{uuid.uuid4()}"
        raw = fleet.query(vehicle, message_id, int(time.time()))
        return self.ask(self.cat.query, vehicle.vin, raw, message_id)


def code_of(answer: dict[str, Any]) -> int | None:
    bag = answer.get("property_bag") or answer.get("propertyBag") or {}
    return bag.get("error_code", bag.get("errorCode"))


def command(config: Config, operation: str, vin: str, **fields: Any) -> str:
    outcome = vehicle_commands.send(config, vehicle_commands.command(
        operation, vin, requested_by="make demo", **fields), timeout=90)
    return outcome["outcome"] if outcome else "no outcome"


def run(config: Config, global_url: str, region_urls: dict[str, str]) -> bool:
    regions = list(config.regions)
    if len(regions) < 2:
        say("needs two regions; skipped")
        return True
    home, other = regions[0], regions[1]
    tag = fleet.run_tag(f"after-boot-{time.time_ns()}")
    vehicles = [fleet.make_vehicle(tag, i, home) for i in range(1, VEHICLES + 1)]
    driver = FleetDriver(config, tag)
    web = WebClient(global_url)
    ok = True
    devices: Devices | None = None
    try:
        devices = Devices(config, driver)
        driver.register(vehicles)
        if not wait_indexed(web, vehicles, time.monotonic() + 60):
            say("registrations not indexed within 60s")
            return False
        trips = driver.plan(vehicles)
        driver.drive(trips, until=time.monotonic() + 120, label="first boot")
        if not all(t.ok for t in trips):
            say("the first boot failed: " + "; ".join(t.failure or "" for t in trips if not t.ok))
            return False
        say(f"{VEHICLES} vehicles provisioned in {home}")

        # a workshop swaps the primary of one vehicle and a secondary of another
        for vehicle, index in ((vehicles[0], 0), (vehicles[1], 1)):
            old = vehicle.devices[index]
            new = dataclasses.replace(old, device_id=f"{old.device_id}w",
                                      fingerprint=f"sha256:workshop-{old.device_id}")
            fitted = dataclasses.replace(vehicle, devices=tuple(
                new if d is old else d for d in vehicle.devices))
            driver.register([dataclasses.replace(vehicle, devices=(new,))])
            joined = _wait(functools.partial(_part_of, web, vehicle.vin, new.device_id))
            outcome = command(config, "REPLACE_DEVICE", vehicle.vin, old_device_id=old.device_id,
                              new_device_id=new.device_id) if joined else "not joined"
            answer = devices.provision(fitted, dataclasses.replace(new, primary=old.primary), home)
            stale = code_of(devices.provision(vehicle, old, home))
            role = "primary" if old.primary else "secondary"
            good = outcome == "DONE" and answer.get("status") == "SUCCESS" and stale == 13132
            ok &= good
            say(f"{vehicle.vin}: {role} {old.device_id} replaced by {new.device_id}: {outcome}; "
                f"the new one provisioned: {answer.get('status')}; the old one is answered "
                f"{stale}")

        # an export, and a resale with a fresh start
        for vehicle, policy in ((vehicles[2], "MIGRATE"), (vehicles[3], "RESET")):
            outcome = command(config, "MOVE", vehicle.vin, target_region=other,
                              move_policy=policy)
            endpoint = (devices.query(vehicle).get("body") or {}).get("iot_gateway_endpoint")
            again = [str(devices.provision(vehicle, d, other).get("status"))
                     for d in vehicle.devices] if policy == "RESET" else []
            good = outcome == "DONE" and endpoint == config.region(other).gateway_endpoint \
                and all(s == "SUCCESS" for s in again)
            ok &= good
            tail = f"; its devices provisioned again in {other}: {', '.join(again)}" \
                if again else ""
            say(f"{vehicle.vin}: moved {home} -> {other} ({policy}): {outcome}; its next query is "
                f"answered with {endpoint}{tail}")

        # scrapped
        for vehicle in vehicles[4:]:
            outcome = command(config, "DECOMMISSION", vehicle.vin)
            stale = code_of(devices.provision(vehicle, vehicle.devices[1], home))
            ok &= outcome == "DONE" and stale == 13133
            say(f"{vehicle.vin}: decommissioned: {outcome}; a later request is answered {stale}")

        ok &= _verified(config, [v.vin for v in vehicles], global_url, region_urls)
        say(f"try: vprov status {vehicles[2].vin}   vprov replay --vin {vehicles[4].vin}")
        return ok
    finally:
        if devices is not None:
            devices.reader.close()
        driver.close()
        web.close()


def _verified(config: Config, vins: list[str], global_url: str, region_urls: dict[str, str]
              ) -> bool:
    """``vprov replay --verify`` of ``vins``, said; whether it found no problem."""
    events, _ = dedupe(read_lifecycle(config, vins=vins))
    problems = audit.verify(config, histories(events), global_url, region_urls, from_start=True)
    for problem in problems:
        say(f"PROBLEM {problem}")
    say(f"vprov replay --verify of these {len(vins)} vehicles ({len(events)} events): "
        + (f"{len(problems)} problems" if problems else "no problems"))
    return not problems


def _part_of(web: WebClient, vin: str, device_id: str) -> bool:
    """Whether the global store lists ``device_id`` among the vehicle's devices."""
    status, body = web.get(f"/vehicles/{vin}/")
    return status == 200 and device_id in {d["device_id"] for d in body.get("devices", [])}


def _wait(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vprov.sim.after_boot_demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--global-url", default=deployment.GLOBAL_URL)
    args = parser.parse_args(argv)
    config = config_module.load()
    ok = run(config, args.global_url, deployment.region_urls(config))
    say("result: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
