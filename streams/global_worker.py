"""Agents of the global worker: registrations and the provisioning query (SPEC.md 2.1).

All topics and tables share the same partition count, so Faust assigns partition N of every
topic to the same worker; each table is read only under the key its input topic is keyed by.
"""

from __future__ import annotations

import logging

import faust

from streams.shell import RAW, Shell, decode_internal, encode_internal, now_ms
from vprov.flows import query, registration

log = logging.getLogger(__name__)
DEADLINE_SCAN_SECONDS = 1.0


def register(app: faust.App, shell: Shell) -> None:
    cat = shell.catalogue
    partitions = shell.config.partitions
    json_table = {"partitions": partitions, "default": None, "key_type": str,
                  "value_serializer": "json"}
    registrations = app.Table("registrations", **json_table)  # device_id -> Registration
    systems = app.Table("systems", **json_table)  # system_id -> SystemEntry
    vehicles = app.Table("vehicles", **json_table)  # VIN -> GlobalVehicle
    deadlines = app.Table("rehome-deadlines", **json_table)  # VIN -> {request_id, deadline_ms}

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, partitions=partitions, **RAW)

    def key_of(event: faust.EventT) -> str:
        return (event.message.key or b"").decode("utf-8", errors="replace")

    def track_deadline(vin: str, entry: dict | None) -> None:
        pending = entry.get("pending") if entry else None
        if pending:
            deadlines[vin] = {"request_id": pending["request_id"],
                              "deadline_ms": pending["deadline_ms"]}
        elif deadlines.get(vin) is not None:
            deadlines.pop(vin, None)

    @app.agent(topic(cat.registrations))
    async def ingest_registrations(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                device_id = key_of(event)
                value = event.message.value
                record = shell.serde.decode("DeviceRegistration", value,
                                            topic=event.message.topic) if value else None
                decision = registration.ingest(device_id, record, registrations.get(device_id),
                                               shell.context())
                await shell.carry_out(decision, registrations, device_id)
            await shell.guarded(event, step)

    @app.agent(topic(cat.system_registrations))
    async def index_systems(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                system_id = key_of(event)
                decision = registration.index_system(decode_internal(event.message.value),
                                                     systems.get(system_id))
                await shell.carry_out(decision, systems, system_id)
            await shell.guarded(event, step)

    @app.agent(topic(cat.query))
    async def query_intake(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                source = shell.source(event)
                vin = key_of(event)
                vehicle = vehicles.get(vin) if vin else None
                decision = query.intake(event.message.value or b"", source, vehicle,
                                        shell.context())
                await shell.carry_out(decision, vehicles, vin)
            await shell.guarded(event, step)

    @app.agent(topic(cat.query_by_system))
    async def query_match_system(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                command = decode_internal(event.message.value)
                decision = query.match_system(command, systems.get(key_of(event)),
                                              shell.context())
                await shell.carry_out(decision)
            await shell.guarded(event, step)

    @app.agent(topic(cat.query_by_device))
    async def query_match_device(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                command = decode_internal(event.message.value)
                decision = query.match_device(command, registrations.get(key_of(event)),
                                              shell.context())
                await shell.carry_out(decision)
            await shell.guarded(event, step)

    @app.agent(topic(cat.vehicle_commands))
    async def vehicle_commands(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                vin = key_of(event)
                decision = query.vehicle_command(decode_internal(event.message.value),
                                                 vehicles.get(vin), shell.context())
                await shell.carry_out(decision, vehicles, vin)
                if decision.changes_state:
                    track_deadline(vin, decision.state if isinstance(decision.state, dict)
                                   else None)
            await shell.guarded(event, step)

    @app.agent(topic(cat.rehome_result))
    async def rehome_results(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                vin = key_of(event)
                result = shell.serde.decode("RehomeResult", event.message.value,
                                            topic=event.message.topic)
                decision = query.rehome_result(result, vehicles.get(vin), shell.context())
                await shell.carry_out(decision, vehicles, vin)
                if decision.changes_state:
                    track_deadline(vin, decision.state if isinstance(decision.state, dict)
                                   else None)
            await shell.guarded(event, step)

    announced: set[tuple[str, str]] = set()

    @app.timer(interval=DEADLINE_SCAN_SECONDS)
    async def expire_rehomes() -> None:
        """Tables change only inside a stream, so the timer asks the vehicle's own partition to
        decide: it sends a deadline command keyed by VIN."""
        if not app.consumer or app.rebalancing:
            return
        now = now_ms()
        live = set()
        for vin, entry in list(deadlines.items()):
            if not entry:
                continue
            marker = (vin, entry["request_id"])
            live.add(marker)
            if entry["deadline_ms"] <= now and marker not in announced:
                announced.add(marker)
                await shell.topic(cat.vehicle_commands).send(
                    key=vin.encode(),
                    value=encode_internal({"kind": "deadline",
                                                "request_id": entry["request_id"]}),
                )
        announced.intersection_update(live)
