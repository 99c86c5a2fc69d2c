"""``vprov.ops.stage``: the stage a vehicle waits in, one test per stage, each reached by driving
the
real flows in memory (``flowkit``) and reading the tables as ``vprov status`` does."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from flowkit import CONFIG, T0_MS, Flow, lifecycle, stranger, vehicle

from streams.web import public_view
from vprov.config import Config
from vprov.core.commands import RehomeDeadline
from vprov.core.ids import derive_id
from vprov.ops.stage import (
    RegionView,
    Stage,
    StageName,
    format_stage,
    span,
    stage_of,
    vehicle_letters,
)
from vprov.sim import fleet
from vprov.sim.fleet import SimVehicle


def history(flow: Flow, vin: str) -> list[dict[str, Any]]:
    unique = {e["event_id"]: e for e in lifecycle(flow.sent) if e["vin"] == vin}
    return sorted(unique.values(), key=lambda e: e["sequence"])


def dead_letters(flow: Flow) -> list[dict[str, Any]]:
    return [o.value for o in flow.sent if o.kind == "event" and o.record == "DeadLetter"]


def seen_by_status(flow: Flow, sim: SimVehicle, *, regions: dict[str, RegionView] | None = None,
                   later_s: float = 0, config: Config = CONFIG) -> Stage:
    """The stage, from what the workers' web views show: every region's entry, as status
    would ask the ones it needs."""
    if regions is None:
        regions = {r: RegionView(entry=public_view(t[sim.vin]) if sim.vin in t else None)
                   for r, t in flow.regional.items()}
    glob = public_view(flow.vehicles[sim.vin])
    return stage_of(config, sim.vin, glob, regions, history(flow, sim.vin), dead_letters(flow),
                    flow.now_ms + int(later_s * 1000))


def text(stage: Stage) -> str:
    return "\n".join(format_stage(stage))


def provision(flow: Flow, sim: SimVehicle, index: int, message_id: str) -> None:
    device = sim.devices[index]
    flow.provision(fleet.device_provision(sim, device, message_id, flow.now_s), sim.region,
                   authenticated=device.device_id)


def homed(flow: Flow, sim: SimVehicle, provisioned: int = 0) -> None:
    flow.homed(sim)
    for index in range(provisioned):
        provision(flow, sim, index, f"p-{index}")


def query(flow: Flow, sim: SimVehicle, message_id: str = "q-1") -> None:
    flow.query(fleet.query(sim, message_id, flow.now_s), authenticated=sim.primary.device_id)


def waiting_for_na() -> tuple[Flow, SimVehicle]:
    """A vehicle queried, its REGISTER parked before region NA."""
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome("NA"))
    query(flow, sim)
    return flow, sim


def test_a_rehome_waits_for_its_region_with_the_deadline_and_its_undo() -> None:
    flow, sim = waiting_for_na()
    flow.advance(5)
    silent = {"NA": RegionView(problem="cannot reach the NA worker at http://127.0.0.1:9")}
    stage = seen_by_status(flow, sim, regions=silent)
    assert stage.name == StageName.REHOME
    pending = flow.vehicles[sim.vin]["pending"]
    assert stage.waiting_for == (f"region NA to confirm the vehicle's registration (rehome "
                                 f"request {pending['request_id']})")
    assert stage.since_ms == T0_MS
    assert stage.deadline_ms == T0_MS + int(CONFIG.rehome_timeout_seconds * 1000)
    assert not stage.overdue
    assert stage.at_deadline is not None and "1 waiting query is answered 13105" in \
        stage.at_deadline and "QRY_FAIL" in stage.at_deadline and "CANCEL" in stage.at_deadline
    assert stage.seen == ("region NA: cannot reach the NA worker at http://127.0.0.1:9",)
    assert "`vprov worker --role regional --region NA`" in stage.next[0]
    assert stage.next[1].startswith("or wait: at the deadline (in 25 s)")
    shown = text(stage)
    assert "stage           REHOME\n  waits for       region NA to confirm" in shown
    assert "(5 s ago)" in shown and "(in 25 s)" in shown
    assert "seen            region NA: cannot reach" in shown


def test_a_rehome_the_region_registered_points_at_the_way_back() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome_result)  # NA registers; its confirmation waits
    query(flow, sim)
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.REHOME
    request_id = flow.vehicles[sim.vin]["pending"]["request_id"]
    assert stage.seen == (f"region NA has registered the vehicle (request {request_id})",)
    assert "confirmation has not reached the global worker" in stage.next[0]
    assert flow.topics.rehome_result in stage.next[0]


def test_a_rehome_past_its_deadline_says_the_global_worker_has_not_acted() -> None:
    flow, sim = waiting_for_na()
    stage = seen_by_status(flow, sim, regions={"NA": RegionView()},
                           later_s=CONFIG.rehome_timeout_seconds + 7)
    assert stage.overdue
    assert stage.seen == ("region NA has no record of the vehicle",)
    assert stage.next[0].startswith("the deadline passed 7 s ago and the global worker has not "
                                    "given up")
    assert not any(a.startswith("or wait") for a in stage.next)
    assert "OVERDUE" in text(stage)


def test_the_deadline_passed_is_query_failed_with_13105() -> None:
    flow, sim = waiting_for_na()
    request_id = flow.vehicles[sim.vin]["pending"]["request_id"]
    flow.advance(CONFIG.rehome_timeout_seconds)
    flow.command(sim.vin, RehomeDeadline(request_id).to_json())
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"
    stage = seen_by_status(flow, sim, later_s=60)
    assert stage.name == StageName.QUERY_FAILED
    assert stage.waiting_for == ("a new query from the primary device; the last one failed "
                                 "with 13105 (regional registration failed or timed out)")
    assert stage.since_ms == flow.now_ms
    assert stage.deadline_ms is None
    assert "let the primary query again" in stage.next[0]


def test_a_vin_no_query_has_bound_waits_for_a_query() -> None:
    flow, sim = Flow(), vehicle()
    query(flow, sim)  # the system is not registered: answered 13103, only the memo is kept
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.UNBOUND
    assert "`vprov register FILE`" in stage.next[0]


def test_the_primary_not_provisioned_holds_the_secondaries() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim)
    provision(flow, sim, 1, "p-ivi")  # the secondary first: held for the primary
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.DEVICES
    primary = sim.primary.device_id
    assert stage.waiting_for == (f"the primary device {primary} (TCU) to provision: the others "
                                 "wait for it (1 request held)")
    assert stage.since_ms == T0_MS  # the REGIONAL event
    assert stage.deadline_ms is None
    # the web view names who waits, not what they sent
    assert stage.held_unlisted == 0
    assert [h.message_id for h in stage.held] == ["p-ivi"]
    assert "have not asked region NA" in stage.next[0]
    assert "deadline        none: it waits as long as it takes" in text(stage)


def test_devices_left_to_provision_are_named() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim, provisioned=1)
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.DEVICES
    assert stage.waiting_for == f"devices {sim.devices[1].device_id} (IVI) to provision"


def test_a_device_waiting_for_its_registration_is_held_until_the_join_deadline() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim, provisioned=2)
    late = stranger(sim)
    flow.advance(2)
    flow.provision(fleet.device_provision(sim, late, "p-late", flow.now_s), "NA",
                   authenticated=late.device_id)
    # as the table holds it: the held request names its device and its deadline
    stage = seen_by_status(flow, sim, regions={"NA": RegionView(
        entry=flow.regional["NA"][sim.vin])}, later_s=1)
    assert stage.name == StageName.JOIN
    until = flow.now_ms + int(CONFIG.join_wait_seconds * 1000)
    assert stage.waiting_for == (f"device {late.device_id} to join the vehicle (a request came "
                                 "from it, its registration has not)")
    assert (stage.since_ms, stage.deadline_ms) == (flow.now_ms, until)
    assert stage.at_deadline is not None and "answered 13123" in stage.at_deadline
    [held] = stage.held
    assert (held.waits_for, held.device_id, held.message_id, held.until_ms) == \
        ("JOIN", late.device_id, "p-late", until)
    assert stage.next[0].startswith(f"register {late.device_id} under system {sim.system_id}")
    assert f"{late.device_id:<19} waits to join, until" in text(stage)
    # as the web view shows it: the same device and deadline, without the request itself
    stage = seen_by_status(flow, sim)
    assert (stage.name, stage.held_unlisted) == (StageName.JOIN, 0)
    [held] = stage.held
    assert (held.device_id, held.message_id, held.until_ms) == (late.device_id, "p-late", until)
    # past the deadline, unanswered: the region's timer has not fired
    stage = seen_by_status(flow, sim, regions={"NA": RegionView(
        entry=flow.regional["NA"][sim.vin])}, later_s=CONFIG.join_wait_seconds + 1)
    assert stage.overdue and stage.next[0].startswith("the hold deadline has passed")


def test_a_failed_device_waits_to_provision_again() -> None:
    flow, sim = Flow(dataclasses.replace(CONFIG, max_held_requests=1)), vehicle()
    homed(flow, sim)
    provision(flow, sim, 1, "p-ivi-1")  # held for the primary
    provision(flow, sim, 1, "p-ivi-2")  # no room: PROV_FAIL, 5000
    stage = seen_by_status(flow, sim, config=flow.config)
    assert stage.name == StageName.DEVICE_FAILED
    assert stage.waiting_for == (f"device {sim.devices[1].device_id} to provision again; "
                                 "PROV_FAIL, failed with 5000 (invalid lifecycle transition)")


def test_a_provisioned_vehicle_waits_for_nothing() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim)
    flow.advance(3)
    provision(flow, sim, 0, "p-0")
    provision(flow, sim, 1, "p-1")
    stage = seen_by_status(flow, sim, later_s=60)
    assert stage.name == StageName.PROVISIONED
    assert stage.waiting_for == "nothing: every device is provisioned"
    assert stage.since_ms == T0_MS + 3000
    assert stage.next == ("nothing to do",)
    assert "deadline" not in text(stage)


def test_a_regional_vehicle_whose_region_cannot_be_read() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim)
    stage = seen_by_status(flow, sim, regions={})
    assert stage.name == StageName.REGION_UNSEEN
    assert stage.next == ("pass --region-url NA=http://host:port to see its devices",)


def test_a_move_waits_for_the_target_with_its_undo() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim, provisioned=2)
    flow.paused.add(flow.topics.rehome("EU"))
    flow.admin(sim.vin, "MOVE", "c-move", target_region="EU", move_policy="MIGRATE")
    assert flow.vehicles[sim.vin]["state"] == "MOVING"
    stage = seen_by_status(flow, sim, regions={"EU": RegionView()})
    assert stage.name == StageName.MOVE
    assert stage.waiting_for == ("region EU to take the vehicle up, moved from NA (command "
                                 "c-move)")
    assert stage.deadline_ms == T0_MS + int(CONFIG.move_timeout_seconds * 1000)
    assert stage.since_ms == T0_MS
    assert stage.at_deadline == ("the move is undone: the vehicle stays REGIONAL in NA, region "
                                 "NA is told to RESUME and region EU to CANCEL, and the command "
                                 "ends FAILED (13105)")
    assert f"`vprov vehicle move {sim.vin} --to EU --command-id c-move`" in stage.next[1]


def test_a_move_waits_for_the_source_to_export() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim)
    flow.paused.add(flow.topics.rehome("NA"))
    flow.admin(sim.vin, "MOVE", "c-move", target_region="EU", move_policy="MIGRATE")
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.MOVE
    assert stage.waiting_for.startswith("region NA to export the vehicle for its move to EU")
    assert stage.at_deadline is not None and "region NA is told to RESUME, and" in \
        stage.at_deadline


def test_a_decommission_waits_for_its_region_without_a_deadline() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim)
    flow.paused.add(flow.topics.rehome("NA"))
    flow.admin(sim.vin, "DECOMMISSION", "c-dec")
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.REGION_COMMAND
    assert stage.waiting_for == "region NA to carry out DECOMMISSION (command c-dec)"
    assert stage.deadline_ms is None
    assert f"`vprov vehicle decommission {sim.vin} --command-id c-dec`" in stage.next[1]


def test_a_decommissioned_vehicle_can_be_reinstated() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim)
    flow.admin(sim.vin, "DECOMMISSION", "c-dec")
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.DECOMMISSIONED
    assert f"`vprov vehicle reinstate {sim.vin}`" in stage.next[0]


def test_a_region_left_frozen_by_an_undone_move() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim, provisioned=2)
    flow.paused.add(flow.topics.rehome_result)  # NA exports; its EXPORTED waits
    flow.admin(sim.vin, "MOVE", "c-move", target_region="EU", move_policy="MIGRATE")
    flow.paused.add(flow.topics.rehome("NA"))  # the RESUME of the undo will wait
    flow.advance(CONFIG.move_timeout_seconds)
    flow.command(sim.vin, RehomeDeadline(derive_id("move", sim.vin, "c-move")).to_json())
    assert flow.vehicles[sim.vin]["admin"] is None
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.FROZEN
    assert "COMMIT, RESUME or RELEASE" in stage.next[0]


def test_dead_letters_of_the_vehicle_come_with_their_commands() -> None:
    flow, sim = Flow(), vehicle()
    homed(flow, sim, provisioned=2)
    flow.provision(b"{not json", "NA", key=sim.vin.encode())  # cannot be answered
    flow.provision(b"{not json either", "NA", key=b"1VOTHER0000000000")
    mine = vehicle_letters(dead_letters(flow), sim.vin)
    assert len(mine) == 1
    stage = seen_by_status(flow, sim)
    assert stage.name == StageName.PROVISIONED
    [letter] = stage.dead_letters
    ident = letter.dead_letter_id
    assert letter.error_code == 13113
    assert letter.commands == (f"vprov deadletter show --id {ident}",
                               f"vprov deadletter redrive --id {ident} --dry-run",
                               f"vprov deadletter redrive --id {ident}")
    assert stage.next[-1].startswith(f"look at its 1 dead letter: `vprov deadletter show --id "
                                     f"{ident}`")
    assert f"      $ vprov deadletter show --id {ident}" in text(stage)


def test_a_dead_letter_naming_the_vin_in_its_payload_is_the_vehicles() -> None:
    letters = [{"key": None, "payload": b'{"vin": "1VTESTA0000000001"'},
               {"key": b"1VTESTA0000000001", "payload": b""},
               {"key": b"other", "payload": b"{}"}]
    assert vehicle_letters(letters, "1VTESTA0000000001") == letters[:2]


def test_the_json_shape_is_stable() -> None:
    flow, sim = waiting_for_na()
    doc = seen_by_status(flow, sim).to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert sorted(doc) == ["at_deadline", "dead_letters", "deadline", "deadline_ms", "held",
                           "held_unlisted", "name", "next", "overdue", "seen", "since",
                           "since_ms", "waiting_for"]
    assert doc["name"] == "REHOME"
    assert doc["deadline"] == "2023-11-14T22:13:50.000+00:00"


def test_spans_read_like_a_person_would_say_them() -> None:
    assert [span(ms) for ms in (0, 42_000, 185_000, 7_800_000, 273_600_000)] == \
        ["0 s", "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"]
