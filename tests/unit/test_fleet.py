"""Simulated vehicles take their country from the configuration of their region."""

from __future__ import annotations

from pathlib import Path

from vprov import config
from vprov.sim import fleet


def test_a_vehicle_country_is_its_region_first_configured_country(tmp_path: Path) -> None:
    doc = config.defaults_document()
    doc["regions"]["SA"] = {"gateway_endpoint": "mqtts://sa.iot.vprov.example:8883",
                            "countries": ["BR", "AR"]}
    path = tmp_path / "vprov.toml"
    path.write_text(config.dumps(doc))
    assert fleet.first_country("SA", config.load(path, env={})) == "BR"
    assert fleet.make_vehicle("TAGAA", 1, "EU").country == "DE"  # the packaged configuration
    assert fleet.first_country("ZZ") == fleet.FALLBACK_COUNTRY  # a region listing none
