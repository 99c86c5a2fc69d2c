"""A vehicle's lifecycle events as text, the same in ``vprov status`` and ``vprov replay``."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def event_line(event: dict[str, Any], indent: str = "    ", cause: bool = False) -> str:
    """``#SEQ TIME PARTITION SUBJECT BEFORE -> STATE`` with the error code, and the request that
    caused it when ``cause``."""
    when = event["occurred_at"]
    stamp = when.isoformat(timespec="milliseconds") if isinstance(when, datetime) else str(when)
    subject = event["device_id"] or "vehicle"
    # a device registered after its vehicle was rehomed joins it: its first event has no
    # previous state
    joined = event["device_id"] and event["previous_state"] is None
    before = "(joined)" if joined else event["previous_state"] or "-"
    line = (f"{indent}#{event['sequence']:<3} {stamp}  {event['partition']:<6} {subject:<19} "
            f"{before} -> {event['state']}")
    if event.get("error_code"):
        line += f"  (error {event['error_code']})"
    return line + f"  cause {event['cause_message_id']}" if cause else line
