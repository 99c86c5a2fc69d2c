"""Agents of a regional worker: vehicle registration (rehome) and device provisioning.

A regional worker serves one region: it reads only that region's topics and keeps that region's
table, so regions stay isolated.
"""

from __future__ import annotations

import faust

from streams.shell import RAW, Shell
from vprov.flows import provision, rehome


def register(app: faust.App, shell: Shell, region: str) -> None:
    cat = shell.catalogue
    partitions = shell.config.partitions
    vehicles = app.Table(f"regional-vehicles-{region}", partitions=partitions, default=None,
                         key_type=str, value_serializer="json")  # VIN -> RegionalVehicle

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, partitions=partitions, **RAW)

    def key_of(event: faust.EventT) -> str:
        return (event.message.key or b"").decode("utf-8", errors="replace")

    @app.agent(topic(cat.rehome(region)))
    async def register_vehicles(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                vin = key_of(event)
                request = shell.serde.decode("RehomeRequest", event.message.value,
                                             topic=event.message.topic)
                decision = rehome.handle(request, vehicles.get(vin), region, shell.context())
                await shell.carry_out(decision, vehicles, vin)
            await shell.guarded(event, step)

    @app.agent(topic(cat.device(region)))
    async def provision_devices(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async def step(event: faust.EventT = event) -> None:
                vin = key_of(event)
                entry = vehicles.get(vin) if vin else None
                decision = provision.handle(event.message.value or b"", shell.source(event),
                                            entry, region, shell.context())
                await shell.carry_out(decision, vehicles, vin)
            await shell.guarded(event, step)
