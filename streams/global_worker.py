"""Agents of the global worker: registrations and the provisioning query (SPEC.md 2.1).

All topics and tables share the same partition count, so Faust assigns partition N of every
topic to the same worker; each table is read only under the key its input topic is keyed by
(docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import faust
from faust.types import TP

from streams.repairs import watchdog
from streams.repairs.offset_probe import OffsetProbe
from streams.shell import Shell, Step, key_text
from streams.stores import DeadlineIndexedStore, deadline_timer, entry_in_partition
from streams.web import add_table_view
from vprov.core import commands
from vprov.core.outputs import Decision
from vprov.flows import operator_commands, query, registration
from vprov.flows.context import Context
from vprov.kafka.partitioning import owner


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


def register(app: faust.App, shell: Shell) -> dict[str, Any]:
    cat = shell.catalogue
    registrations = shell.table("registrations")  # device_id -> Registration
    systems = shell.table("systems")  # system_id -> SystemEntry
    vehicles = shell.table("vehicles")  # VIN -> GlobalVehicle
    # pending rehomes' deadlines: VIN -> {request_id, deadline_ms}, in memory
    store = DeadlineIndexedStore(vehicles, rehome_deadline)
    if shell.metrics is not None:
        shell.metrics.deadline_index = store.deadlines

    routes = cat.ingress_routes()
    # the devices' requests go to their vehicle's partition whatever their record key
    requests = {cat.query}

    def agent(topic: str, step: Any) -> None:
        name = f"vprov.global.{step.__name__}"
        if topic in routes:
            shell.ingress_agent(topic, routes[topic], step, name=name,
                                by_vin=topic in requests)
        else:
            shell.agent(topic, step, name=name)

    def ingest_registration(event: faust.EventT) -> Step:
        device_id = key_text(event)
        value = event.message.value
        record = shell.serde.decode("DeviceRegistration", value, topic=event.message.topic) \
            if value else None
        decision = registration.ingest(device_id, record, registrations.get(device_id),
                                       shell.context(event))
        return decision, registrations, device_id

    def index_system(event: faust.EventT) -> Step:
        system_id = key_text(event)
        decision = registration.index_system(commands.decode_index(event.message.value),
                                             systems.get(system_id), shell.context(event),
                                             shell.source(event).ref)
        return decision, systems, system_id

    def held_partition(topic: str, key: str) -> int | None:
        """The partition of ``topic`` that owns ``key`` when this worker holds it, and with it
        the same partition of every table (all topics have the same partition count, and Faust
        assigns a worker the same partitions of each); else None."""
        if app.rebalancing:
            return None
        partition = owner(key.encode("utf-8"), shell.config.partitions)
        return partition if TP(topic, partition) in app.consumer.assignment() else None

    def match_system_here(decision: Decision, ctx: Context) -> Decision:
        """Step 2 of the query at once, without the hop through the query-by-system topic, when
        this worker holds the system's partition (always, with one worker per role); the hop
        stays for the systems another worker holds. Step 2 changes no table, so doing it here
        decides exactly what the worker holding the hop's partition would decide."""
        outputs = []
        for output in decision.outputs:
            partition = held_partition(cat.query_by_system, output.key) \
                if output.topic == cat.query_by_system else None
            if partition is None:
                outputs.append(output)
                continue
            # systems.get would read the query's partition, not the system's
            system = entry_in_partition(systems, output.key, partition)
            outputs += query.match_system(commands.decode_query_hop(output.value), system,
                                          ctx).outputs
        return replace(decision, outputs=outputs)

    def vehicle_step_here(decision: Decision, vin: str, entry: Any, ctx: Context) -> Decision:
        """Step 3 at once, without the hop through the vehicle-commands topic, for the
        commands to the vehicle being processed: keyed by its VIN, they belong to this very
        partition. The vehicle's entry moves through both decisions in turn, as it would
        through the hop, and the result is one decision: one write, every record."""
        outputs, effects = [], list(decision.effects)
        state = decision.state
        current = entry if not decision.changes_state else decision.state
        for output in decision.outputs:
            if output.topic != cat.vehicle_commands or output.key != vin:
                outputs.append(output)
                continue
            step = query.vehicle_command(commands.decode_vehicle(output.value), current, ctx)
            if step.changes_state:
                state = current = step.state
            outputs += step.outputs
            effects += step.effects
        return Decision(state=state, outputs=outputs, effects=effects)

    def query_intake(event: faust.EventT) -> Step:
        vin = key_text(event)
        ctx = shell.context(event)
        entry = store.get(vin)
        decision = query.intake(event.message.value or b"", shell.source(event), entry, ctx)
        return vehicle_step_here(match_system_here(decision, ctx), vin, entry, ctx), store, vin

    def query_match_system(event: faust.EventT) -> Step:
        decision = query.match_system(commands.decode_query_hop(event.message.value),
                                      systems.get(key_text(event)), shell.context(event))
        return decision, None, None

    def query_match_device(event: faust.EventT) -> Step:
        decision = query.match_device(commands.decode_query_hop(event.message.value),
                                      registrations.get(key_text(event)), shell.context(event))
        return decision, None, None

    def vehicle_command(event: faust.EventT) -> Step:
        vin = key_text(event)
        decision = query.vehicle_command(commands.decode_vehicle(event.message.value),
                                         store.get(vin),
                                         shell.context(event))
        return decision, store, vin

    def admin_command(event: faust.EventT) -> Step:
        vin = key_text(event)
        command = shell.serde.decode("AdminCommand", event.message.value or b"",
                                     topic=event.message.topic)
        return operator_commands.handle(command, store.get(vin), shell.context(event)), store, vin

    def rehome_result(event: faust.EventT) -> Step:
        vin = key_text(event)
        result = shell.serde.decode("RehomeResult", event.message.value or b"",
                                    topic=event.message.topic)
        return query.rehome_result(result, store.get(vin), shell.context(event)), store, vin

    # The compacted registration topics are guarded too: the index must never lose a record;
    # the probe tells their compaction holes from dropped records.
    watchdog.install(app, {cat.query, cat.query_by_system, cat.query_by_device,
                           cat.vehicle_commands, cat.rehome_result, cat.admin,
                           *routes.values()},
                     compacted={cat.registrations, cat.system_registrations},
                     probe=OffsetProbe(shell.config, group_prefix=cat.global_app_id))
    agent(cat.registrations, ingest_registration)
    agent(cat.system_registrations, index_system)
    agent(cat.query, query_intake)
    agent(cat.query_by_system, query_match_system)
    agent(cat.query_by_device, query_match_device)
    agent(cat.vehicle_commands, vehicle_command)
    agent(cat.rehome_result, rehome_result)
    agent(cat.admin, admin_command)

    add_table_view(app, vehicles, "/vehicles/{vin}/", "vin", "vehicle")
    add_table_view(app, systems, "/systems/{system_id}/", "system_id", "registered system")
    add_table_view(app, registrations, "/registrations/{device_id}/", "device_id",
                   "registered device")

    deadline_timer(app, shell, store, cat.vehicle_commands,
                   lambda entry: commands.RehomeDeadline(entry["request_id"]),
                   name="expire_rehomes")

    return {"registrations": registrations, "systems": systems, "vehicles": vehicles,
            "deadlines": store.deadlines}
