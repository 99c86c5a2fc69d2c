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
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from tables.models import Registration
from vprov.envelope import ProvisionQuery, ReplyTo
from vprov.outputs import Output, internal


class CommandError(ValueError):
    """An internal record that is not a command of its topic."""


# --- the system index (registration.index_system) ---------------------------------------------


@dataclass(frozen=True)
class Upsert:
    TAG: ClassVar[str] = "upsert"
    registration: Registration

    def to_json(self) -> dict[str, Any]:
        return {"op": self.TAG, "registration": dict(self.registration)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Upsert:
        return cls(registration=data["registration"])


@dataclass(frozen=True)
class Remove:
    TAG: ClassVar[str] = "remove"
    device_id: str

    def to_json(self) -> dict[str, Any]:
        return {"op": self.TAG, "device_id": self.device_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Remove:
        return cls(device_id=data["device_id"])


@dataclass(frozen=True)
class Bind:
    """A query bound ``vin`` to the system with ``devices``."""

    TAG: ClassVar[str] = "bind"
    vin: str
    devices: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.TAG, "vin": self.vin, "devices": list(self.devices)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bind:
        return cls(vin=data["vin"], devices=tuple(data.get("devices", ())))


IndexCommand = Upsert | Remove | Bind


# --- the provisioning query's hops (query.match_system, query.match_device) --------------------


def _query_fields(query: ProvisionQuery, reply_to: ReplyTo, hops: int) -> dict[str, Any]:
    return {"query": asdict(query), "reply_to": asdict(reply_to), "hops": hops}


def _query(data: dict[str, Any]) -> tuple[ProvisionQuery, ReplyTo, int]:
    return ProvisionQuery(**data["query"]), ReplyTo(**data["reply_to"]), int(data.get("hops", 0))


@dataclass(frozen=True)
class QueryHop:
    """A query on its way to the system's (or the device's) partition; ``hops`` counts the
    returns from the device's partition to the system's."""

    query: ProvisionQuery
    reply_to: ReplyTo
    hops: int = 0

    def to_json(self) -> dict[str, Any]:
        return _query_fields(self.query, self.reply_to, self.hops)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueryHop:
        return cls(*_query(data))


# --- the vehicle's partition (query.vehicle_command) -------------------------------------------


@dataclass(frozen=True)
class Matched:
    """The sender is the system's primary: bind the VIN with the system's ``devices``."""

    TAG: ClassVar[str] = "matched"
    query: ProvisionQuery
    reply_to: ReplyTo
    hops: int
    devices: tuple[Registration, ...]

    def to_json(self) -> dict[str, Any]:
        return {**_query_fields(self.query, self.reply_to, self.hops), "kind": self.TAG,
                "devices": [dict(d) for d in self.devices]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Matched:
        return cls(*_query(data), devices=tuple(data["devices"]))


@dataclass(frozen=True)
class MatchFailed:
    """The match refused the query: answer it with ``code``."""

    TAG: ClassVar[str] = "match_failed"
    query: ProvisionQuery
    reply_to: ReplyTo
    hops: int
    code: int
    detail: str | None

    def to_json(self) -> dict[str, Any]:
        return {**_query_fields(self.query, self.reply_to, self.hops), "kind": self.TAG,
                "code": self.code, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatchFailed:
        return cls(*_query(data), code=int(data["code"]), detail=data.get("detail"))


@dataclass(frozen=True)
class RehomeDeadline:
    """The timer: the rehome request ``request_id`` may have run out of time."""

    TAG: ClassVar[str] = "deadline"
    request_id: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.TAG, "request_id": self.request_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RehomeDeadline:
        return cls(request_id=data["request_id"])


@dataclass(frozen=True)
class Join:
    """A device indexed for the vehicle's system after the bind; ``command_id`` names the index
    record that caused it."""

    TAG: ClassVar[str] = "join"
    command_id: str
    device_id: str
    registration: Registration

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.TAG, "command_id": self.command_id, "device_id": self.device_id,
                "registration": dict(self.registration)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Join:
        return cls(command_id=data["command_id"], device_id=data["device_id"],
                   registration=data["registration"])


@dataclass(frozen=True)
class Leave:
    """A device removed from the vehicle's system after the bind."""

    TAG: ClassVar[str] = "leave"
    command_id: str
    device_id: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.TAG, "command_id": self.command_id, "device_id": self.device_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Leave:
        return cls(command_id=data["command_id"], device_id=data["device_id"])


VehicleCommand = Matched | MatchFailed | RehomeDeadline | Join | Leave


# --- a region's vehicle partition (provision.expire_holds) -------------------------------------


@dataclass(frozen=True)
class HoldDeadline:
    """The timer: requests held in the vehicle may have run out of time."""

    TAG: ClassVar[str] = "hold-deadline"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.TAG}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HoldDeadline:
        return cls()


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


def _tagged(raw: bytes | dict[str, Any] | None, tag: Literal["op", "kind"],
            union: tuple[Any, ...], topic: str) -> Any:
    data = _load(raw)
    by_tag = {member.TAG: member for member in union}
    member = by_tag.get(data.get(tag))
    if member is None:
        raise CommandError(f"unknown {topic} command {tag}={data.get(tag)!r}; "
                           f"expected one of {', '.join(sorted(by_tag))}")
    return _build(member.from_json, data, topic)


def _build(build: Callable[[dict[str, Any]], Any], data: dict[str, Any], topic: str) -> Any:
    try:
        return build(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandError(f"malformed {topic} command: {type(exc).__name__}: {exc}") from exc


def decode_index(raw: bytes | dict[str, Any] | None) -> IndexCommand:
    result: IndexCommand = _tagged(raw, "op", (Upsert, Remove, Bind), "system index")
    return result


def decode_query_hop(raw: bytes | dict[str, Any] | None) -> QueryHop:
    result: QueryHop = _build(QueryHop.from_json, _load(raw), "query")
    return result


def decode_vehicle(raw: bytes | dict[str, Any] | None) -> VehicleCommand:
    result: VehicleCommand = _tagged(
        raw, "kind", (Matched, MatchFailed, RehomeDeadline, Join, Leave), "vehicle")
    return result


def decode_regional(raw: bytes | dict[str, Any] | None) -> RegionalCommand:
    result: RegionalCommand = _tagged(raw, "kind", (HoldDeadline,), "regional")
    return result
