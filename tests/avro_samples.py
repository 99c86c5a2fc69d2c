"""One valid record of each Avro schema, for the serde, schema-evolution and registry tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
VIN = "1HGCM82633A004352"

SAMPLES: dict[str, dict[str, Any]] = {
    "DeviceRegistration": {
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "device_id": "TCU0000000000000001",
        "ecu_type": "TCU",
        "primary": True,
        "certificate_fingerprint": "sha256:9f86d081884c7d65",
        "home_region": "EU",
        "registered_at": T0,
    },
    "RehomeRequest": {
        "request_id": "0b3c6f1e-6a43-5b0e-9a38-2f0f4a0f2d11",
        "action": "REGISTER",
        "vin": VIN,
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "region": "EU",
        "country_code": "DE",
        "primary_device_id": "TCU0000000000000001",
        "devices": [
            {
                "device_id": "TCU0000000000000001",
                "ecu_type": "TCU",
                "primary": True,
                "certificate_fingerprint": "sha256:9f86d081884c7d65",
            },
            {
                "device_id": "IVI0000000000000002",
                "ecu_type": "IVI",
                "primary": False,
                "certificate_fingerprint": "sha256:60303ae22b998861",
            },
        ],
        "cause_message_id": "msg-query-0001",
        "sequence": 1,
        "requested_at": T0,
        "deadline_at": T0 + timedelta(seconds=30),
    },
    "RehomeResult": {
        "request_id": "0b3c6f1e-6a43-5b0e-9a38-2f0f4a0f2d11",
        "vin": VIN,
        "system_id": "c2c-sys-00000001",
        "region": "EU",
        "outcome": "FAILED",
        "gateway_endpoint": "",
        "error_code": 13105,
        "error_message": "regional gateway refused the identity",
        "completed_at": T0,
    },
    "LifecycleEvent": {
        "event_id": "6f1c3c9e-4b1e-5d5a-9d0e-2f7a1b8c4e21",
        "vin": VIN,
        "system_id": "c2c-sys-00000001",
        "device_id": "TCU0000000000000001",
        "partition": "EU",
        "state": "PROVISIONED",
        "previous_state": "REGIONAL",
        "error_code": None,
        "cause_message_id": "msg-device-0001",
        "sequence": 3,
        "occurred_at": T0,
    },
    "ChipsetOnboardingRequest": {
        "request_id": "a1f0c1d2-7e0b-5f5e-8c3d-4b2a1f0e9d8c",
        "vin": VIN,
        "system_id": "c2c-sys-00000001",
        "sub_system_id": "c2c-sub-00000001",
        "device_id": "TCU0000000000000001",
        "ecu_type": "TCU",
        "region": "EU",
        "chipsets": [
            {
                "id": "chip-1",
                "name": "modem",
                "type": "LTE",
                "state": "ACTIVE",
                "version": "2",
                "sw_version": "4.1.0",
                "hw_version": "B2",
                "program_sku_id": "SKU-77",
            },
            {
                "id": "chip-2",
                "name": None,
                "type": None,
                "state": None,
                "version": None,
                "sw_version": None,
                "hw_version": None,
                "program_sku_id": None,
            },
        ],
        "cause_message_id": "msg-device-0001",
        "requested_at": T0,
    },
    "DeadLetter": {
        "dead_letter_id": "d7e2b0a4-1c9f-5e3a-b6d8-0f4e2a1c3b5d",
        "source_topic": "provisioning.query",
        "source_partition": 5,
        "source_offset": 1_234_567_890_123,
        "key": None,
        "payload": b"\x00\xffnot json{",
        "error_code": 13113,
        "error_message": "payload is not valid JSON",
        "received_at": T0,
    },
}
