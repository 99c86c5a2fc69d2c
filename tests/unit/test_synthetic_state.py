"""The synthetic state the benchmarks and the empty-disk scenario write into the changelogs:
entries shaped like the flows' own, in the topics the workers' tables read."""

from __future__ import annotations

import json

from tables.models import GlobalVehicle, RegionalVehicle
from tests.unit.flowkit import CONFIG
from vprov.kafka.catalogue import Catalogue
from vprov.sim.synthetic_state import (
    RECORDS_PER_VEHICLE,
    entries,
    regional_entry,
    state_topics,
)


def global_vehicle(index: int) -> GlobalVehicle:
    [(table, _, vehicle)] = [e for e in entries(index, "t") if e[0] == "vehicles"]
    return vehicle  # type: ignore[return-value]


def test_a_vehicle_is_four_global_records_keyed_as_the_flows_key_them() -> None:
    made = entries(5, "t")
    assert len(made) == RECORDS_PER_VEHICLE
    vehicle = global_vehicle(5)
    keys = {table: key for table, key, _ in made}
    assert keys["vehicles"] == vehicle["vin"] and keys["systems"] == vehicle["system_id"]
    assert {d["device_id"] for d in vehicle["devices"]} == {
        key for table, key, _ in made if table == "registrations"}


def test_the_region_s_entry_is_the_vehicle_provisioned_with_its_answers_remembered() -> None:
    vehicle = global_vehicle(7)
    entry = regional_entry(vehicle, "NA")
    # the model's annotations are strings here: NotRequired is read from them
    required = {k for k, v in RegionalVehicle.__annotations__.items()
                if "NotRequired" not in str(v)}
    assert required <= set(entry)
    assert (entry["vin"], entry["region"], entry["primary_device_id"]) == (
        vehicle["vin"], "NA", vehicle["primary_device_id"])
    assert {d: s["state"] for d, s in entry["devices"].items()} == {
        d["device_id"]: "PROVISIONED" for d in vehicle["devices"]}
    for correlation_id, remembered in entry["memo"].items():
        [output] = remembered["outputs"]
        answer = json.loads(output["value"])
        assert (answer["correlation_id"], answer["vin"], answer["status"]) == (
            correlation_id, vehicle["vin"], "SUCCESS")
    assert len(entry["memo"]) == len(entry["devices"])


def test_the_state_goes_to_the_changelogs_of_the_workers_tables() -> None:
    cat = Catalogue(CONFIG)
    topics = state_topics(CONFIG, "NA")
    changelogs = {t.name for t in cat.all()}
    assert set(topics.values()) <= changelogs
    assert "regional" not in state_topics(CONFIG, None)
