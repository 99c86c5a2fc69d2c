"""The topology: each input topic of a role, the table its records are decided against, and the
decision step. The workers (``streams/agents.py``) and the unit tests' in-memory deployment
(``tests/unit/flowkit.py``) both loop over these tables, so the tests drive the topology the
workers run.

A step reads its input topic's records, typed by the catalogue (``Catalogue.record_type``),
against the entry of the record's key in its table, and returns a ``Decision``. Every input
topic is keyed by its table's key, so a step reads and writes only its own partition.

**Hops in place** (``in_place``). A query travels in hops between the three keys it meets
(docs/architecture.md). A step may take some of the hops its decision sends without going
through Kafka, when the answer cannot differ from the hop's:

- a hop that only reads (``writes=False``), when this worker holds the hop key's partition
  (always, with one worker per role); the entry is read in that partition;
- a hop keyed by the entry being decided, to a step of the same table: the entry moves through
  both decisions in turn, as it would through the hop, and the result is one decision (one
  write, every record).

Hops are taken in the order ``in_place`` names them, each over the records the ones before
produced. Any other hop goes through its topic.

To add a step: a topic in the catalogue (with its record type), a decision function in a flow
module, and a line in ``global_steps`` or ``regional_steps`` (docs/architecture.md, "Where to
change what").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from tables.models import RegionalVehicle
from vprov.core import commands
from vprov.core.outputs import Decision, Output
from vprov.flows import operator_commands, provision, query, registration, rehome
from vprov.flows.context import Context, Source
from vprov.kafka.catalogue import Catalogue, RecordType, regional_table


class Serde(Protocol):
    def decode(self, record_name: str, payload: bytes, topic: str | None = None
               ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Input:
    """One record as a step sees it: its key, its value decoded by the topic's record type (the
    raw bytes for device JSON), its table entry, where it came from, and the context."""

    key: str
    value: Any
    entry: Any
    source: Source
    ctx: Context
    region: str | None


@dataclass(frozen=True)
class Step:
    """One input topic of a role and how its records are decided."""

    name: str  # the agent's name, unique in its role
    topic: str
    table: str  # the table the step reads, keyed by the topic's key
    decide: Callable[[Input], Decision]
    writes: bool = True  # False: the step only reads its table
    by_vin: bool = False  # a device request: routed by the VIN it names (docs/spec.md 3.7)
    in_place: tuple[str, ...] = ()  # names of the steps whose hops it may take in place


@dataclass(frozen=True)
class Deadlines:
    """The deadlines a role's timer watches: ``of`` an entry (kept in an in-memory index, for
    /metrics too), and the ``command`` the timer sends to ``topic``, keyed by the entry's key,
    when one has passed; the key's own partition then decides."""

    table: str
    of: Callable[[Any], dict[str, Any] | None]
    topic: str
    command: Callable[[dict[str, Any]], commands.Command]
    timer: str  # the timer's name


@dataclass(frozen=True)
class View:
    """``GET path`` on a worker's web port: the entry of ``{key}`` in ``table``."""

    table: str
    path: str
    key: str
    what: str


@dataclass(frozen=True)
class Role:
    """The steps of the global worker (``region`` None) or of one region's worker, with the
    deadlines it keeps and the views it serves."""

    region: str | None
    steps: tuple[Step, ...]
    deadlines: Deadlines
    views: tuple[View, ...]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def reading(self, topic: str) -> Step | None:
        return next((s for s in self.steps if s.topic == topic), None)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.table for s in self.steps))


def rehome_deadline(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The pending rehome's deadline, and how many queries wait for it (for /metrics); or the
    deadline of a move under way (vprov.flows.operator_commands)."""
    pending = entry.get("pending")
    if pending:
        return {"request_id": pending["request_id"], "deadline_ms": pending["deadline_ms"],
                "waiters": len(pending["waiters"])}
    command = entry.get("admin")
    if command and "deadline_ms" in command:
        return {"request_id": command["request_id"], "deadline_ms": command["deadline_ms"],
                "waiters": 0}
    return None


def hold_deadline(entry: dict[str, Any]) -> dict[str, Any] | None:
    """For a vehicle that holds requests: how many (for /metrics), and the earliest wait of
    those held for devices not joined yet (``deadline_ms``, absent when none waits to join)."""
    held = entry.get("held")
    if not held:
        return None
    index: dict[str, Any] = {"held": len(held)}
    deadline = provision.earliest_hold_deadline(cast(RegionalVehicle, entry))
    if deadline is not None:
        index["deadline_ms"] = deadline
    return index


def global_steps(cat: Catalogue) -> Role:
    return Role(None, _global_steps(cat), Deadlines(
        "vehicles", rehome_deadline, cat.vehicle_commands,
        lambda deadline: commands.RehomeDeadline(deadline["request_id"]), "expire_rehomes"), (
        View("vehicles", "/vehicles/{vin}/", "vin", "vehicle"),
        View("systems", "/systems/{system_id}/", "system_id", "registered system"),
        View("registrations", "/registrations/{device_id}/", "device_id", "registered device"),
    ))


def _global_steps(cat: Catalogue) -> tuple[Step, ...]:
    return (
        Step("ingest_registration", cat.registrations, "registrations",
             lambda i: registration.ingest(i.key, i.value, i.entry, i.ctx)),
        Step("index_system", cat.system_registrations, "systems",
             lambda i: registration.index_system(i.value, i.entry, i.ctx, i.source.ref)),
        Step("query_intake", cat.query, "vehicles",
             lambda i: query.intake(i.value, i.source, i.entry, i.ctx),
             by_vin=True, in_place=("query_match_system", "vehicle_command")),
        Step("query_match_system", cat.query_by_system, "systems",
             lambda i: query.match_system(i.value, i.entry, i.ctx), writes=False),
        Step("query_match_device", cat.query_by_device, "registrations",
             lambda i: query.match_device(i.value, i.entry, i.ctx), writes=False),
        Step("vehicle_command", cat.vehicle_commands, "vehicles",
             lambda i: query.vehicle_command(i.value, i.entry, i.ctx)),
        Step("rehome_result", cat.rehome_result, "vehicles",
             lambda i: query.rehome_result(i.value, i.entry, i.ctx)),
        Step("admin_command", cat.admin, "vehicles",
             lambda i: operator_commands.handle(i.value, i.entry, i.ctx)),
    )


def regional_steps(cat: Catalogue, region: str) -> Role:
    table = regional_table(region)
    return Role(region, _regional_steps(cat, region, table), Deadlines(
        table, hold_deadline, cat.regional_commands(region),
        lambda deadline: commands.HoldDeadline(), f"expire_holds_{region}"), (
        View(table, "/vehicles/{vin}/", "vin", f"vehicle in region {region}"),
    ))


def _regional_steps(cat: Catalogue, region: str, table: str) -> tuple[Step, ...]:
    return (
        Step("register_vehicle", cat.rehome(region), table,
             lambda i: rehome.handle(i.value, i.entry, region, i.ctx)),
        Step("provision_device", cat.device(region), table,
             lambda i: provision.handle(i.value, i.source, i.entry, region, i.ctx),
             by_vin=True),
        # one kind of command: the hold deadline
        Step("vehicle_command", cat.regional_commands(region), table,
             lambda i: provision.expire_holds(i.entry, region, i.ctx)),
    )


def role(cat: Catalogue, region: str | None) -> Role:
    return global_steps(cat) if region is None else regional_steps(cat, region)


_COMMANDS: dict[str, Callable[[Any], Any]] = {
    "index": commands.decode_index,
    "query-hop": commands.decode_query_hop,
    "vehicle": commands.decode_vehicle,
    "regional": commands.decode_regional,
}


def decode(kind: RecordType, value: bytes | dict[str, Any] | None, serde: Serde,
           topic: str) -> Any:
    """A record's value as its step takes it. Raises on a value its type refuses: the shell
    dead-letters the record."""
    if kind.codec == "device-json":
        return value or b""
    if kind.codec == "command":
        return _COMMANDS[kind.name](value)
    if kind.tombstone and not value:
        return None
    assert not isinstance(value, dict)
    return serde.decode(kind.name, value or b"", topic=topic)


class Entries(Protocol):
    """A worker's tables as the in-place hops read them."""

    def held(self, table: str, topic: str, key: str) -> tuple[bool, Any]:
        """Whether this worker holds the partition of ``topic`` that owns ``key``, and if so
        the entry of ``key`` in that partition of ``table``."""


def decide(role: Role, step: Step, given: Input, entries: Entries) -> Decision:
    """``step``'s decision on ``given``, with the hops it may take in place taken."""
    decision = step.decide(given)
    for name in step.in_place:
        decision = _in_place(role.step(name), step, decision, given, entries)
    return decision


def _in_place(hop: Step, step: Step, decision: Decision, given: Input,
              entries: Entries) -> Decision:
    outputs: list[Output] = []
    effects = list(decision.effects)
    state = decision.state
    chained = hop.writes  # a writing hop goes through the entry being decided
    current = decision.state if decision.changes_state else given.entry
    for output in decision.outputs:
        if output.topic != hop.topic or output.kind != "internal":
            outputs.append(output)
            continue
        if chained:
            if hop.table != step.table or output.key != given.key:
                outputs.append(output)
                continue
            entry = current
        else:
            held, entry = entries.held(hop.table, hop.topic, output.key)
            if not held:
                outputs.append(output)
                continue
        kind = given.ctx.topics.record_type(hop.topic)
        assert kind.codec == "command", "only internal command topics are taken in place"
        value = _COMMANDS[kind.name](output.value)
        taken = hop.decide(Input(output.key, value, entry, given.source, given.ctx,
                                 given.region))
        if chained and taken.changes_state:
            state = current = taken.state
        outputs += taken.outputs
        effects += taken.effects
    return Decision(state=state, outputs=outputs, effects=effects)

