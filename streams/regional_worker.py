"""Agents of a regional worker: vehicle registration (rehome) and device provisioning.

A regional worker serves one region: it reads only that region's topics and keeps that region's
table, so regions stay isolated.
"""

from __future__ import annotations

from typing import Any

import faust

from streams import watchdog
from streams.shell import Shell, Step, key_text
from streams.web import add_table_view
from vprov.flows import provision, rehome
from vprov.topics import regional_table


def register(app: faust.App, shell: Shell, region: str) -> dict[str, Any]:
    cat = shell.catalogue
    vehicles = shell.table(regional_table(region))  # VIN -> RegionalVehicle

    routes = cat.ingress_routes(region)

    def agent(topic: str, step: Any) -> None:
        name = f"vprov.regional.{region}.{step.__name__}"
        if topic in routes:
            shell.ingress_agent(topic, routes[topic], step, name=name)
        else:
            shell.agent(topic, step, name=name)

    def register_vehicle(event: faust.EventT) -> Step:
        vin = key_text(event)
        request = shell.serde.decode("RehomeRequest", event.message.value,
                                     topic=event.message.topic)
        decision = rehome.handle(request, vehicles.get(vin), region, shell.context(event))
        return decision, vehicles, vin

    def provision_device(event: faust.EventT) -> Step:
        vin = key_text(event)
        entry = vehicles.get(vin) if vin else None
        decision = provision.handle(event.message.value or b"", shell.source(event), entry,
                                    region, shell.context(event))
        return decision, vehicles, vin

    watchdog.install(app, {cat.rehome(region), cat.device(region), *routes.values()})
    agent(cat.rehome(region), register_vehicle)
    agent(cat.device(region), provision_device)
    add_table_view(app, vehicles, "/vehicles/{vin}/", "vin", f"vehicle in region {region}")
    return {"vehicles": vehicles}
