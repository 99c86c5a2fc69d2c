"""``vprov register FILE``: publish registered devices from a JSON Lines file.

Each line: {"system_id", "sub_system_id", "device_id", "ecu_type", "primary",
"certificate_fingerprint", "home_region" (optional)}. A bad line is reported with its number and
skipped; the rest go on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vprov.config import Config
from vprov.flows.validation import MAX_LEN, is_valid_identifier

FIELDS = ("system_id", "sub_system_id", "device_id", "ecu_type", "primary",
          "certificate_fingerprint")


@dataclass(frozen=True)
class LineError:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def validate(doc: Any, config: Config) -> str | None:
    """Why a registration is unusable, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    for name in FIELDS:
        if name not in doc:
            return f"{name} is missing"
    for name in ("system_id", "sub_system_id", "device_id"):
        if not is_valid_identifier(doc[name], MAX_LEN[name]):
            return (f"{name}={doc[name]!r}: use letters, digits, '-', '_', '.' only, "
                    f"at most {MAX_LEN[name]} characters")
    if doc["ecu_type"] not in config.ecu_states:
        return f"ecu_type={doc['ecu_type']!r}: expected one of {', '.join(config.ecu_states)}"
    if not isinstance(doc["primary"], bool):
        return "primary must be true or false"
    fingerprint = doc["certificate_fingerprint"]
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        return "certificate_fingerprint must be a non-empty string"
    home = doc.get("home_region")
    if home is not None and home not in config.regions:
        return f"home_region={home!r}: expected one of {', '.join(config.regions)}"
    return None


def to_record(doc: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    return {
        "system_id": doc["system_id"],
        "sub_system_id": doc["sub_system_id"],
        "device_id": doc["device_id"],
        "ecu_type": doc["ecu_type"],
        "primary": doc["primary"],
        "certificate_fingerprint": doc["certificate_fingerprint"],
        "home_region": doc.get("home_region"),
        "registered_at": now_ms if now_ms is not None else int(time.time() * 1000),
    }


def read_lines(lines: Iterable[str], config: Config
               ) -> Iterator[dict[str, Any] | LineError]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            yield LineError(number, f"not valid JSON ({exc.msg})")
            continue
        problem = validate(doc, config)
        yield LineError(number, problem) if problem else to_record(doc)
