"""The topology table (vprov/flows/topology.py): every input topic has one step and a record type,
and a hop taken in place decides exactly what the hop through its topic decides."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tests.unit.flowkit import CONFIG, SERDE, Flow, error_code, only_reply, replies, vehicle
from vprov.core import commands
from vprov.core.commands import CommandError
from vprov.core.outputs import Output
from vprov.flows import topology
from vprov.kafka.catalogue import Catalogue
from vprov.sim import fleet

CAT = Catalogue(CONFIG)
ROLES = [topology.role(CAT, region) for region in (None, *CONFIG.regions)]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.region or "global")
def test_each_role_reads_each_topic_once_with_a_record_type(role: topology.Role) -> None:
    topics = [step.topic for step in role.steps]
    assert len(set(topics)) == len(topics)
    assert len({step.name for step in role.steps}) == len(role.steps)
    for topic in topics:
        CAT.record_type(topic)  # KeyError for a topic the catalogue does not type
    for step in role.steps:  # a hop named in place is a step of the same role
        assert all(role.step(name) for name in step.in_place)


def test_only_records_no_answer_waits_for_are_batched() -> None:
    """The producer's batching client (kafka.producer_batch_linger_ms) lingers: no topic on the
    way from a request to its answer may be sent through it."""
    batched = CAT.batched()
    read = {step.topic for role in ROLES for step in role.steps}
    # the one input among them: a query's bind, which only later registrations need
    assert read & batched == {CAT.system_registrations}
    answers = {CAT.query_response, CAT.deadletter, CAT.admin_outcome,
               *(CAT.device_response(r) for r in CONFIG.regions)}
    assert not answers & batched
    assert {spec.name for spec in CAT.changelogs()} <= batched
    assert {CAT.onboarding(r) for r in CONFIG.regions} <= batched
    # two workers write a vehicle's lifecycle events to one partition: neither may hold its own
    # back, or a REGIONAL event could land after the region's PROVISIONED
    assert CAT.lifecycle not in batched


def test_the_workers_inputs_are_the_topics_the_catalogue_places_on_their_side() -> None:
    [global_role, *regional] = ROLES
    assert {s.topic for s in global_role.steps} <= CAT.global_side()
    for role in regional:
        assert role.region is not None
        assert {s.topic for s in role.steps} <= CAT.regional_side(role.region)


def test_a_rerouted_topic_has_its_input_topic_s_record_type() -> None:
    for topic, rerouted in CAT.ingress_routes().items():
        assert CAT.record_type(rerouted) == CAT.record_type(topic)


def test_decode_follows_the_record_type() -> None:
    registration = CAT.record_type(CAT.registrations)
    assert topology.decode(registration, None, SERDE, CAT.registrations) is None  # tombstone
    raw = b'{"not": "validated here"}'
    assert topology.decode(CAT.record_type(CAT.query), raw, SERDE, CAT.query) is raw
    hop = commands.output(CAT.vehicle_commands, "VIN", commands.RehomeDeadline("r-1")).value
    assert topology.decode(CAT.record_type(CAT.vehicle_commands), hop, SERDE,
                           CAT.vehicle_commands) == commands.RehomeDeadline("r-1")
    with pytest.raises(CommandError):
        topology.decode(CAT.record_type(CAT.vehicle_commands), {"kind": "nonsense"}, SERDE,
                        CAT.vehicle_commands)
    with pytest.raises(ValueError):  # an Avro topic refuses what is not its record
        topology.decode(CAT.record_type(CAT.admin), b"\x00junk", SERDE, CAT.admin)


def _homed(flow: Flow) -> list[Output]:
    sim = vehicle()
    flow.register(sim)
    out = flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    for device in sim.devices:
        out += flow.provision(fleet.device_provision(sim, device, f"p-{device.device_id}",
                                                     flow.now_s), "NA",
                              authenticated=device.device_id)
    return out


def _unknown_system(flow: Flow) -> list[Output]:
    sim = vehicle()  # never registered: the system match fails
    return flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)


def _late_device(flow: Flow) -> list[Output]:
    sim = vehicle()
    flow.register(sim, devices=[1])  # the querying primary joins after the query
    out = flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    flow.register(sim, devices=[0])
    return out + flow.query(fleet.query(sim, "q-2", flow.now_s),
                            authenticated=sim.primary.device_id)


def _rivals(flow: Flow) -> list[Output]:
    sim = vehicle()
    rival = dataclasses.replace(vehicle(2), vin=sim.vin)
    flow.register(sim)
    flow.register(rival)
    return (flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
            + flow.query(fleet.query(rival, "q-2", flow.now_s),
                         authenticated=rival.primary.device_id))


SCENARIOS: dict[str, Callable[[Flow], list[Output]]] = {
    "homed and provisioned": _homed, "unknown system": _unknown_system,
    "device registered late": _late_device, "two systems, one VIN": _rivals,
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_a_hop_taken_in_place_decides_what_the_hop_through_its_topic_decides(
        scenario: Callable[[Flow], list[Output]]) -> None:
    through, here = Flow(), Flow(partitions_held=True)
    by_topic, in_place = scenario(through), scenario(here)
    assert replies(in_place) == replies(by_topic)
    assert [o.to_dict() for o in in_place if o.kind == "event"] == \
        [o.to_dict() for o in by_topic if o.kind == "event"]
    assert here.domain_snapshot() == through.domain_snapshot()
    assert here.effects == through.effects
    # and the hop was taken in place: no record went to the system's partition
    assert [o for o in by_topic if o.topic == CAT.query_by_system]
    assert not [o for o in in_place if o.topic == CAT.query_by_system]


def test_a_failed_system_match_answers_13103_either_way() -> None:
    for flow in (Flow(), Flow(partitions_held=True)):
        assert error_code(only_reply(_unknown_system(flow))) == 13103
