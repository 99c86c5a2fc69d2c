"""The conformance corpus: device messages in the published shapes, ready to send.

The fixtures beside this module are wire messages as deployed edge software sends them (see
``index.json`` for each one's source page and variant, and docs/wire-format.md). Their identifiers
are fixed sample values; ``load`` gives a fixture with a vehicle's own identifiers so that it can
be sent through real workers::

    from tests.conformance import corpus

    raw = corpus.load("device_provision_published", vin=vehicle.vin,
                      system_id=vehicle.system_id, sub_system_id=vehicle.sub_system_id,
                      device_id=device.device_id, ecu_type=device.ecu_type)

Only what a fixture already has is substituted, so its quirks stay: a header without vin or
ecu_type (v2) stays without, a blank body device_id stays blank (the envelope's device id
stands), the lower-case country code stays unless ``country_code`` is given. The body is encoded
again the way the fixture encodes it (base64 of compact JSON, or a JSON object), under the bag
spelling it uses.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BAGS = (("property_bag", "body_encoding_type"), ("propertyBag", "bodyEncodingType"))


@cache
def index() -> dict[str, dict[str, Any]]:
    """Fixture name -> its entry in ``index.json`` (source page, message type, variant)."""
    entries = json.loads((HERE / "index.json").read_text(encoding="utf-8"))["fixtures"]
    return {entry["name"]: entry for entry in entries}


def names(message_type: str | None = None) -> list[str]:
    """Every fixture's name, or those of one message type (``PROVISION_QUERY``, ...)."""
    return [name for name, entry in index().items()
            if message_type is None or entry["message_type"] == message_type]


def raw(name: str) -> bytes:
    """A fixture's bytes exactly as stored."""
    if name not in index():
        raise KeyError(f"no fixture {name!r}; known: {', '.join(index())}")
    return (HERE / f"{name}.json").read_bytes()


def _bag(doc: dict[str, Any]) -> tuple[str, str]:
    for bag_key, encoding_key in BAGS:
        if isinstance(doc.get(bag_key), dict):
            return bag_key, encoding_key
    raise ValueError("fixture has no property bag")


def _set_if_present(target: dict[str, Any], key: str, value: Any) -> None:
    if key in target:
        target[key] = value


def load(
    name: str,
    *,
    vin: str,
    system_id: str,
    sub_system_id: str,
    device_id: str,
    ecu_type: str,
    region_code: str = "NA",
    country_code: str | None = None,
    primary: bool | None = None,
    message_id: str | None = None,
    time: int | None = None,
) -> bytes:
    """Fixture ``name`` with these identifiers, as bytes to send (keyed by ``vin``).

    Optional: ``country_code`` (default: the fixture's, lower-case "ca"), ``primary`` (default:
    the fixture's, true: the fixtures describe the primary TCU), ``message_id`` (default: the
    fixture's; give one per send when a vehicle gets several), ``time`` in epoch seconds
    (default: the fixture's; written in the fixture's unit, milliseconds for
    ``device_provision_time_ms``). Every fixture has ttl -1 or none, so none expires.
    """
    doc = json.loads(raw(name))
    bag_key, encoding_key = _bag(doc)
    encoding = doc[bag_key][encoding_key]
    body = doc["body"]
    if encoding == 1:
        body = json.loads(base64.b64decode(body, validate=True))

    doc.update(system_id=system_id, sub_system_id=sub_system_id, device_id=device_id)
    _set_if_present(doc, "vin", vin)
    _set_if_present(doc, "ecu_type", ecu_type)
    if message_id is not None:
        doc["message_id"] = message_id
    if time is not None:
        doc["time"] = time * 1000 if doc["time"] >= 10**11 else time

    body.update(system_id=system_id, sub_system_id=sub_system_id, vin=vin)
    for key in ("deviceId", "device_id"):
        if body.get(key):  # a blank one is the published quirk: keep it blank
            body[key] = device_id
    _set_if_present(body, "ecu_type", ecu_type)
    info = body.get("device_info")
    if isinstance(info, dict):
        _set_if_present(info, "ecu_type", ecu_type)
        if primary is not None:
            _set_if_present(info, "primary", primary)
    if primary is not None:
        _set_if_present(body, "primary", primary)
    body["region_info"]["region_code"] = region_code
    if country_code is not None:
        body["region_info"]["country_code"] = country_code

    if encoding == 1:
        body = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
    doc["body"] = body
    return json.dumps(doc, separators=(",", ":")).encode()
