"""A synthetic global state, written straight into a deployment's changelog topics.

Entries shaped like the ones the flows write: two registrations, a system and a REGIONAL vehicle
with its remembered answer, four changelog records a vehicle. For the restore benchmark
(bench/restore.py) and the empty-disk reliability scenario: a state of a million vehicles is
written in a minute, where the flows would take hours.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from tables.models import GlobalVehicle, Registration, Remembered, SystemEntry
from vprov.config import Config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import producer

RECORDS_PER_VEHICLE = 4
GLOBAL_TABLES = ("registrations", "systems", "vehicles")


Entry = Registration | SystemEntry | GlobalVehicle


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


def write_state(config: Config, vehicles: int, tag: str) -> float:
    """Write the synthetic state into the global changelogs; returns records/s."""
    cat = Catalogue(config)
    topics = {t: f"{cat.global_app_id}-{t}-changelog" for t in GLOBAL_TABLES}
    out = producer(config, **{"linger.ms": 50, "batch.num.messages": 10000,
                              "compression.type": "lz4",
                              "queue.buffering.max.messages": 1_000_000})
    began = time.monotonic()
    for index in range(vehicles):
        for table, key, entry in entries(index, tag):
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
    out.flush(120)
    return vehicles * RECORDS_PER_VEHICLE / (time.monotonic() - began)
