"""Late registrations join the vehicle, and devices moved away leave it (docs/spec.md 2.1, last
paragraph), through the in-memory router: index -> vehicle -> region."""

from __future__ import annotations

from dataclasses import replace

from flowkit import (
    CONFIG,
    Flow,
    error_code,
    lifecycle,
    only_reply,
    rehome_requests,
    replies,
    stranger,
    vehicle,
)

from vprov.ops.audit import compare, fold
from vprov.sim import fleet


def provision(flow: Flow, sim: fleet.SimVehicle, index: int, message_id: str,
              authenticated: str | None = None) -> dict:
    device = sim.devices[index]
    raw = fleet.device_provision(sim, device, message_id, flow.now_s)
    out = flow.provision(raw, sim.region, authenticated=authenticated or device.device_id)
    return only_reply([o for o in out if o.kind == "reply" and message_id in o.value])


def test_a_device_registered_after_the_vehicle_is_regional_joins_and_provisions() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim, devices=[0])
    flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"
    ivi = sim.devices[1].device_id
    assert ivi not in flow.regional["NA"][sim.vin]["devices"]

    out = flow.register(sim, devices=[1])

    [join] = rehome_requests(out, "JOIN")
    assert [d["device_id"] for d in join["devices"]] == [ivi]
    [joined] = lifecycle(out)
    assert (joined["device_id"], joined["state"], joined["previous_state"]) == \
        (ivi, "REGIONAL", None)
    assert joined["sequence"] == 2  # numbered on from the REGIONAL event
    assert ivi in {d["device_id"] for d in flow.vehicles[sim.vin]["devices"]}
    assert flow.regional["NA"][sim.vin]["devices"][ivi]["state"] == "REGIONAL"

    assert provision(flow, sim, 0, "d-0")["status"] == "SUCCESS"
    assert provision(flow, sim, 1, "d-1")["status"] == "SUCCESS"
    history = [o.value for o in flow.sent if o.kind == "event" and o.record == "LifecycleEvent"]
    folded = fold(sim.vin, history)
    assert folded.problems == []
    assert compare(folded, flow.vehicles[sim.vin], flow.regional["NA"][sim.vin], "NA") == []


def test_a_registration_indexed_after_the_query_matched_joins_at_the_bind() -> None:
    # both devices registered before the query, but the IVI's index record is late (its
    # system-registrations partition paused): the query binds the vehicle without it
    flow, sim = Flow(), vehicle()
    flow.register(sim, devices=[0])
    flow.paused.add(flow.topics.system_registrations)
    flow.register(sim, devices=[1])
    out = flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    assert only_reply(out)["status"] == "SUCCESS"
    ivi = sim.devices[1].device_id
    assert ivi not in flow.regional["NA"][sim.vin]["devices"]
    out = flow.release()  # the IVI's upsert, then the bind: the bind finds the IVI
    assert [d["device_id"] for r in rehome_requests(out, "JOIN") for d in r["devices"]] == [ivi]
    assert flow.regional["NA"][sim.vin]["devices"][ivi]["state"] == "REGIONAL"
    assert provision(flow, sim, 0, "d-0")["status"] == "SUCCESS"
    assert provision(flow, sim, 1, "d-1")["status"] == "SUCCESS"


def test_a_device_the_vehicle_was_bound_with_does_not_join_again() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    assert rehome_requests(flow.sent, "JOIN") == []
    assert rehome_requests(flow.register(sim), "JOIN") == []  # registrations published again


def test_the_join_is_idempotent() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim, devices=[0])
    flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    flow.paused.add(flow.topics.vehicle_commands)
    flow.register(sim, devices=[1])
    [command] = [o for o in flow.parked if o.topic == flow.topics.vehicle_commands]
    first = flow.release()
    again = flow.deliver(command)  # a re-delivery after a crash: the same records again
    assert [o.to_dict() for o in again] == [o.to_dict() for o in first]
    assert flow.regional["NA"][sim.vin]["sequence"] == 2  # one join, one event number
    assert lifecycle(again) == lifecycle(first)  # the same event, the same id
    assert rehome_requests(flow.register(sim, devices=[1]), "JOIN") == []


def test_a_device_moved_to_another_system_leaves_its_old_vehicle() -> None:
    flow, old, new = Flow(), vehicle(1), vehicle(2)
    flow.homed(old)
    flow.homed(new)
    ivi = old.devices[1]
    assert provision(flow, old, 0, "d-0")["status"] == "SUCCESS"
    assert provision(flow, old, 1, "d-1")["status"] == "SUCCESS"
    moved = replace(new, devices=(*new.devices, replace(ivi, primary=False)))
    out = flow.register(moved, devices=[2])

    [leave] = rehome_requests(out, "LEAVE")
    assert leave["vin"] == old.vin
    removed = [e for e in lifecycle(out) if e["state"] == "REMOVED"]
    assert [(e["vin"], e["device_id"], e["previous_state"]) for e in removed] == \
        [(old.vin, ivi.device_id, "PROVISIONED")]
    assert ivi.device_id not in flow.regional["NA"][old.vin]["devices"]
    assert ivi.device_id not in {d["device_id"] for d in flow.vehicles[old.vin]["devices"]}
    # ... and joins the vehicle of its new system
    assert ivi.device_id in flow.regional["NA"][new.vin]["devices"]
    assert any(e.op == "delete_identity" and e.scope == "NA" and e.device_id == ivi.device_id
               for e in flow.effects)
    # the old vehicle no longer knows it: its request waits for a join that never comes, then
    # is answered 13123
    raw = fleet.device_provision(old, ivi, "d-again", flow.now_s)
    assert replies(flow.provision(raw, "NA", authenticated=ivi.device_id)) == []
    flow.advance(CONFIG.join_wait_seconds)
    assert error_code(only_reply(flow.expire_holds("NA", old.vin))) == 13123
    assert flow.regional["NA"][old.vin]["held"] == []
    # sent again, it gets the same answer
    assert error_code(only_reply(flow.provision(raw, "NA", authenticated=ivi.device_id))) == \
        13123


def test_a_request_before_the_join_is_provisioned_by_the_join() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim, devices=[0])
    flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    assert provision(flow, sim, 0, "d-0")["status"] == "SUCCESS"
    ivi = sim.devices[1]
    raw = fleet.device_provision(sim, ivi, "d-early", flow.now_s)
    assert replies(flow.provision(raw, "NA", authenticated=ivi.device_id)) == []  # held
    assert flow.regional["NA"][sim.vin]["held"][0]["device_id"] == ivi.device_id
    out = flow.register(sim, devices=[1])
    answer = only_reply(out)
    assert (answer["correlation_id"], answer["status"]) == ("d-early", "SUCCESS")
    assert [(e["device_id"], e["previous_state"], e["state"]) for e in lifecycle(out)] == [
        (ivi.device_id, None, "REGIONAL"), (ivi.device_id, "REGIONAL", "PROVISIONED")]
    assert flow.regional["NA"][sim.vin]["held"] == []


def test_a_spoofed_sender_for_an_unknown_device_is_refused_at_once() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    other = vehicle(2)
    raw = fleet.device_provision(sim, stranger(sim), "d-spoof", flow.now_s)
    answer = only_reply(flow.provision(raw, "NA", authenticated=other.primary.device_id))
    assert error_code(answer) == 1401


def test_a_bind_lost_in_a_crash_is_sent_again_by_the_query_after_the_region_answered() -> None:
    # The worker sent the query's REGISTER and bind; it died with the bind still in its producer
    # (parked, then dropped). Restarted, it read the region's REGISTERED before the query, whose
    # offset it had not committed. The query, read again, must send the bind again: without it
    # the index never learns the VIN, and a device registered later never joins.
    flow, sim = Flow(), vehicle()
    flow.register(sim, devices=[0])
    flow.paused.add(flow.topics.system_registrations)
    raw = fleet.query(sim, "q-1", flow.now_s)
    first = flow.query(raw, authenticated=sim.primary.device_id)
    assert only_reply(first)["status"] == "SUCCESS"
    flow.parked.clear()  # the bind never reached Kafka
    flow.paused.clear()

    again = flow.query(raw, authenticated=sim.primary.device_id)

    assert [r["status"] for r in replies(again)] == ["SUCCESS"]
    assert rehome_requests(again) == []  # the region has answered the REGISTER
    ivi = sim.devices[1].device_id
    out = flow.register(sim, devices=[1])
    assert [d["device_id"] for r in rehome_requests(out, "JOIN") for d in r["devices"]] == [ivi]
    assert flow.regional["NA"][sim.vin]["devices"][ivi]["state"] == "REGIONAL"
    assert provision(flow, sim, 0, "d-0")["status"] == "SUCCESS"
    assert provision(flow, sim, 1, "d-1")["status"] == "SUCCESS"
