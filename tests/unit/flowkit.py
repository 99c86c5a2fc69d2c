"""An in-memory stand-in for the workers, for the flow tests: no broker, no Redis.

``Flow`` holds every table as a dict and routes a decision's records to the step that consumes
them through the workers' own topology (``vprov.flows.topology``): intake -> match_system ->
(match_device) -> vehicle_command -> (region) rehome.handle -> rehome_result, and registrations
-> index_system. ``partitions_held`` says whether a hop to another key's partition may be taken
in place, as a worker that holds that partition does (False: another worker holds it, and the
hop goes through its topic; hops to the entry being decided are always taken). Like the shell, it
writes the table entry as JSON, carries out the identity effects, and sends every Avro record
through the project's serde (single-object encoding), so a record the schemas cannot carry fails
here too. A topic can be paused to hold its records back (``paused``/``parked``) and release them
later, to replay races, late answers and re-deliveries.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from tables.models import Registration
from vprov import config as vconfig
from vprov.config import Config
from vprov.core import commands, envelope
from vprov.core.outputs import DELETE, KEEP, Decision, Effect, Output
from vprov.flows import registration, topology
from vprov.flows.context import Context, Source
from vprov.flows.topology import Input
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue, regional_table
from vprov.ops.registration_file import to_record
from vprov.sim import fleet
from vprov.sim.fleet import SimDevice, SimVehicle

CONFIG = vconfig.load(env={})
T0_MS = 1_700_000_000_000  # the flows' clock at the start of every test
SERDE = AvroSerde()
_UNSET: Any = object()


def vehicle(index: int = 1, region: str = "NA", ecu_types: tuple[str, ...] = ("TCU", "IVI"),
            *, tag: str = "TESTA", country: str | None = None) -> SimVehicle:
    """A simulated vehicle; the first ECU type is its primary."""
    return fleet.make_vehicle(tag, index, region, ecu_types, country=country)


def as_device(sim: SimVehicle, index: int, **changes: Any) -> SimVehicle:
    """``sim`` whose device ``index`` becomes the one ``fleet.query`` sends from (the primary),
    optionally changed (ecu_type, device_id...)."""
    devices = tuple(
        replace(d, primary=(k == index), **(changes if k == index else {}))
        for k, d in enumerate(sim.devices)
    )
    return replace(sim, devices=devices)


def stranger(sim: SimVehicle, device_id: str = "dstranger0001", ecu_type: str = "IVI"
             ) -> SimDevice:
    """A device that is not part of ``sim``."""
    return SimDevice(device_id=device_id, ecu_type=ecu_type, primary=False,
                     fingerprint="f" * 40, chipsets=sim.devices[0].chipsets)


def context(config: Config = CONFIG, now_ms: int = T0_MS) -> Context:
    return Context(config=config, topics=Catalogue(config), now_ms=now_ms)


def json_copy(value: Any) -> Any:
    """What a JSON table or an internal topic hands back: a fresh copy through JSON."""
    return json.loads(json.dumps(value))


# --- reading outputs ---------------------------------------------------------------------------


def replies(outputs: Iterable[Output]) -> list[dict[str, Any]]:
    return [envelope.parse_response(o.value.encode()) for o in outputs if o.kind == "reply"]


def reply_texts(outputs: Iterable[Output]) -> list[str]:
    return [o.value for o in outputs if o.kind == "reply"]


def only_reply(outputs: Iterable[Output]) -> dict[str, Any]:
    answers = replies(outputs)
    assert len(answers) == 1, f"expected one answer, got {len(answers)}: {answers}"
    return answers[0]


def error_code(answer: dict[str, Any]) -> int | None:
    return answer["property_bag"].get("error_code")


def events(outputs: Iterable[Output], record: str) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.kind == "event" and o.record == record]


def event_outputs(outputs: Iterable[Output], record: str) -> list[Output]:
    return [o for o in outputs if o.kind == "event" and o.record == record]


def lifecycle(outputs: Iterable[Output]) -> list[dict[str, Any]]:
    return events(outputs, "LifecycleEvent")


def rehome_requests(outputs: Iterable[Output], action: str | None = None
                    ) -> list[dict[str, Any]]:
    found = events(outputs, "RehomeRequest")
    return [r for r in found if action is None or r["action"] == action]


def registration_of(sim: SimVehicle, index: int = 0, home_region: str | None = None
                    ) -> Registration:
    record = fleet.registrations(sim)[index]
    return registration.to_registration({**record, "home_region": home_region})


# --- the driver --------------------------------------------------------------------------------


class Flow:
    """The global worker and every regional worker of one deployment, in memory."""

    def __init__(self, config: Config = CONFIG, now_ms: int = T0_MS, *,
                 partitions_held: bool = False) -> None:
        self.config = config
        self.now_ms = now_ms
        self.partitions_held = partitions_held
        self.topics = Catalogue(config)
        self.registrations: dict[str, Any] = {}
        self.systems: dict[str, Any] = {}
        self.vehicles: dict[str, Any] = {}
        self.regional: dict[str, dict[str, Any]] = {r: {} for r in config.regions}
        self.sent: list[Output] = []  # every record, in the order the steps produced them
        self.effects: list[Effect] = []
        self.identities: dict[tuple[str, str], dict[str, str]] = {}
        self.paused: set[str] = set()
        self.parked: list[Output] = []
        self._offsets: dict[str, int] = {}
        roles = [topology.role(self.topics, r) for r in (None, *config.regions)]
        self._readers = {step.topic: (role, step) for role in roles for step in role.steps}

    # clock and context
    @property
    def now_s(self) -> int:
        return self.now_ms // 1000

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)

    def context(self) -> Context:
        return Context(config=self.config, topics=self.topics, now_ms=self.now_ms)

    def source(self, topic: str, key: bytes | None, authenticated: str | None) -> Source:
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        return Source(topic, 0, offset, key, authenticated)

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({"registrations": self.registrations, "systems": self.systems,
                              "vehicles": self.vehicles, "regional": self.regional,
                              "identities": self.identities})

    def domain_snapshot(self) -> dict[str, Any]:
        """The snapshot without the answer memos: what the vehicle *is*, not what it said."""
        snap = self.snapshot()
        for table in ("vehicles", "regional"):
            for entry in snap[table].values():
                entry.pop("memo", None)
        return snap

    # inputs from outside
    def register(self, sim: SimVehicle, *, home_region: str | None = None,
                 devices: Iterable[int] | None = None) -> list[Output]:
        """Publish ``sim``'s registrations (all devices, or those at ``devices``); returns
        every record that followed."""
        records = fleet.registrations(sim)
        outputs: list[Output] = []
        for index in (range(len(records)) if devices is None else devices):
            record = to_record({**records[index], "home_region": home_region}, self.now_ms)
            outputs += self.ingest(record["device_id"], record)
        return outputs

    def ingest(self, device_id: str, record: dict[str, Any] | None) -> list[Output]:
        raw = b"" if record is None else SERDE.encode("DeviceRegistration", record)
        topic = self.topics.registrations
        return self._run(lambda: self._input(topic, device_id, raw,
                                             self.source(topic, device_id.encode(), None)))

    def query(self, raw: bytes, *, key: bytes | None = _UNSET,
              authenticated: str | None = None) -> list[Output]:
        """A PROVISION_QUERY on the query topic; the key defaults to the message's VIN."""
        source = self.source(self.topics.query, _key_of(raw) if key is _UNSET else key,
                             authenticated)
        vin = (source.key or b"").decode()
        return self._run(lambda: self._input(source.topic, vin, raw, source))

    def provision(self, raw: bytes, region: str, *, key: bytes | None = _UNSET,
                  authenticated: str | None = None) -> list[Output]:
        """A DEVICE_PROVISION on ``region``'s device topic; the key defaults to the VIN."""
        source = self.source(self.topics.device(region),
                             _key_of(raw) if key is _UNSET else key, authenticated)
        vin = (source.key or b"").decode()
        return self._run(lambda: self._input(source.topic, vin, raw, source))

    def command(self, vin: str, command: dict[str, Any]) -> list[Output]:
        """A record on the vehicle-commands topic, e.g. the deadline timer's."""
        return self._run(lambda: self._consume(
            Output("internal", self.topics.vehicle_commands, vin, command)))

    def admin(self, vin: str, operation: str, command_id: str = "cmd-1", **fields: Any
              ) -> list[Output]:
        """An operator's AdminCommand on the admin topic (as ``vprov vehicle`` sends it)."""
        raw = SERDE.encode("AdminCommand", {
            "command_id": command_id, "vin": vin, "operation": operation,
            "requested_at": self.now_ms, **fields})
        topic = self.topics.admin
        return self._run(lambda: self._input(topic, vin, raw,
                                             self.source(topic, vin.encode(), None)))

    def expire_holds(self, region: str, vin: str) -> list[Output]:
        """The regional hold deadline for ``vin`` (the timer's command)."""
        topic = self.topics.regional_commands(region)
        return self._run(lambda: self._consume(
            commands.output(topic, vin, commands.HoldDeadline())))

    def result(self, value: dict[str, Any]) -> list[Output]:
        """A RehomeResult arriving at the global side."""
        return self._run(lambda: self._consume(
            Output("event", self.topics.rehome_result, value["vin"], value, "RehomeResult")))

    def release(self, topic: str | None = None) -> list[Output]:
        """Resume ``topic`` (or every topic) and deliver what was held back, in order."""
        if topic is None:
            self.paused.clear()
        else:
            self.paused.discard(topic)
        held = [o for o in self.parked if topic is None or o.topic == topic]
        self.parked = [o for o in self.parked if not (topic is None or o.topic == topic)]
        start = len(self.sent)
        for output in held:
            self._pump(self._consume(output))
        return self.sent[start:]

    def deliver(self, output: Output) -> list[Output]:
        """Deliver one record (again) to its consumer, whatever is paused."""
        return self._run(lambda: self._consume(output))

    # routing
    def _run(self, step: Callable[[], list[Output]]) -> list[Output]:
        start = len(self.sent)
        self._pump(step())
        return self.sent[start:]

    def _pump(self, outputs: list[Output]) -> None:
        queue = deque(outputs)
        while queue:
            output = queue.popleft()
            self.sent.append(output)
            if output.topic in self.paused:
                self.parked.append(output)
                continue
            queue.extend(self._consume(output))

    def _step(self, table: dict[str, Any], key: str, decide: Callable[[Any], Decision], *,
              writes: bool = True) -> list[Output]:
        """Decide on ``table[key]`` and carry the decision out, as the shell does. A decision
        must not modify the entry it is given: the shell writes only the state it returns."""
        entry = table.get(key)
        given = copy.deepcopy(entry)
        decision = decide(entry)
        assert entry == given, f"the decision modified its input entry {key!r}"
        if not writes:
            assert decision.state is KEEP
        if decision.state is DELETE:
            table.pop(key, None)
        elif decision.state is not KEEP:
            table[key] = json_copy(decision.state)
        for effect in decision.effects:
            self.effects.append(effect)
            if effect.op == "create_identity":
                self.identities[(effect.scope, effect.device_id)] = dict(effect.attributes)
            else:
                self.identities.pop((effect.scope, effect.device_id), None)
        for output in decision.outputs:  # what the shell sends must be encodable
            if output.kind == "event":
                SERDE.encode(output.record or "", output.value)
            elif output.kind == "internal":
                json.dumps(output.value)
        return decision.outputs

    def _consume(self, output: Output) -> list[Output]:
        """Run the step that reads ``output``'s topic; [] for records leaving the processor."""
        if output.topic not in self._readers:
            assert output.kind != "internal", f"no consumer for internal topic {output.topic}"
            return []
        # encoded and decoded as the workers do, with the same codecs
        value = (json_copy(output.value) if output.kind == "internal"
                 else SERDE.encode(output.record or "", output.value) if output.kind == "event"
                 else str(output.value).encode())
        source = self.source(output.topic, output.key.encode(), None)
        return self._input(output.topic, output.key, value, source)

    def _input(self, topic: str, key: str, value: Any, source: Source) -> list[Output]:
        """One record of ``topic``, decided by the topology's step for it."""
        role, step = self._readers[topic]
        decoded = topology.decode(self.topics.record_type(topic), value, SERDE, topic)
        return self._step(self._table(step.table), key, lambda entry: topology.decide(
            role, step, Input(key, decoded, entry, source, self.context(), role.region), self),
            writes=step.writes)

    def _table(self, name: str) -> dict[str, Any]:
        tables = {"registrations": self.registrations, "systems": self.systems,
                  "vehicles": self.vehicles}
        tables.update({regional_table(r): self.regional[r] for r in self.config.regions})
        return tables[name]

    def held(self, table: str, topic: str, key: str) -> tuple[bool, Any]:
        """``topology.Entries``: one partition of each table here, held or not as configured."""
        if not self.partitions_held:
            return False, None
        return True, self._table(table).get(key)

    # common set-ups
    def homed(self, sim: SimVehicle, *, message_id: str | None = None,
              home_region: str | None = None) -> list[Output]:
        """Register ``sim`` and run its query to the end; the vehicle is REGIONAL after it."""
        self.register(sim, home_region=home_region)
        outputs = self.query(fleet.query(sim, message_id or f"q-{sim.vin}", self.now_s),
                             authenticated=sim.primary.device_id)
        vin_state = self.vehicles[sim.vin]["state"]
        assert vin_state == "REGIONAL", f"set-up failed: {vin_state}, {replies(outputs)}"
        return outputs


def _key_of(raw: bytes) -> bytes | None:
    try:
        vin = json.loads(raw).get("vin")
    except (ValueError, AttributeError):
        return None
    return vin.encode() if isinstance(vin, str) else None


def rehome_request(sim: SimVehicle, *, action: str = "REGISTER", region: str = "NA",
                   request_id: str = "req-1", sequence: int = 1,
                   now_ms: int = T0_MS) -> dict[str, Any]:
    """A RehomeRequest as the global side sends it for ``sim``."""
    return {
        "request_id": request_id,
        "action": action,
        "vin": sim.vin,
        "system_id": sim.system_id,
        "sub_system_id": sim.sub_system_id,
        "region": region,
        "country_code": sim.country,
        "primary_device_id": sim.primary.device_id,
        "devices": [
            {"device_id": d.device_id, "ecu_type": d.ecu_type, "primary": d.primary,
             "certificate_fingerprint": d.fingerprint}
            for d in sim.devices
        ] if action == "REGISTER" else [],
        "cause_message_id": "q-1",
        "sequence": sequence,
        "requested_at": now_ms,
        "deadline_at": now_ms + 30_000,
    }
