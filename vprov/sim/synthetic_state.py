"""A synthetic global state, written straight into a deployment's changelog topics.

Entries shaped like the ones the flows write: two registrations, a system and a REGIONAL vehicle
with its remembered answer, four changelog records a vehicle; with a region, also the region's
entry of the vehicle, provisioned, with its devices' remembered answers. For the restore
benchmark (bench/restore.py), the benchmark's levels on a large state and the empty-disk
reliability scenario: a state of a million vehicles is written in a minute, where the flows would
take hours.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import cast

from tables.models import (
    GlobalVehicle,
    RegionalDevice,
    RegionalVehicle,
    Registration,
    Remembered,
    SystemEntry,
)
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue, changelog_topic, regional_table
from vprov.kafka.clients import close_producer, producer

RECORDS_PER_VEHICLE = 4
REGIONAL_RECORDS_PER_VEHICLE = 1
GLOBAL_TABLES = ("registrations", "systems", "vehicles")


Entry = Registration | SystemEntry | GlobalVehicle | RegionalVehicle


def entries(index: int, tag: str) -> list[tuple[str, str, Entry]]:
    """(table, key, entry) of one synthetic vehicle, shaped like the flows' entries."""
    vin = f"{tag}{index:011d}"[-17:].upper()
    system_id = f"sys-{tag}{index:010d}"[:23]
    sub_system_id = f"sub-{index:010d}"
    devices: list[Registration] = [
        {"system_id": system_id, "sub_system_id": sub_system_id,
         "device_id": f"d{tag}{index:09d}{ecu[0]}"[:19], "ecu_type": ecu, "primary": ecu == "TCU",
         "certificate_fingerprint": uuid.UUID(int=index).hex * 2, "home_region": "NA"}
        for ecu in ("TCU", "IVI")]
    endpoint = "mqtts://na.example:8883"
    answer = json.dumps({"message_id": str(uuid.UUID(int=index + 1)),
                         "correlation_id": str(uuid.UUID(int=index + 2)), "status": "SUCCESS",
                         "vin": vin, "body": {"gateway_endpoint": endpoint,
                                              "lifecyclestate": "PROVISION_PENDING_REGIONAL"}})
    remembered: Remembered = {"outputs": [{"topic": "provisioning.query.response", "key": vin,
                               "kind": "reply", "value": answer}], "effects": []}
    vehicle: GlobalVehicle = {
        "vin": vin, "system_id": system_id, "sub_system_id": sub_system_id,
        "primary_device_id": devices[0]["device_id"], "devices": devices, "state": "REGIONAL",
        "sequence": 1, "region": "NA", "country_code": "US", "gateway_endpoint": endpoint,
        "request_id": str(uuid.UUID(int=index + 3)), "pending": None, "error_code": None,
        "memo": {str(uuid.UUID(int=index + 2)): remembered}}
    system: SystemEntry = {"devices": {d["device_id"]: d for d in devices}, "vin": vin}
    return ([("registrations", d["device_id"], d) for d in devices]
            + [("systems", system_id, system), ("vehicles", vin, vehicle)])


def regional_entry(global_entry: GlobalVehicle, region: str) -> RegionalVehicle:
    """The region's entry of a synthetic vehicle: every device PROVISIONED, each with the answer
    to its DEVICE_PROVISION remembered, the primary's global identity deleted."""
    g = global_entry  # a synthetic one: every field is set
    devices = {d["device_id"]: RegionalDevice(ecu_type=d["ecu_type"], primary=d["primary"],
                                              certificate_fingerprint=d["certificate_fingerprint"],
                                              state="PROVISIONED")
               for d in g["devices"]}
    memo: dict[str, Remembered] = {}
    for n, device_id in enumerate(devices):
        answer = json.dumps({"message_id": f"{g['request_id']}-a{n}",
                             "correlation_id": f"{g['request_id']}-q{n}",
                             "status": "SUCCESS", "vin": g["vin"],
                             "body": {"device_id": device_id, "lifecyclestate": "PROVISIONED"}})
        memo[f"{g['request_id']}-q{n}"] = {
            "outputs": [{"topic": "provisioning.device.response", "key": g["vin"],
                         "kind": "reply", "value": answer}], "effects": []}
    return RegionalVehicle(
        vin=g["vin"], system_id=g["system_id"] or "", sub_system_id=g["sub_system_id"] or "",
        region=region, country_code=g["country_code"] or "", request_id=g["request_id"] or "",
        primary_device_id=g["primary_device_id"] or "", sequence=1, devices=devices,
        vehicle_info={}, held=[], global_identity_deleted=True, memo=memo)


def state_topics(config: Config, region: str | None) -> dict[str, str]:
    """Changelog topic per table the synthetic state fills (the region's under "regional")."""
    cat = Catalogue(config)
    topics = {t: changelog_topic(cat.global_app_id, t) for t in GLOBAL_TABLES}
    if region is not None:
        topics["regional"] = changelog_topic(cat.regional_app_id(region),
                                             regional_table(region))
    return topics


def write_state(config: Config, vehicles: int, tag: str, region: str | None = None) -> float:
    """Write the synthetic state into the global changelogs, and into ``region``'s when given;
    returns records/s."""
    topics = state_topics(config, region)
    out = producer(config, **{"linger.ms": 50, "batch.num.messages": 10000,
                              "compression.type": "lz4",
                              "queue.buffering.max.messages": 1_000_000})
    began = time.monotonic()
    per_vehicle = RECORDS_PER_VEHICLE + (REGIONAL_RECORDS_PER_VEHICLE if region else 0)
    for index in range(vehicles):
        made = entries(index, tag)
        if region is not None:
            vehicle = cast(GlobalVehicle, made[-1][2])
            made.append(("regional", vehicle["vin"], regional_entry(vehicle, region)))
        for table, key, entry in made:
            value = json.dumps(entry, separators=(",", ":")).encode()
            while True:
                try:
                    out.produce(topics[table], key=key.encode(), value=value)
                    break
                except BufferError:
                    out.poll(0.05)
        if index % 5000 == 0:
            out.poll(0)
        if index and index % 100_000 == 0:
            print(f"restore bench: {index} of {vehicles} vehicles written", file=sys.stderr)
    left = close_producer(out, 120)
    if left:
        raise RuntimeError(f"{left} synthetic state records were not delivered in 120 s")
    return vehicles * per_vehicle / (time.monotonic() - began)
