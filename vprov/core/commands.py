"""The processor's internal commands: typed values on the wire as JSON.

Each internal topic carries one union of commands, told apart by a tag field (``kind``, or ``op``
on the system index topic). A flow builds a command and sends it with ``output``; the shell
decodes what it reads with the topic's ``decode_*`` before any flow sees it. A record whose tag is
unknown, or that does not fit its command, raises ``CommandError``: the shell sends it to the
dead-letter topic (9000), never drops it.

The JSON is the one the topics have always carried (the field names are the tags' and the
fields' names), so records already on the topics and in the changelogs still decode.

- system index (``op``, key system_id): ``Upsert``, ``Remove``, ``Bind``
- query by system / by device (no tag, key system_id / device_id): ``QueryHop``
- vehicle commands (``kind``, key VIN): ``Matched``, ``MatchFailed``, ``RehomeDeadline``,
  ``Join``, ``Leave``
- regional commands (``kind``, key VIN): ``HoldDeadline``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar, Self

from tables.models import Registration
from vprov.core.envelope import ProvisionQuery, ReplyTo, reply_to_json
from vprov.core.outputs import Output, internal


class CommandError(ValueError):
    """An internal record that is not a command of its topic."""


# How a field's JSON value becomes the field, by field name (others are taken as they are).
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "query": lambda value: ProvisionQuery(**value),
    "reply_to": lambda value: ReplyTo(**value),
    "devices": tuple,
}


def _json(value: Any) -> Any:
    if isinstance(value, ReplyTo):
        return reply_to_json(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass(frozen=True)
class _Command:
    """A command's JSON: its fields by name, plus ``TAG_FIELD: TAG`` when it has a tag."""

    TAG: ClassVar[str | None] = None
    TAG_FIELD: ClassVar[str] = "kind"

    def to_json(self) -> dict[str, Any]:
        data = {f.name: _json(getattr(self, f.name)) for f in fields(self)}
        if self.TAG is not None:
            data[self.TAG_FIELD] = self.TAG
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        values = {f.name: _FIELDS.get(f.name, _same)(data[f.name])
                  for f in fields(cls) if f.name in data or f.default is MISSING}
        return cls(**values)


def _same(value: Any) -> Any:
    return value


# --- the system index (registration.index_system) ---------------------------------------------


@dataclass(frozen=True)
class Upsert(_Command):
    TAG = "upsert"
    TAG_FIELD = "op"
    registration: Registration


@dataclass(frozen=True)
class Remove(_Command):
    TAG = "remove"
    TAG_FIELD = "op"
    device_id: str


@dataclass(frozen=True)
class Bind(_Command):
    """A query bound ``vin`` to the system with ``devices``."""

    TAG = "bind"
    TAG_FIELD = "op"
    vin: str
    devices: tuple[str, ...] = ()


IndexCommand = Upsert | Remove | Bind


# --- the provisioning query's hops (query.match_system, query.match_device) --------------------


@dataclass(frozen=True)
class QueryHop(_Command):
    """A query on its way to the system's (or the device's) partition; ``hops`` counts the
    returns from the device's partition to the system's."""

    query: ProvisionQuery
    reply_to: ReplyTo
    hops: int = 0


# --- the vehicle's partition (query.vehicle_command) -------------------------------------------


@dataclass(frozen=True)
class Matched(_Command):
    """The sender is the system's primary: bind the VIN with the system's ``devices``."""

    TAG = "matched"
    query: ProvisionQuery
    reply_to: ReplyTo
    hops: int
    devices: tuple[Registration, ...]


@dataclass(frozen=True)
class MatchFailed(_Command):
    """The match refused the query: answer it with ``code``."""

    TAG = "match_failed"
    query: ProvisionQuery
    reply_to: ReplyTo
    hops: int
    code: int
    detail: str | None = None


@dataclass(frozen=True)
class RehomeDeadline(_Command):
    """The timer: the rehome request ``request_id`` may have run out of time."""

    TAG = "deadline"
    request_id: str


@dataclass(frozen=True)
class Join(_Command):
    """A device indexed for the vehicle's system after the bind; ``command_id`` names the index
    record that caused it."""

    TAG = "join"
    command_id: str
    device_id: str
    registration: Registration


@dataclass(frozen=True)
class Leave(_Command):
    """A device removed from the vehicle's system after the bind."""

    TAG = "leave"
    command_id: str
    device_id: str


VehicleCommand = Matched | MatchFailed | RehomeDeadline | Join | Leave


# --- a region's vehicle partition (provision.expire_holds) -------------------------------------


@dataclass(frozen=True)
class HoldDeadline(_Command):
    """The timer: requests held in the vehicle may have run out of time."""

    TAG = "hold-deadline"


RegionalCommand = HoldDeadline
Command = IndexCommand | QueryHop | VehicleCommand | RegionalCommand


# --- the edge: JSON bytes <-> commands ---------------------------------------------------------


def output(topic: str, key: str, command: Command) -> Output:
    """The record a decision sends to an internal topic."""
    return internal(topic, key, command.to_json())


def _load(raw: bytes | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw or b"")
    except ValueError as exc:
        raise CommandError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CommandError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _tagged(raw: bytes | dict[str, Any] | None, union: tuple[type[_Command], ...],
            topic: str) -> Any:
    data = _load(raw)
    tag = union[0].TAG_FIELD
    by_tag = {member.TAG: member for member in union}
    member = by_tag.get(data.get(tag))
    if member is None:
        raise CommandError(f"unknown {topic} command {tag}={data.get(tag)!r}; expected one of "
                           f"{', '.join(sorted(str(t) for t in by_tag))}")
    return _build(member, data, topic)


def _build(member: type[_Command], data: dict[str, Any], topic: str) -> Any:
    try:
        return member.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandError(f"malformed {topic} command: {type(exc).__name__}: {exc}") from exc


def decode_index(raw: bytes | dict[str, Any] | None) -> IndexCommand:
    return _tagged(raw, (Upsert, Remove, Bind), "system index")


def decode_query_hop(raw: bytes | dict[str, Any] | None) -> QueryHop:
    return _build(QueryHop, _load(raw), "query")


def decode_vehicle(raw: bytes | dict[str, Any] | None) -> VehicleCommand:
    return _tagged(raw, (Matched, MatchFailed, RehomeDeadline, Join, Leave), "vehicle")


def decode_regional(raw: bytes | dict[str, Any] | None) -> RegionalCommand:
    return _tagged(raw, (HoldDeadline,), "regional")
