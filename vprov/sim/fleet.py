"""Simulated vehicles: the registration records and the messages their edge software sends.

Used by ``vprov simulate``, the benchmark and the integration tests, so all three speak to the
workers exactly as a vehicle would.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from vprov.config import Config, defaults_document
from vprov.core import envelope
from vprov.flows.validation import VIN_ALPHABET

FALLBACK_COUNTRY = "US"  # for a region that lists no country


@functools.cache
def _packaged_countries() -> dict[str, tuple[str, ...]]:
    return {code: tuple(body.get("countries", ()))
            for code, body in defaults_document()["regions"].items()}


def first_country(region: str, config: Config | None = None) -> str:
    """The first country ``region`` lists in ``config`` (default: the packaged configuration)."""
    countries = (config.regions[region].countries if config and region in config.regions
                 else _packaged_countries().get(region, ()))
    return countries[0] if countries else FALLBACK_COUNTRY


def _base33(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, len(VIN_ALPHABET))
        digits.append(VIN_ALPHABET[rem])
    return "".join(reversed(digits))


def run_tag(seed: str) -> str:
    """Five VIN-alphabet characters naming one simulation run, so runs never share a VIN."""
    digest = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return _base33(digest, 5)


@dataclass(frozen=True)
class SimDevice:
    device_id: str
    ecu_type: str
    primary: bool
    fingerprint: str
    chipsets: tuple[dict, ...] = ()


@dataclass(frozen=True)
class SimVehicle:
    vin: str
    system_id: str
    sub_system_id: str
    region: str
    country: str
    devices: tuple[SimDevice, ...] = field(default_factory=tuple)

    @property
    def primary(self) -> SimDevice:
        return next(d for d in self.devices if d.primary)


def make_vehicle(tag: str, index: int, region: str, ecu_types: tuple[str, ...] = ("TCU", "IVI"),
                 country: str | None = None) -> SimVehicle:
    """Vehicle ``index`` of run ``tag``; the first ECU type is the primary."""
    vin = "1V" + tag + _base33(index, 10)
    suffix = f"{tag.lower()}{index:08d}"
    devices = tuple(
        SimDevice(
            device_id=f"d{suffix}{k:02d}",
            ecu_type=ecu,
            primary=(k == 0),
            fingerprint=hashlib.sha1(f"{suffix}{k}".encode()).hexdigest(),
            chipsets=tuple(
                {"id": f"c{suffix}{k}{c}", "name": f"chip{c}", "type": "MODEM",
                 "state": "NEW", "version": "1", "sw_version": "1.0.0", "hw_version": "A1",
                 "program_sku_id": "SKU-1"}
                for c in range(2)
            ),
        )
        for k, ecu in enumerate(ecu_types)
    )
    return SimVehicle(vin=vin, system_id=f"sys-{suffix}", sub_system_id=f"sub-{suffix}",
                      region=region, country=country or first_country(region),
                      devices=devices)


def registrations(vehicle: SimVehicle) -> list[dict]:
    """The registration lines of ``vprov register`` for this vehicle."""
    return [
        {
            "system_id": vehicle.system_id,
            "sub_system_id": vehicle.sub_system_id,
            "device_id": d.device_id,
            "ecu_type": d.ecu_type,
            "primary": d.primary,
            "certificate_fingerprint": d.fingerprint,
        }
        for d in vehicle.devices
    ]


def query(vehicle: SimVehicle, message_id: str, now: int, *, region: str | None = None,
          body_encoding_type: int = 0, version: str = envelope.VERSION,
          bag_spelling: str = envelope.BAG_SNAKE, **overrides: object) -> bytes:
    primary = vehicle.primary
    body = {
        "system_id": vehicle.system_id,
        "sub_system_id": vehicle.sub_system_id,
        "vin": vehicle.vin,
        "deviceId": primary.device_id,
        "ecu_type": primary.ecu_type,
        "primary": True,
        "region_info": {"region_code": region or vehicle.region,
                        "country_code": vehicle.country},
    }
    body.update(overrides)
    return envelope.build_request(
        message_type=envelope.PROVISION_QUERY, message_id=message_id,
        system_id=vehicle.system_id, sub_system_id=vehicle.sub_system_id, vin=vehicle.vin,
        device_id=primary.device_id, ecu_type=primary.ecu_type, body=body, now=now,
        body_encoding_type=body_encoding_type, version=version, bag_spelling=bag_spelling,
    )


def device_provision(vehicle: SimVehicle, device: SimDevice, message_id: str, now: int, *,
                     body_encoding_type: int = 0, version: str = envelope.VERSION,
                     bag_spelling: str = envelope.BAG_SNAKE, **overrides: object) -> bytes:
    body = {
        "system_id": vehicle.system_id,
        "sub_system_id": vehicle.sub_system_id,
        "vin": vehicle.vin,
        "vehicle_info": {"class": "SUV", "style": "5D", "model": "V1", "year": "2026"},
        "device_id": device.device_id,
        "device_info": {"ecu_model": f"{device.ecu_type}-M1", "ecu_make": "ACME",
                        "ecu_type": device.ecu_type, "primary": device.primary},
        "chipsets_count": len(device.chipsets),
        "chipsets": list(device.chipsets),
        "region_info": {"region_code": vehicle.region, "country_code": vehicle.country},
        "SIMInfo": {"iccid": "8901" + device.fingerprint[:15]},
        "communication_channel": ["MQTT"],
        "configuration": {"heartbeat_s": 60},
        "privacyFlag": False,
    }
    body.update(overrides)
    return envelope.build_request(
        message_type=envelope.DEVICE_PROVISION, message_id=message_id,
        system_id=vehicle.system_id, sub_system_id=vehicle.sub_system_id, vin=vehicle.vin,
        device_id=device.device_id, ecu_type=device.ecu_type, body=body, now=now,
        body_encoding_type=body_encoding_type, version=version, bag_spelling=bag_spelling,
    )
