"""The conformance corpus through the real pipeline: the platform's published message shapes
(tests/conformance, docs/wire-format.md) provision a vehicle end to end, each answered in the
version and property-bag spelling it was sent in."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.conformance import corpus
from tests.integration.conftest import Flow
from tests.integration.harness import Fleet, Record
from vprov.sim import fleet

AUTH = "authenticated-device-id"


def dialect(raw: bytes) -> tuple[str, str]:
    doc = json.loads(raw)
    return doc["version"], "propertyBag" if "propertyBag" in doc else "property_bag"


def send(flow: Flow, topic: str, vehicle: fleet.SimVehicle, name: str, **ids: Any
         ) -> tuple[bytes, Record]:
    device = vehicle.primary
    message_id = f"DEV-{uuid.uuid4()}"
    raw = corpus.load(name, vin=vehicle.vin, system_id=vehicle.system_id,
                      sub_system_id=vehicle.sub_system_id, device_id=device.device_id,
                      ecu_type=device.ecu_type, message_id=message_id,
                      time=int(time.time()), **ids)
    flow.bus.send(topic, vehicle.vin, raw, {AUTH: device.device_id})
    flow.bus.flush()
    answers = flow.cat.query_response if topic == flow.cat.query else \
        flow.cat.device_response("NA")
    return raw, flow.answer(message_id, answers)


def check_dialect(raw: bytes, answer: Record) -> dict[str, Any]:
    version, bag = dialect(raw)
    doc = answer.value
    assert doc["version"] == version
    assert bag in doc, f"answer bag spelt unlike the request's {bag}"
    if version == "v2":
        assert not {"vin", "ecu_type", "status"} & set(doc)
        assert isinstance(doc["message_type"], int)
    else:
        assert doc["status"] == "SUCCESS", doc
    assert "error_code" not in doc[bag] and "errorCode" not in doc[bag], doc[bag]
    return doc


@pytest.mark.parametrize("name", corpus.names("PROVISION_QUERY"))
def test_published_query_shapes_are_answered_with_the_region(
        flow: Flow, fleet_: Fleet, name: str) -> None:
    vehicle = fleet_.vehicle("NA", ("TCU",))
    flow.register(vehicle)
    raw, answer = send(flow, flow.cat.query, vehicle, name)
    doc = check_dialect(raw, answer)
    assert doc["body"]["lifecyclestate"] == "PROVISION_PENDING_REGIONAL"
    assert doc["body"]["iot_gateway_endpoint"].startswith("mqtts://")
    assert doc["message_type"] in ("PROVISION_QUERY_RESPONSE", 3)


@pytest.mark.parametrize("name", corpus.names("DEVICE_PROVISION"))
def test_published_device_provision_shapes_provision_the_device(
        flow: Flow, fleet_: Fleet, name: str) -> None:
    vehicle = fleet_.vehicle("NA", ("TCU",))
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    raw, answer = send(flow, flow.cat.device("NA"), vehicle, name)
    doc = check_dialect(raw, answer)
    assert doc["body"]["lifecycyclestate"] == "PROVISIONED"
    assert doc["message_type"] in ("DEVICE_PROVISION_RESPONSE", 6)

    # normalised on the way in: what the region stored and handed to onboarding
    [onboarding] = flow.bus.wait(flow.cat.onboarding("NA"), lambda r: r.key == vehicle.vin)
    chipsets = onboarding.value["chipsets"]
    assert [(c["id"], c["state"], c["program_sku_id"]) for c in chipsets] == \
        [("", "UNREGISTERED", "667")] * 2
    status, entry = flow.workers["NA"].get(f"/vehicles/{vehicle.vin}/")
    assert status == 200
    assert entry["devices"][vehicle.primary.device_id]["state"] == "PROVISIONED"
