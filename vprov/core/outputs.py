"""What a decision asks the shell to do: records to send and idempotent effects to run.

Outputs are plain, JSON-serialisable values so a decision can be stored with the state that
produced it and sent again, identical, when its cause is processed a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vprov.core.plain import copied

Kind = Literal["reply", "event", "internal"]
# the scope of the global IoT core; every other scope is a region code
GLOBAL_SCOPE = "global"


@dataclass(frozen=True)
class Output:
    """One record: ``reply`` is device JSON text, ``event`` an Avro record, ``internal`` JSON."""

    kind: Kind
    topic: str
    key: str
    value: Any
    record: str | None = None  # Avro record name, for kind == "event"
    # a reply's addressee: the authenticated device its request came from, sent as the record's
    # authenticated-device header (None: no header)
    to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies through a generic walk, a tenth of a
        # decision's time; the value is a decision's own (plain), so copying it is enough
        return {"kind": self.kind, "topic": self.topic, "key": self.key,
                "value": copied(self.value), "record": self.record, "to": self.to}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Output:
        return cls(**data)


def reply(topic: str, key: str, payload: bytes, to: str | None = None) -> Output:
    return Output("reply", topic, key, payload.decode("utf-8"), to=to)


def event(topic: str, key: str, record: str, value: dict[str, Any]) -> Output:
    return Output("event", topic, key, value, record=record)


def internal(topic: str, key: str, value: dict[str, Any]) -> Output:
    return Output("internal", topic, key, value)


@dataclass(frozen=True)
class Effect:
    """An identity-registry operation; running it twice is the same as running it once."""

    op: Literal["create_identity", "delete_identity"]
    scope: str  # "global" or a region code
    device_id: str
    attributes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "scope": self.scope, "device_id": self.device_id,
                "attributes": dict(self.attributes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Effect:
        return cls(**data)


KEEP = object()  # decision leaves the table entry as it is
DELETE = object()  # decision removes the table entry


@dataclass
class Decision:
    """The result of one decision function: the entry to store, records, effects."""

    state: Any = KEEP
    outputs: list[Output] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    @property
    def changes_state(self) -> bool:
        return self.state is not KEEP
