"""``vprov status VIN``: one vehicle as the workers see it, the stage it waits in, and its
recent lifecycle events.

The global worker answers ``GET /vehicles/{vin}/`` for any VIN (Faust forwards the request to the
worker that owns the key); once the vehicle is REGIONAL its region's worker holds the device
states. While a region is asked to take the vehicle (a first-boot rehome, a move), that region's
worker is asked too, and its silence is reported, not fatal: it is often the answer. The events
and the dead letters come from their topics, read by throw-away consumers; ``vprov.ops.stage``
decides the stage from all of it.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import replace
from datetime import datetime
from typing import Any

from vprov import reach
from vprov.config import Config
from vprov.flows.lifecycle import State
from vprov.flows.validation import is_valid_vin
from vprov.kafka.topic_reader import TopicUnreadable
from vprov.ops import deadletter, deployment
from vprov.ops.history import event_line
from vprov.ops.lifecycle_events import dedupe, read_lifecycle
from vprov.ops.stage import RegionView, Stage, format_stage, stage_of
from vprov.reach import DEFAULT_CONNECT_TIMEOUT, Unreachable
from vprov.webclient import NoAnswer, WebClient

# Addresses of `make demo`'s workers; a region's follows from its place in the configuration.
DEFAULT_GLOBAL_URL = deployment.GLOBAL_URL


def worker_setting(url: str, role: str = "global", default: str | None = None) -> str:
    """The option that chose a worker's URL (``role``: global or a region code; ``default``:
    a region's default URL, when known)."""
    if role == "global":
        return reach.option_setting("--global-url", url, DEFAULT_GLOBAL_URL)
    return reach.option_setting(f"--region-url {role}=URL", url, default)


class WorkerUnreachable(Unreachable):
    """No answer from a worker's web port; the message names the URL, the option that chose it
    and how to start one."""

    def __init__(self, url: str, reason: str, role: str = "global",
                 default: str | None = None) -> None:
        start = ("vprov worker --role global" if role == "global"
                 else f"vprov worker --role regional --region {role}")
        url = url.rstrip("/")
        super().__init__(f"the {role} worker", url, worker_setting(url, role, default), reason,
                         f"start the workers with `make demo` or `{start} --web-port <port>`")
        self.url = url


def check_worker(url: str, timeout: float, role: str = "global") -> None:
    """WorkerUnreachable unless the worker at ``url`` answers HTTP within ``timeout``;
    ValueError when ``url`` is not http://host:port."""
    try:
        reach.http(url, f"the {role} worker", timeout, worker_setting(url, role))
    except Unreachable as exc:
        raise WorkerUnreachable(url, exc.reason, role) from None


class WorkerViews(WebClient):
    """One worker's table views; no answer is ``WorkerUnreachable``."""

    def __init__(self, base_url: str, role: str = "global", timeout: float = 10.0) -> None:
        super().__init__(base_url, timeout)
        self.role = role

    def get(self, path: str, timeout: float | None = None) -> tuple[int, Any]:
        try:
            return super().get(path, timeout)
        except NoAnswer as exc:
            raise WorkerUnreachable(self.base_url, reach.os_reason(exc, self.timeout, self.host),
                                    self.role) from None

    def vehicle(self, vin: str) -> dict[str, Any] | None:
        """The table entry for ``vin``, None when the worker has none (404)."""
        status, body = self.get_settled(f"/vehicles/{urllib.parse.quote(vin)}/")
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise WorkerUnreachable(self.base_url, f"GET /vehicles/{vin}/ answered HTTP {status}",
                                    self.role)
        return body

    def owner(self, table: str, key: str) -> str | None:
        """Web URL of the worker holding ``key`` in ``table`` (Faust's router view)."""
        status, body = self.get(f"/router/{table}/{urllib.parse.quote(key)}/")
        return body if status == 200 and isinstance(body, str) else None


def regional_vehicle(views: WorkerViews, vin: str, config: Config) -> dict[str, Any] | None:
    """``views.vehicle(vin)`` from a region's worker; when it does not answer, the error says
    whether its URL was the demo's default for the region or given with --region-url."""
    try:
        return views.vehicle(vin)
    except WorkerUnreachable as exc:
        default = deployment.region_urls(config).get(views.role)
        raise WorkerUnreachable(views.base_url, exc.reason, views.role, default) from None


def parse_region_urls(pairs: list[str] | None, config: Config) -> dict[str, str]:
    """``["NA=http://..."]`` over the demo's addresses of the configured regions; ValueError
    names a malformed pair."""
    urls = deployment.region_urls(config)
    for pair in pairs or []:
        code, sep, url = pair.partition("=")
        if not sep or not code or not url:
            raise ValueError(f"--region-url {pair!r}: expected REGION=http://host:port")
        if code not in config.regions:
            raise ValueError(f"--region-url {pair!r}: unknown region {code}; configured: "
                             f"{', '.join(config.regions)}")
        urls[code] = url
    return urls


def jsonable(value: Any) -> Any:
    """Events carry datetimes (Avro timestamp-millis); JSON gets ISO-8601 text."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


class UnknownVin(LookupError):
    pass


def region_view(config: Config, vin: str, region: str, urls: dict[str, str], timeout: float,
                strict: bool) -> RegionView:
    """What ``region``'s worker holds of ``vin``. ``strict``: a worker that does not answer is
    WorkerUnreachable (the vehicle lives there); else it is reported in the view."""
    url = urls.get(region)
    if url is None:
        return RegionView(problem=f"no URL for its worker: pass --region-url {region}="
                          "http://host:port")
    views = WorkerViews(url, role=region, timeout=timeout)
    try:
        return RegionView(entry=regional_vehicle(views, vin, config), url=url)
    except WorkerUnreachable as exc:
        if strict:
            raise
        return RegionView(problem=str(exc), url=url)
    finally:
        views.close()


def awaited_regions(record: dict[str, Any]) -> list[str]:
    """Regions asked to take the vehicle and not answered yet: a first-boot rehome's, a move's
    (the source while it exports, then the target)."""
    found = []
    pending = record.get("pending")
    if pending:
        found.append(pending["region"])
    command = record.get("admin")
    if command and command.get("operation") == "MOVE":
        found.append(command["source"] if command.get("stage") == "export"
                     else command["target"])
    return [r for r in found if r]


def vehicle_dead_letters(config: Config, vin: str, timeout: float
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """``vin``'s dead letters, and why none could be read (None when read)."""
    try:
        letters = deadletter.select(deadletter.read(config, None, timeout),
                                    deadletter.Selection())
    except TopicUnreadable as exc:
        return [], f"dead letters not read: {exc}"
    return letters, None


def vehicle_status(config: Config, vin: str, global_url: str, region_urls: dict[str, str],
                   events: int = 10, lifecycle_timeout: float = 10.0,
                   timeout: float = DEFAULT_CONNECT_TIMEOUT,
                   now_ms: int | None = None) -> tuple[dict[str, Any], Stage]:
    """The combined view of ``vin`` (global record, regional record, the stage it waits in,
    recent events), and the stage.

    Raises UnknownVin when the global table has no record, WorkerUnreachable when the global
    worker or the home region's does not answer (``timeout``: seconds per request).
    """
    views = WorkerViews(global_url, timeout=timeout)
    try:
        global_record = views.vehicle(vin)
        if global_record is None:
            raise UnknownVin(vin)
        owner = views.owner("vehicles", vin)
    finally:
        views.close()
    region = global_record.get("region")
    regional: dict[str, Any] | None = None
    regional_url = region_urls.get(region) if region else None
    note = None
    seen: dict[str, RegionView] = {}
    if region and global_record.get("state") == State.REGIONAL:
        if regional_url is None:
            note = f"no URL for region {region}: pass --region-url {region}=http://host:port"
        else:
            seen[region] = region_view(config, vin, region, region_urls, timeout, strict=True)
            found = seen[region].entry
            regional = dict(found) if found is not None else None
            if regional is None:
                note = f"region {region} has no record of {vin} (see vprov replay --verify)"
    for awaited in awaited_regions(global_record):
        if awaited not in seen:
            seen[awaited] = region_view(config, vin, awaited, region_urls, timeout,
                                        strict=False)
    history, _ = dedupe(read_lifecycle(config, vins={vin}, timeout=lifecycle_timeout))
    history.sort(key=lambda e: e["sequence"])
    letters, unread = vehicle_dead_letters(config, vin, lifecycle_timeout)
    stage = stage_of(config, vin, global_record, seen, history, letters,
                     int(time.time() * 1000) if now_ms is None else now_ms)
    if unread:
        stage = replace(stage, seen=(*stage.seen, unread))
    return ({
        "vin": vin,
        "global_url": global_url,
        "global_owner": owner,
        "global": global_record,
        "region": region,
        "regional_url": regional_url,
        "regional": regional,
        "note": note,
        "stage": stage.to_dict(),
        "events_total": len(history),
        "events": history[-events:] if events > 0 else [],
    }, stage)


def format_status(doc: dict[str, Any], stage: Stage) -> str:
    glob = doc["global"]
    lines = [f"vehicle {doc['vin']}: {glob.get('state')}"]
    lines += format_stage(stage)
    region = doc["region"] or "-"
    lines.append(f"  home region     {region}  (gateway {glob.get('gateway_endpoint') or '-'})")
    lines.append(f"  system          {glob.get('system_id')} / {glob.get('sub_system_id')}, "
                 f"country {glob.get('country_code') or '-'}")
    if glob.get("error_code"):
        lines.append(f"  last error      {glob['error_code']}")
    regional = doc["regional"] or {}
    regional_devices = regional.get("devices", {})
    lines.append("  devices:")
    for device in glob.get("devices", []):
        device_id = device["device_id"]
        state = regional_devices.get(device_id, {}).get("state") or (
            "(not in a region yet)" if not regional else "(missing in region)")
        role = "primary" if device.get("primary") else ""
        lines.append(f"    {device_id:<19} {device.get('ecu_type', ''):<12} {role:<8} {state}")
    if doc["note"]:
        lines.append(f"  note: {doc['note']}")
    shown = len(doc["events"])
    lines.append(f"  lifecycle events (last {shown} of {doc['events_total']}):")
    lines += [event_line(e) for e in doc["events"]] or ["    (none)"]
    return "\n".join(lines)


def run(config: Config, vin: str, global_url: str, region_pairs: list[str] | None,
        as_json: bool, events: int, out: Any, err: Any,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> int:
    """The ``vprov status`` command; returns the exit code (3: Kafka or a worker does not
    answer within ``connect_timeout``)."""
    if not is_valid_vin(vin):
        print(f"{vin!r} is not a VIN (17 characters: digits and capitals except I, O, Q)",
              file=err)
        return 2
    try:
        urls = parse_region_urls(region_pairs, config)
        # what every status needs, before anything else; a region's worker only when the
        # vehicle is there
        reach.kafka_of(config, connect_timeout)
        check_worker(global_url, connect_timeout)
        doc, stage = vehicle_status(config, vin, global_url, urls, events=events,
                                    timeout=connect_timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except UnknownVin:
        print(f"unknown VIN {vin}: the global worker at {global_url} has no record of it "
              "(never queried, or another deployment)", file=err)
        return 1
    except Unreachable as exc:  # Kafka, or a worker (WorkerUnreachable)
        print(f"error: {exc}", file=err)
        return 3
    if as_json:
        print(json.dumps(jsonable(doc), indent=2, sort_keys=True), file=out)
    else:
        print(format_status(doc, stage), file=out)
    return 0
