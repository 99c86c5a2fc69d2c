"""Agents of a regional worker: vehicle registration (rehome) and device provisioning.

A regional worker serves one region: it reads only that region's topics and keeps that region's
tables, so regions stay isolated. Requests held for devices whose registration has not joined
the vehicle yet have a deadline; a timer asks the vehicle's partition to answer them when it
passes (``provision.expire_holds``).
"""

from __future__ import annotations

from typing import Any

import faust

from streams.repairs import watchdog
from streams.shell import Shell, Step, key_text
from streams.stores import DeadlineIndexedStore, deadline_timer
from streams.web import add_table_view
from tables.models import RegionalVehicle
from vprov.core import commands
from vprov.flows import provision, rehome
from vprov.kafka.catalogue import regional_table


def hold_deadline(entry: RegionalVehicle) -> dict[str, Any] | None:
    """For a vehicle that holds requests: how many (for /metrics), and the earliest wait of
    those held for devices not joined yet (``deadline_ms``, absent when none waits to join)."""
    held = entry.get("held")
    if not held:
        return None
    index: dict[str, Any] = {"held": len(held)}
    deadline = provision.earliest_hold_deadline(entry)
    if deadline is not None:
        index["deadline_ms"] = deadline
    return index


def register(app: faust.App, shell: Shell, region: str) -> dict[str, Any]:
    cat = shell.catalogue
    vehicles = shell.table(regional_table(region))  # VIN -> RegionalVehicle
    # the earliest deadline of the requests each vehicle holds: VIN -> {deadline_ms}, in memory
    store = DeadlineIndexedStore(vehicles, hold_deadline)
    if shell.metrics is not None:
        shell.metrics.deadline_index = store.deadlines

    routes = cat.ingress_routes(region)
    # the devices' requests go to their vehicle's partition whatever their record key
    requests = {cat.device(region)}

    def agent(topic: str, step: Any) -> None:
        name = f"vprov.regional.{region}.{step.__name__}"
        if topic in routes:
            shell.ingress_agent(topic, routes[topic], step, name=name,
                                by_vin=topic in requests)
        else:
            shell.agent(topic, step, name=name)

    def register_vehicle(event: faust.EventT) -> Step:
        vin = key_text(event)
        request = shell.serde.decode("RehomeRequest", event.message.value or b"",
                                     topic=event.message.topic)
        decision = rehome.handle(request, store.get(vin), region, shell.context(event))
        return decision, store, vin

    def provision_device(event: faust.EventT) -> Step:
        vin = key_text(event)
        decision = provision.handle(event.message.value or b"", shell.source(event),
                                    store.get(vin), region, shell.context(event))
        return decision, store, vin

    def vehicle_command(event: faust.EventT) -> Step:
        vin = key_text(event)
        commands.decode_regional(event.message.value)  # one kind of command: the hold deadline
        decision = provision.expire_holds(store.get(vin), region, shell.context(event))
        return decision, store, vin

    topic = cat.regional_commands(region)
    watchdog.install(app, {cat.rehome(region), cat.device(region), topic, *routes.values()})
    agent(cat.rehome(region), register_vehicle)
    agent(cat.device(region), provision_device)
    agent(topic, vehicle_command)
    deadline_timer(app, shell, store, topic, lambda entry: commands.HoldDeadline(),
                   name=f"expire_holds_{region}")
    add_table_view(app, vehicles, "/vehicles/{vin}/", "vin", f"vehicle in region {region}")
    return {"vehicles": vehicles}
