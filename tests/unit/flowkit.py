"""An in-memory stand-in for the workers, for the flow tests: no broker, no Redis.

``Flow`` holds every table as a dict and routes a decision's records to the step that consumes
them, the way the agents do: intake -> match_system -> (match_device) -> vehicle_command ->
(region) rehome.handle -> rehome_result, and registrations -> index_system. Like the shell, it
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
from vprov.flows import operator_commands, provision, query, registration, rehome
from vprov.flows.context import Context, Source
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue
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

    def __init__(self, config: Config = CONFIG, now_ms: int = T0_MS) -> None:
        self.config = config
        self.now_ms = now_ms
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
        self._rehome_region = {self.topics.rehome(r): r for r in config.regions}

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
        if record is not None:
            record = SERDE.decode("DeviceRegistration",
                                  SERDE.encode("DeviceRegistration", record))
        return self._run(lambda: self._step(
            self.registrations, device_id,
            lambda entry: registration.ingest(device_id, record, entry, self.context())))

    def query(self, raw: bytes, *, key: bytes | None = _UNSET,
              authenticated: str | None = None) -> list[Output]:
        """A PROVISION_QUERY on the query topic; the key defaults to the message's VIN."""
        source = self.source(self.topics.query, _key_of(raw) if key is _UNSET else key,
                             authenticated)
        vin = (source.key or b"").decode()
        return self._run(lambda: self._step(
            self.vehicles, vin, lambda entry: query.intake(raw, source, entry, self.context())))

    def provision(self, raw: bytes, region: str, *, key: bytes | None = _UNSET,
                  authenticated: str | None = None) -> list[Output]:
        """A DEVICE_PROVISION on ``region``'s device topic; the key defaults to the VIN."""
        source = self.source(self.topics.device(region),
                             _key_of(raw) if key is _UNSET else key, authenticated)
        vin = (source.key or b"").decode()
        table = self.regional[region]
        return self._run(lambda: self._step(
            table, vin, lambda entry: provision.handle(raw, source, entry, region,
                                                       self.context())))

    def command(self, vin: str, command: dict[str, Any]) -> list[Output]:
        """A record on the vehicle-commands topic, e.g. the deadline timer's."""
        return self._run(lambda: self._consume(
            Output("internal", self.topics.vehicle_commands, vin, command)))

    def admin(self, vin: str, operation: str, command_id: str = "cmd-1", **fields: Any
              ) -> list[Output]:
        """An operator's AdminCommand on the admin topic (as ``vprov vehicle`` sends it)."""
        command = SERDE.decode("AdminCommand", SERDE.encode("AdminCommand", {
            "command_id": command_id, "vin": vin, "operation": operation,
            "requested_at": self.now_ms, **fields}))
        return self._run(lambda: self._step(
            self.vehicles, vin,
            lambda entry: operator_commands.handle(command, entry, self.context())))

    def expire_holds(self, region: str, vin: str) -> list[Output]:
        """The regional hold deadline for ``vin`` (the timer's command)."""
        table = self.regional[region]
        return self._run(lambda: self._step(
            table, vin, lambda entry: provision.expire_holds(entry, region, self.context())))

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
        ctx = self.context()
        cat = self.topics
        if output.kind == "internal":
            value = json_copy(output.value)
            key = output.key
            # decoded as the workers decode them, with the same codec
            if output.topic == cat.system_registrations:
                ref = self.source(output.topic, key.encode(), None).ref
                index = commands.decode_index(value)
                return self._step(self.systems, key,
                                  lambda entry: registration.index_system(index, entry, ctx, ref))
            if output.topic in (cat.query_by_system, cat.query_by_device):
                hop = commands.decode_query_hop(value)
                if output.topic == cat.query_by_system:
                    return self._step(self.systems, key,
                                      lambda entry: query.match_system(hop, entry, ctx),
                                      writes=False)
                return self._step(self.registrations, key,
                                  lambda entry: query.match_device(hop, entry, ctx),
                                  writes=False)
            if output.topic == cat.vehicle_commands:
                command = commands.decode_vehicle(value)
                return self._step(self.vehicles, key,
                                  lambda entry: query.vehicle_command(command, entry, ctx))
            raise AssertionError(f"no consumer for internal topic {output.topic}")
        if output.kind == "event" and output.topic in self._rehome_region:
            region = self._rehome_region[output.topic]
            request = SERDE.decode("RehomeRequest", SERDE.encode("RehomeRequest", output.value))
            table = self.regional[region]
            return self._step(table, output.key,
                              lambda entry: rehome.handle(request, entry, region, ctx))
        if output.kind == "event" and output.topic == cat.rehome_result:
            result = SERDE.decode("RehomeResult", SERDE.encode("RehomeResult", output.value))
            return self._step(self.vehicles, output.key,
                              lambda entry: query.rehome_result(result, entry, ctx))
        return []

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
