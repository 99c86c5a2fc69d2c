"""Why a vehicle is stuck: the stage it waits in, and what an operator can do (``vprov status``).

A decision over what the workers and the topics show of one vehicle at one time: its global
entry, its regional entries, its lifecycle history and its dead letters. No I/O and no clock:
``vprov.ops.status`` fetches them and passes ``now_ms``. The stage says what the vehicle waits for,
since when, the deadline and what the flows do when it passes, the requests held for it, its
dead letters with the ``vprov deadletter`` commands for them, and the next thing to do.

Entries come either as the tables hold them or as the workers' web views show them (no memo;
held requests only counted, ``held_requests``); both work.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from vprov.config import Config
from vprov.core.codes import MESSAGES, ErrorCode
from vprov.flows.lifecycle import PROVISIONED_STATES, State
from vprov.kafka.catalogue import Catalogue

Entry = Mapping[str, Any]


class StageName(StrEnum):
    UNBOUND = "UNBOUND"  # no query has bound the VIN to a system
    REHOME = "REHOME"  # first boot: the home region has not confirmed yet
    QUERY_FAILED = "QUERY_FAILED"  # QRY_FAIL: the primary's next query tries again
    MOVE = "MOVE"  # an operator's move under way
    REGION_COMMAND = "REGION_COMMAND"  # replace-device or decommission waiting for the region
    REGION_UNSEEN = "REGION_UNSEEN"  # REGIONAL, the region's record could not be read
    FROZEN = "FROZEN"  # the region still holds the vehicle frozen by a move
    JOIN = "JOIN"  # a device's request held until its registration joins the vehicle
    DEVICES = "DEVICES"  # devices still to provision
    DEVICE_FAILED = "DEVICE_FAILED"  # a device in PROV_FAIL
    PROVISIONED = "PROVISIONED"  # nothing to wait for
    DECOMMISSIONED = "DECOMMISSIONED"
    UNKNOWN = "UNKNOWN"  # a state no stage describes


@dataclass(frozen=True)
class RegionView:
    """What ``vprov status`` learned of one region's record of the vehicle: the entry, or None
    with ``problem`` None when the region has none, or ``problem`` when it could not ask."""

    entry: Entry | None = None
    problem: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Held:
    """A device request a region holds: for its registration to join (``JOIN``, until
    ``until_ms``) or for the primary to provision first (``PRIMARY``, no deadline)."""

    waits_for: str
    device_id: str | None
    message_id: str | None
    until_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"waits_for": self.waits_for, "device_id": self.device_id,
                "message_id": self.message_id, "until_ms": self.until_ms,
                "until": stamp(self.until_ms)}


@dataclass(frozen=True)
class Letter:
    """One dead letter of the vehicle and the commands that act on it."""

    dead_letter_id: str
    received_ms: int
    error_code: int
    error_message: str
    source: str
    advice: str
    commands: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dead_letter_id": self.dead_letter_id, "received_ms": self.received_ms,
                "received": stamp(self.received_ms), "error_code": self.error_code,
                "error_message": self.error_message, "source": self.source,
                "advice": self.advice, "commands": list(self.commands)}


@dataclass(frozen=True)
class Stage:
    name: StageName
    waiting_for: str
    now_ms: int
    since_ms: int | None = None
    deadline_ms: int | None = None
    at_deadline: str | None = None  # what the flows do when the deadline passes
    seen: tuple[str, ...] = ()  # observations that explain the wait
    held: tuple[Held, ...] = ()
    held_unlisted: int = 0  # requests the worker's view counts but does not list
    dead_letters: tuple[Letter, ...] = ()
    next: tuple[str, ...] = ()

    @property
    def overdue(self) -> bool:
        return self.deadline_ms is not None and self.deadline_ms < self.now_ms

    def to_dict(self) -> dict[str, Any]:
        """The stable shape of ``vprov status --json``'s ``stage``."""
        return {
            "name": self.name.value,
            "waiting_for": self.waiting_for,
            "since_ms": self.since_ms,
            "since": stamp(self.since_ms),
            "deadline_ms": self.deadline_ms,
            "deadline": stamp(self.deadline_ms),
            "overdue": self.overdue,
            "at_deadline": self.at_deadline,
            "seen": list(self.seen),
            "held": [h.to_dict() for h in self.held],
            "held_unlisted": self.held_unlisted,
            "dead_letters": [d.to_dict() for d in self.dead_letters],
            "next": list(self.next),
        }


# --- times -------------------------------------------------------------------------------------


def millis(value: Any) -> int | None:
    """Avro timestamps decode to datetimes, the flows' records carry milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def stamp(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def span(ms: int) -> str:
    """A duration as a person reads it: 42 s, 3 min 5 s, 2 h 10 min, 3 d 4 h."""
    seconds = max(ms, 0) // 1000
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60),
                                      ("min", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return f"{seconds // size} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{seconds} s"


def relative(ms: int, now_ms: int) -> str:
    return f"in {span(ms - now_ms)}" if ms > now_ms else f"{span(now_ms - ms)} ago"


# --- the inputs --------------------------------------------------------------------------------


def vehicle_letters(letters: Sequence[Entry], vin: str) -> list[Entry]:
    """The dead letters of ``vin``: keyed by it, or (a record with another key or none) naming
    it in the payload."""
    key = vin.encode()
    return [d for d in letters if (d.get("key") or b"") == key or key in (d.get("payload") or b"")]


def _letter(d: Entry) -> Letter:
    ident = d["dead_letter_id"]
    if d["error_code"] == ErrorCode.INTERNAL_ERROR:
        advice = "a worker failed on this record: report it with the record, redrive once fixed"
    else:
        advice = ("refused as sent: redrive only once a configuration change accepts it; else "
                  "the device must send a correct request")
    return Letter(
        dead_letter_id=ident, received_ms=millis(d["received_at"]) or 0,
        error_code=d["error_code"], error_message=d["error_message"],
        source=f"{d['source_topic']}:{d['source_partition']}:{d['source_offset']}",
        advice=advice,
        commands=(f"vprov deadletter show --id {ident}",
                  f"vprov deadletter redrive --id {ident} --dry-run",
                  f"vprov deadletter redrive --id {ident}"))


def _held(entry: Entry) -> tuple[list[Held], int]:
    """The requests ``entry`` holds, and how many more it counts without listing them (a web
    view shows only ``held_requests``)."""
    items = entry.get("held")
    listed = []
    for item in items if isinstance(items, list) else []:
        if "until_ms" in item:
            listed.append(Held("JOIN", item.get("device_id"), item.get("message_id"),
                               item["until_ms"]))
        else:  # a secondary's request: the gateway's authenticated sender names the device
            sender = (item.get("source") or {}).get("authenticated")
            listed.append(Held("PRIMARY", item.get("device_id") or sender,
                               item.get("message_id")))
    count = entry.get("held_requests")
    return listed, max((count if isinstance(count, int) else 0) - len(listed), 0)


def _last_event(history: Sequence[Entry], *, device_id: str | None = None,
                state: str | None = None) -> Entry | None:
    found = [e for e in history if e.get("device_id") == device_id
             and (state is None or e.get("state") == state)]
    return max(found, key=lambda e: e["sequence"]) if found else None


def _event_ms(event: Entry | None) -> int | None:
    return millis(event["occurred_at"]) if event else None


def _code_text(code: int | None) -> str:
    if code is None:
        return "no code"
    try:
        return f"{code} ({MESSAGES[ErrorCode(code)]})"
    except (ValueError, KeyError):  # a code this version does not know
        return str(code)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# --- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What every stage's rule reads."""

    config: Config
    vin: str
    glob: Entry
    regions: Mapping[str, RegionView]
    history: Sequence[Entry]
    now_ms: int

    def rehome_topic(self, region: str) -> str:
        return Catalogue(self.config).rehome(region)

    def link(self, region: str) -> str:
        """Where a request to ``region`` may be stuck besides its worker."""
        if self.config.multi_cluster:
            return f" and the MirrorMaker link to {region}'s cluster"
        return ""

    def check_worker(self, region: str) -> str:
        return (f"check region {region}'s worker runs (`vprov worker --role regional --region "
                f"{region}`) and reads {self.rehome_topic(region)}{self.link(region)}")

    def registered(self, region: str, request_id: str) -> bool:
        """Has ``region`` stored the vehicle under ``request_id``?"""
        view = self.regions.get(region)
        entry = view.entry if view else None
        return entry is not None and entry.get("request_id") == request_id

    def region_seen(self, region: str, request_id: str | None = None) -> tuple[str, ...]:
        view = self.regions.get(region)
        if view is None:
            return ()
        if view.problem:
            return (f"region {region}: {view.problem}",)
        if view.entry is None:
            return (f"region {region} has no record of the vehicle",)
        if request_id is not None and view.entry.get("request_id") == request_id:
            return (f"region {region} has registered the vehicle (request {request_id})",)
        if request_id is not None:
            return (f"region {region} holds the vehicle under another request "
                    f"({view.entry.get('request_id')})",)
        return ()


def stage_of(config: Config, vin: str, glob: Entry, regions: Mapping[str, RegionView],
             history: Sequence[Entry], letters: Sequence[Entry], now_ms: int) -> Stage:
    """The stage ``vin`` waits in. ``glob``: its global entry; ``regions``: what is known of
    its regional entries, by region; ``history``: its lifecycle events; ``letters``: dead
    letters (those of other vehicles are left out here)."""
    facts = _Facts(config, vin, glob, regions, history, now_ms)
    stage = _decide(facts)
    mine = tuple(_letter(d) for d in vehicle_letters(letters, vin))
    if not mine:
        return stage
    ids = " ".join(f"--id {d.dead_letter_id}" for d in mine)
    look = (f"look at its {_plural(len(mine), 'dead letter', 'dead letters')}: "
            f"`vprov deadletter show {ids}`; redrive once the cause is fixed "
            f"(`vprov deadletter redrive {ids} --dry-run` first)")
    return replace(stage, dead_letters=mine, next=(*stage.next, look))


def _decide(f: _Facts) -> Stage:
    glob = f.glob
    state = glob.get("state")
    if glob.get("admin"):
        return _command_under_way(f, glob["admin"])
    if glob.get("pending"):
        return _rehome(f, glob["pending"])
    if state == State.DECOMMISSIONED:
        return Stage(StageName.DECOMMISSIONED, "nothing: the vehicle is decommissioned",
                     f.now_ms, since_ms=_event_ms(_last_event(f.history, state=state)),
                     next=(f"nothing, unless it returns to service: `vprov vehicle reinstate "
                           f"{f.vin}` lets it be queried and bound again",))
    if state == State.QRY_FAIL:
        return _query_failed(f)
    if state == State.REGISTERED and glob.get("system_id") is None:
        return Stage(StageName.UNBOUND, "a query from the vehicle's primary device to bind the "
                     "VIN to its system", f.now_ms,
                     since_ms=_event_ms(_last_event(f.history)),
                     next=("make sure the system's devices are registered (`vprov register "
                           "FILE`: a query for an unknown system is answered 13103), then let "
                           "the primary device query again",))
    if state == State.REGIONAL:
        return _regional(f)
    return Stage(StageName.UNKNOWN, f"nothing known for state {state}", f.now_ms,
                 next=(f"`vprov replay --vin {f.vin} --verify` compares its history with the "
                       "tables",))


def _rehome(f: _Facts, pending: Entry) -> Stage:
    region, request_id = pending["region"], pending["request_id"]
    deadline = pending["deadline_ms"]
    waiters = len(pending.get("waiters") or ())
    seen = f.region_seen(region, request_id)
    registered = f.registered(region, request_id)
    stage = Stage(
        StageName.REHOME,
        f"region {region} to confirm the vehicle's registration (rehome request {request_id})",
        f.now_ms, since_ms=deadline - int(f.config.rehome_timeout_seconds * 1000),
        deadline_ms=deadline,
        at_deadline=(f"{_plural(waiters, 'waiting query is', 'waiting queries are')} answered "
                     f"13105 (regional registration failed), the vehicle goes QRY_FAIL and "
                     f"region {region} is told to CANCEL what it stored; the primary's next "
                     "query starts over"),
        seen=seen)
    actions = []
    if stage.overdue:
        actions.append(f"the deadline passed {span(f.now_ms - deadline)} ago and the global "
                       "worker has not given up: check it runs and reads "
                       f"{Catalogue(f.config).vehicle_commands} (its deadline timer sends the "
                       "give-up there)")
    if registered:
        actions.append(f"region {region}'s confirmation has not reached the global worker: "
                       f"check {Catalogue(f.config).rehome_result}"
                       + (f" and the MirrorMaker link from {region}'s cluster"
                          if f.config.multi_cluster else ""))
    else:
        actions.append(f.check_worker(region))
    if not stage.overdue:
        actions.append(f"or wait: at the deadline ({relative(deadline, f.now_ms)}) the query "
                       "is answered 13105 and the vehicle can start over")
    return replace(stage, next=tuple(actions))


def _query_failed(f: _Facts) -> Stage:
    failed = _last_event(f.history, state=State.QRY_FAIL)
    code = f.glob.get("error_code") or (failed or {}).get("error_code")
    if code == ErrorCode.REGIONAL_REGISTRATION_FAILED:
        fix = ("the home region did not confirm in time, or refused: check its worker and "
               "its rehome topic, then let the primary query again (the retry starts over)")
    elif code == ErrorCode.REGION_NOT_FOUND:
        fix = ("no configured region fits the query's region_code and country: compare them "
               "with `vprov config regions` and the homing policy (docs/configuration.md), "
               "then let the primary query again")
    else:
        fix = "let the primary query again: the next query starts over"
    return Stage(StageName.QUERY_FAILED,
                 f"a new query from the primary device; the last one failed with "
                 f"{_code_text(code)}", f.now_ms, since_ms=_event_ms(failed), next=(fix,))


def _command_under_way(f: _Facts, admin: Entry) -> Stage:
    operation, command_id = admin["operation"], admin["command_id"]
    verb = {"MOVE": "move", "REPLACE_DEVICE": "replace-device",
            "DECOMMISSION": "decommission"}.get(operation, operation.lower())
    again = (f"`vprov vehicle {verb} {f.vin}"
             + (f" --to {admin.get('target')}" if operation == "MOVE" else "")
             + f" --command-id {command_id}` waits for the command's outcome (no second effect)")
    if operation != "MOVE":
        region = admin.get("source") or "-"
        return Stage(StageName.REGION_COMMAND,
                     f"region {region} to carry out {operation} (command {command_id})",
                     f.now_ms, seen=f.region_seen(region),
                     next=(f.check_worker(region), again))
    source, target = admin.get("source"), admin.get("target")
    deadline = admin.get("deadline_ms")
    if admin.get("stage") == "export":
        waited, what = source, f"region {source} to export the vehicle for its move to {target}"
        undo = f"region {source} is told to RESUME"
    else:
        waited, what = target, f"region {target} to take the vehicle up, moved from {source}"
        undo = f"region {source} is told to RESUME and region {target} to CANCEL"
    since = deadline - int(f.config.move_timeout_seconds * 1000) if deadline else None
    stage = Stage(
        StageName.MOVE, f"{what} (command {command_id})", f.now_ms, since_ms=since,
        deadline_ms=deadline,
        at_deadline=(f"the move is undone: the vehicle stays REGIONAL in {source}, {undo}, and "
                     "the command ends FAILED (13105)"),
        seen=f.region_seen(str(waited)))
    actions = [f.check_worker(str(waited)), again]
    if stage.overdue:
        actions.insert(0, "the deadline has passed and the global worker has not undone the "
                       "move: check it runs and reads "
                       f"{Catalogue(f.config).vehicle_commands}")
    return replace(stage, next=tuple(actions))


def _regional(f: _Facts) -> Stage:
    region = f.glob.get("region") or "-"
    view = f.regions.get(region)
    if view is None or view.entry is None:
        if view is None:
            why = f"pass --region-url {region}=http://host:port to see its devices"
        elif view.problem:
            why = f"region {region}: {view.problem}"
        else:
            why = (f"region {region} has no record of the vehicle: `vprov replay --vin "
                   f"{f.vin} --verify` shows where history and tables part")
        return Stage(StageName.REGION_UNSEEN, f"unknown: region {region}'s record could not be "
                     "read", f.now_ms, seen=f.region_seen(region), next=(why,))
    entry = view.entry
    regional_since = _event_ms(_last_event(f.history, state=State.REGIONAL))
    if entry.get("frozen"):
        frozen = entry["frozen"]
        return Stage(StageName.FROZEN,
                     f"the end of a move: region {region} holds the vehicle frozen "
                     f"({frozen.get('direction')}, request {frozen.get('request_id')}), its "
                     "devices' requests are answered 13131 meanwhile", f.now_ms,
                     next=("the global side has no move under way: its last request (COMMIT, "
                           f"RESUME or RELEASE) has not reached region {region}; "
                           + f.check_worker(region),))
    held, unlisted = _held(entry)
    devices: Mapping[str, Entry] = entry.get("devices") or {}
    primary_id = entry.get("primary_device_id")
    primary = devices.get(primary_id or "")
    primary_done = primary is not None and primary.get("state") in PROVISIONED_STATES
    joining = sorted((h for h in held if h.waits_for == "JOIN"),
                     key=lambda h: h.until_ms or 0)
    if joining or (unlisted and primary_done):
        return _join(f, region, joining, held, unlisted)
    failed = sorted(d for d, e in devices.items() if e.get("state") == State.PROV_FAIL)
    if failed:
        return _device_failed(f, region, failed, held, unlisted)
    todo = sorted(d for d, e in devices.items() if e.get("state") not in PROVISIONED_STATES)
    missing = sorted(d["device_id"] for d in f.glob.get("devices") or ()
                     if d["device_id"] not in devices)
    if todo or missing:
        return _devices(f, region, entry, todo, missing, held, unlisted, regional_since)
    last = max(f.history, key=lambda e: e["sequence"]) if f.history else None
    return Stage(StageName.PROVISIONED, "nothing: every device is provisioned", f.now_ms,
                 since_ms=_event_ms(last), held=tuple(held), held_unlisted=unlisted,
                 next=("nothing to do",))


def _join(f: _Facts, region: str, joining: list[Held], held: list[Held],
          unlisted: int) -> Stage:
    system = f.glob.get("system_id")
    names = ", ".join(dict.fromkeys(h.device_id or "?" for h in joining))
    first = joining[0].until_ms if joining else None
    if joining:
        what = (f"{'device' if len(joining) == 1 else 'devices'} {names} to join the vehicle "
                "(a request came from it, its registration has not)")
    else:
        what = (f"{_plural(unlisted, 'device', 'devices')} to join the vehicle: region "
                f"{region} holds {_plural(unlisted, 'request', 'requests')} from devices not "
                "part of it (the worker's view does not name them)")
    wait = f"{f.config.join_wait_seconds:g} s"
    stage = Stage(
        StageName.JOIN, what, f.now_ms,
        since_ms=first - int(f.config.join_wait_seconds * 1000) if first else None,
        deadline_ms=first,
        at_deadline=("the held request is answered 13123 (device not part of the vehicle); "
                     "once its registration has joined, the device's next request provisions"
                     if first else f"each held request is answered 13123 {wait} after it "
                     "came, unless its device's registration joins first"),
        held=tuple(held), held_unlisted=unlisted)
    actions = [f"register {names or 'those devices'} under system {system} (`vprov register "
               "FILE`) before the deadline; a registration under another system keeps it out"]
    if stage.overdue:
        actions.insert(0, f"the hold deadline has passed and region {region} has not answered: "
                       f"check its worker runs (its timer answers held requests from "
                       f"{Catalogue(f.config).regional_commands(region)})")
    return replace(stage, next=tuple(actions))


def _device_failed(f: _Facts, region: str, failed: list[str], held: list[Held],
                   unlisted: int) -> Stage:
    events = [_last_event(f.history, device_id=d, state=State.PROV_FAIL) for d in failed]
    codes = {e.get("error_code") for e in events if e}
    code = codes.pop() if len(codes) == 1 else None
    why = f"failed with {_code_text(code)}" if code else "see its lifecycle events for why"
    since = [ms for ms in map(_event_ms, events) if ms is not None]
    return Stage(StageName.DEVICE_FAILED,
                 f"{'device' if len(failed) == 1 else 'devices'} {', '.join(failed)} to "
                 f"provision again; PROV_FAIL, {why}", f.now_ms,
                 since_ms=min(since) if since else None, held=tuple(held),
                 held_unlisted=unlisted,
                 next=(f"the device's next DEVICE_PROVISION to region {region} tries again; "
                       "fix what the error names first",))


def _devices(f: _Facts, region: str, entry: Entry, todo: list[str], missing: list[str],
             held: list[Held], unlisted: int, since: int | None) -> Stage:
    devices: Mapping[str, Entry] = entry.get("devices") or {}
    primary_id = entry.get("primary_device_id") or ""
    for_primary = sum(1 for h in held if h.waits_for == "PRIMARY") + unlisted
    if primary_id in todo:
        ecu = devices[primary_id].get("ecu_type", "")
        what = f"the primary device {primary_id} ({ecu}) to provision: the others wait for it"
        if for_primary:
            what += f" ({_plural(for_primary, 'request', 'requests')} held)"
    elif todo:
        what = "devices " + ", ".join(f"{d} ({devices[d].get('ecu_type', '')})" for d in todo) \
            + " to provision"
    else:
        what = f"region {region} to add {', '.join(missing)}, part of the vehicle"
    gateway = f.glob.get("gateway_endpoint") or "-"
    actions = []
    if todo:
        actions.append(f"nothing on the platform side: the devices have not asked region "
                       f"{region} (gateway {gateway}) to provision; check the vehicle is on "
                       "and reaches its gateway")
    if missing:
        actions.append(f"{', '.join(missing)}: part of the vehicle, not yet in region {region}"
                       f" (its JOIN is on its way); {f.check_worker(region)}")
    return Stage(StageName.DEVICES, what, f.now_ms, since_ms=since,
                 held=tuple(held), held_unlisted=unlisted,
                 next=tuple(actions))


# --- text --------------------------------------------------------------------------------------


def _wrapped(label: str, text: str, width: int = 100, hang: int = 0) -> list[str]:
    """``text`` after a label column, wrapped; ``hang``: extra indent of the lines after the
    first (under a list item's text, past its number)."""
    head = f"  {label:<15} "
    return textwrap.wrap(text, width, initial_indent=head, break_on_hyphens=False,
                         subsequent_indent=" " * (len(head) + hang)) or [head.rstrip()]


def format_stage(stage: Stage) -> list[str]:
    """The stage as the lines of ``vprov status``."""
    now = stage.now_ms
    lines = [f"  {'stage':<15} {stage.name.value}", *_wrapped("waits for", stage.waiting_for)]
    if stage.since_ms is not None:
        lines.append(f"  {'since':<15} {stamp(stage.since_ms)} "
                     f"({relative(stage.since_ms, now)})")
    if stage.deadline_ms is not None:
        late = "  OVERDUE" if stage.overdue else ""
        lines.append(f"  {'deadline':<15} {stamp(stage.deadline_ms)} "
                     f"({relative(stage.deadline_ms, now)}){late}")
        if stage.at_deadline:
            lines += _wrapped("then", stage.at_deadline)
    elif stage.at_deadline:  # there is one, the worker's view does not show it
        lines += _wrapped("deadline", stage.at_deadline)
    elif stage.name not in (StageName.PROVISIONED, StageName.DECOMMISSIONED,
                            StageName.REGION_UNSEEN, StageName.UNKNOWN):
        lines.append(f"  {'deadline':<15} none: it waits as long as it takes")
    for seen in stage.seen:
        lines += _wrapped("seen", seen)
    if stage.held or stage.held_unlisted:
        lines.append("  held requests:")
        for h in stage.held:
            until = f"until {stamp(h.until_ms)} ({relative(h.until_ms, now)})" \
                if h.until_ms is not None else "until the primary provisions"
            why = "waits to join" if h.waits_for == "JOIN" else "waits for the primary"
            lines.append(f"    {h.device_id or '(device unknown)':<19} {why}, {until}  "
                         f"message {h.message_id or '-'}")
        if stage.held_unlisted:
            lines.append(f"    {_plural(stage.held_unlisted, 'request', 'requests')} held, not "
                         "listed by the worker's view")
    if stage.dead_letters:
        lines.append("  dead letters:")
        for d in stage.dead_letters:
            lines.append(f"    {d.dead_letter_id}  {stamp(d.received_ms)}  {d.error_code}  "
                         f"{d.source}  {d.error_message[:60].rstrip()}")
            lines += textwrap.wrap(d.advice, 100, initial_indent="      ",
                                   subsequent_indent="      ")
            lines += [f"      $ {c}" for c in d.commands]
    for number, action in enumerate(stage.next, 1):
        lines += _wrapped("next" if number == 1 else "", f"{number}. {action}",
                          hang=len(f"{number}. "))
    return lines
