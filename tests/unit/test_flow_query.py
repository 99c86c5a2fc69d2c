"""PROVISION_QUERY on the global side (SPEC 2.1, 4, 5, 6), driven through every hop in memory."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from flowkit import (
    CONFIG,
    Flow,
    as_device,
    context,
    error_code,
    event_outputs,
    lifecycle,
    only_reply,
    registration_of,
    rehome_requests,
    replies,
    reply_texts,
    vehicle,
)

from vprov.core import envelope
from vprov.core.commands import QueryHop, decode_query_hop
from vprov.core.envelope import ProvisionQuery, ReplyTo
from vprov.core.outputs import KEEP, Output
from vprov.flows import query
from vprov.sim import fleet
from vprov.sim.fleet import SimVehicle

NA_ENDPOINT = CONFIG.regions["NA"].gateway_endpoint
EU_ENDPOINT = CONFIG.regions["EU"].gateway_endpoint
AP_ENDPOINT = CONFIG.regions["AP"].gateway_endpoint


def ask(flow: Flow, sim: SimVehicle, message_id: str = "q-1", **kwargs: Any) -> bytes:
    return fleet.query(sim, message_id, flow.now_s, **kwargs)


def provision_query(sim: SimVehicle, region: str = "NA", country: str = "US") -> ProvisionQuery:
    return ProvisionQuery(system_id=sim.system_id, sub_system_id=sim.sub_system_id, vin=sim.vin,
                          device_id=sim.primary.device_id, ecu_type=sim.primary.ecu_type,
                          primary=True, region_code=region, country_code=country)


def query_hop(sim: SimVehicle, hops: int = 0) -> QueryHop:
    reply_to = ReplyTo(message_id="q-1", system_id=sim.system_id,
                       sub_system_id=sim.sub_system_id, vin=sim.vin,
                       device_id=sim.primary.device_id, ecu_type=sim.primary.ecu_type,
                       body_encoding_type=0)
    return QueryHop(provision_query(sim), reply_to, hops)


def answer_to(outputs: list[Any], message_id: str) -> list[dict[str, Any]]:
    return [r for r in replies(outputs) if r["correlation_id"] == message_id]


def pending_request_id(flow: Flow, sim: SimVehicle) -> str:
    pending = flow.vehicles[sim.vin]["pending"]
    assert pending is not None
    return pending["request_id"]


def waiting_for_region(message_id: str = "q-1") -> tuple[Flow, SimVehicle, str]:
    """A registered vehicle queried, its REGISTER held before region NA: (flow, vehicle, the
    pending request's id)."""
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome("NA"))
    flow.query(ask(flow, sim, message_id))
    return flow, sim, pending_request_id(flow, sim)


def deadline(flow: Flow, sim: SimVehicle, request_id: str) -> list[Output]:
    return flow.command(sim.vin, {"kind": "deadline", "request_id": request_id})


# --- the happy path ----------------------------------------------------------------------------


def test_query_runs_every_hop_and_answers_with_the_regional_endpoint() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    out = flow.query(ask(flow, sim, "q-1"))

    cat = flow.topics
    # the bind tells the system's index the VIN (late registrations then join the vehicle)
    assert [o.topic for o in out] == [
        cat.query_by_system, cat.vehicle_commands, cat.rehome("NA"), cat.system_registrations,
        cat.rehome_result, cat.lifecycle, cat.query_response,
    ]
    answer = only_reply(out)
    assert answer["status"] == "SUCCESS"
    assert answer["message_type"] == envelope.PROVISION_QUERY_RESPONSE
    assert answer["correlation_id"] == "q-1"
    assert (answer["vin"], answer["device_id"]) == (sim.vin, sim.primary.device_id)
    assert answer["body"] == {"iot_gateway_endpoint": NA_ENDPOINT, "smqendpoint": "",
                              "otaendoint": "", "lifecyclestate": "PROVISION_PENDING_REGIONAL"}
    assert "error_code" not in answer["property_bag"]


def test_query_success_emits_exactly_one_regional_event_from_registered() -> None:
    flow, sim = Flow(), vehicle()
    out = flow.homed(sim, message_id="q-1")
    [event] = lifecycle(out)
    assert event["state"] == "REGIONAL"
    assert event["previous_state"] == "REGISTERED"
    assert event["sequence"] == 1
    assert event["partition"] == "global"
    assert event["device_id"] is None
    assert event["cause_message_id"] == "q-1"
    assert event["error_code"] is None


def test_query_success_binds_the_vin_and_registers_every_device_in_the_region() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI", "ADAS"))
    flow.homed(sim)
    stored = flow.vehicles[sim.vin]
    assert stored["state"] == "REGIONAL"
    assert (stored["system_id"], stored["region"]) == (sim.system_id, "NA")
    assert stored["gateway_endpoint"] == NA_ENDPOINT
    assert stored["pending"] is None
    regional = flow.regional["NA"][sim.vin]
    assert set(regional["devices"]) == {d.device_id for d in sim.devices}
    assert {d["state"] for d in regional["devices"].values()} == {"REGIONAL"}
    assert ("NA", sim.primary.device_id) in flow.identities


def test_rehome_request_carries_every_registered_device() -> None:
    flow, sim = Flow(), vehicle(ecu_types=("TCU", "IVI"))
    flow.register(sim)
    [request] = rehome_requests(flow.query(ask(flow, sim)), "REGISTER")
    assert request["region"] == "NA"
    assert request["primary_device_id"] == sim.primary.device_id
    assert request["sequence"] == 1
    assert request["deadline_at"] == flow.now_ms + int(CONFIG.rehome_timeout_seconds * 1000)
    assert sorted(d["device_id"] for d in request["devices"]) == sorted(
        d.device_id for d in sim.devices)


# --- failures answered before any state changes -------------------------------------------------


def _nothing_registered(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    return ask(flow, sim), {}


def _only_secondary_registered(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim, devices=[1])
    return ask(flow, sim), {}


def _device_of_another_system(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    other = vehicle(2)
    flow.register(sim)
    flow.register(other)
    claimant = dataclasses.replace(other, system_id=sim.system_id,
                                   sub_system_id=sim.sub_system_id, vin=sim.vin)
    return ask(flow, claimant), {}


def _non_primary(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim)
    return ask(flow, as_device(sim, 1)), {}


def _other_ecu_type(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim)
    return ask(flow, as_device(sim, 0, ecu_type="IVI")), {}


def _header_names_other_device(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim)
    return ask(flow, sim), {"authenticated": sim.devices[1].device_id}


def _key_differs(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim)
    return ask(flow, sim), {"key": vehicle(9).vin.encode()}


def _bad_version(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim)
    raw = ask(flow, sim).replace(b'"version":"v1"', b'"version":"v9"')
    return raw, {}


def _wrong_message_type(flow: Flow, sim: SimVehicle) -> tuple[bytes, dict[str, Any]]:
    flow.register(sim)
    return fleet.device_provision(sim, sim.primary, "q-1", flow.now_s), {}


FAILURES: list[Any] = [
    pytest.param(_nothing_registered, 13103, id="system not registered → 13103"),
    pytest.param(_only_secondary_registered, 13111, id="device not registered → 13111"),
    pytest.param(_device_of_another_system, 13108,
                 id="device registered under another system → 13108"),
    pytest.param(_non_primary, 13122, id="query from a non-primary device → 13122"),
    pytest.param(_other_ecu_type, 13122,
                 id="ECU type differs from the registration → 13122"),
    pytest.param(_header_names_other_device, 1401,
                 id="authenticated header names another device → 1401"),
    pytest.param(_key_differs, 13130, id="record key differs from the body vin → 13130"),
    pytest.param(_bad_version, 1409, id="unsupported version → 1409"),
    pytest.param(_wrong_message_type, 13115, id="DEVICE_PROVISION on the query topic → 13115"),
]


@pytest.mark.parametrize(("setup", "code"), FAILURES)
def test_query_failure_is_answered_and_binds_nothing(
    setup: Callable[[Flow, SimVehicle], tuple[bytes, dict[str, Any]]], code: int
) -> None:
    flow, sim = Flow(), vehicle()
    raw, kwargs = setup(flow, sim)
    out = flow.query(raw, **kwargs)
    answer = only_reply(out)
    assert error_code(answer) == code
    assert answer["status"] == "FAIL"
    assert answer["correlation_id"] == "q-1"
    assert answer["body"]["lifecyclestate"] == "QRY_FAIL"
    assert answer["property_bag"]["error_message"]
    assert rehome_requests(out) == []
    assert lifecycle(out) == []
    # nothing bound; at most the answer is remembered under the VIN (see the next test)
    assert all(v["system_id"] is None and v["state"] == "REGISTERED" and v["pending"] is None
               for v in flow.vehicles.values())


def test_a_match_delivered_again_after_the_index_caught_up_keeps_the_first_answer() -> None:
    # the match step failed (system not indexed yet), then is delivered again after a crash,
    # when the registrations are indexed: the query must keep its first answer (SPEC 5)
    flow, sim = Flow(), vehicle()
    flow.paused.add(flow.topics.query_by_system)
    flow.query(ask(flow, sim, "q-1"))
    [match] = flow.parked
    first = only_reply(flow.release())
    assert error_code(first) == 13103
    flow.register(sim)
    again = only_reply(flow.deliver(match))
    assert again == first
    assert flow.vehicles[sim.vin]["system_id"] is None  # not bound
    # a new query (new message id) is matched and succeeds
    assert only_reply(flow.query(ask(flow, sim, "q-2")))["status"] == "SUCCESS"


def test_authenticated_header_naming_the_querying_device_is_accepted() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    out = flow.query(ask(flow, sim), authenticated=sim.primary.device_id)
    assert only_reply(out)["status"] == "SUCCESS"


def test_missing_header_when_the_deployment_requires_it_is_1401() -> None:
    flow, sim = Flow(dataclasses.replace(CONFIG, require_authenticated_header=True)), vehicle()
    flow.register(sim)
    assert error_code(only_reply(flow.query(ask(flow, sim)))) == 1401
    assert flow.vehicles == {}


def test_query_that_is_not_json_goes_to_the_dead_letter_topic() -> None:
    flow = Flow()
    out = flow.query(b"{not json", key=b"1VTESTA0000000001")
    assert replies(out) == []
    [letter] = event_outputs(out, "DeadLetter")
    assert letter.topic == flow.topics.deadletter
    assert letter.value["error_code"] == 13113
    assert (letter.value["source_topic"], letter.value["source_partition"],
            letter.value["source_offset"]) == (flow.topics.query, 0, 0)
    assert letter.value["payload"] == b"{not json"


def test_device_not_in_the_system_index_yet_is_looked_up_once_more() -> None:
    sim = vehicle()
    ctx = context()
    registered = registration_of(sim, 0)
    [again] = query.match_device(query_hop(sim), registered, ctx).outputs
    assert (again.topic, again.key) == (ctx.topics.query_by_system, sim.system_id)
    assert again.value["hops"] == 1
    [failed] = query.match_device(decode_query_hop(again.value), registered, ctx).outputs
    assert failed.topic == ctx.topics.vehicle_commands
    assert (failed.value["kind"], failed.value["code"]) == ("match_failed", 13111)


# --- no region ---------------------------------------------------------------------------------


def test_unknown_region_code_is_6100_with_a_qry_fail_event() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    out = flow.query(ask(flow, sim, region="ZZ"))
    answer = only_reply(out)
    assert error_code(answer) == 6100
    assert answer["body"]["lifecyclestate"] == "QRY_FAIL"
    [event] = lifecycle(out)
    assert (event["state"], event["previous_state"]) == ("QRY_FAIL", "REGISTERED")
    assert (event["error_code"], event["sequence"]) == (6100, 1)
    assert rehome_requests(out) == []
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"


def test_retry_after_qry_fail_reaches_regional() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.query(ask(flow, sim, "q-1", region="ZZ"))
    out = flow.query(ask(flow, sim, "q-2"))
    answer = only_reply(out)
    assert (answer["status"], answer["correlation_id"]) == ("SUCCESS", "q-2")
    [request] = rehome_requests(out, "REGISTER")
    assert request["sequence"] == 2
    [event] = lifecycle(out)
    assert (event["previous_state"], event["state"], event["sequence"]) == (
        "QRY_FAIL", "REGIONAL", 2)


# --- homing policy -----------------------------------------------------------------------------


def _by_country() -> Any:
    return dataclasses.replace(CONFIG, homing_by_country=True)


HOMING: list[Any] = [
    pytest.param(CONFIG, "EU", "US", "NA", "EU", id="registration home_region pins the region"),
    pytest.param(_by_country(), "AP", "DE", "NA", "AP",
                 id="pinned home_region wins over the country"),
    pytest.param(_by_country(), None, "DE", "NA", "EU",
                 id="by_country homes a listed country in its region"),
    pytest.param(_by_country(), None, "BR", "AP", "AP",
                 id="by_country, unlisted country → the requested region"),
    pytest.param(CONFIG, None, "DE", "AP", "AP",
                 id="by_country off → the requested region whatever the country"),
]


@pytest.mark.parametrize(("config", "pinned", "country", "requested", "home"), HOMING)
def test_homing_policy(config: Any, pinned: str | None, country: str, requested: str,
                       home: str) -> None:
    flow, sim = Flow(config), vehicle(country=country)
    flow.register(sim, home_region=pinned)
    out = flow.query(ask(flow, sim, region=requested))
    [request] = rehome_requests(out, "REGISTER")
    assert request["region"] == home
    assert event_outputs(out, "RehomeRequest")[0].topic == flow.topics.rehome(home)
    assert only_reply(out)["body"]["iot_gateway_endpoint"] == CONFIG.regions[home].gateway_endpoint
    assert sim.vin in flow.regional[home]


def test_by_country_with_unlisted_country_and_unknown_region_is_6100() -> None:
    flow, sim = Flow(_by_country()), vehicle(country="BR")
    flow.register(sim)
    assert error_code(only_reply(flow.query(ask(flow, sim, region="ZZ")))) == 6100


def test_choose_region_ignores_a_pin_to_an_unconfigured_region() -> None:
    primary = {**registration_of(vehicle()), "home_region": "MARS"}
    chosen = query.choose_region(provision_query(vehicle(), "EU", "DE"), primary, CONFIG)
    assert chosen == "EU"


# --- a VIN bound to another system -------------------------------------------------------------


def test_vin_bound_to_another_system_is_13128_at_intake() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    rival = dataclasses.replace(vehicle(2), vin=sim.vin)
    flow.register(rival)
    before = flow.snapshot()["vehicles"]
    out = flow.query(ask(flow, rival, "q-rival"))
    assert error_code(only_reply(out)) == 13128
    assert [o for o in out if o.kind != "reply"] == []
    assert flow.vehicles == before


def test_two_systems_racing_for_one_vin_the_second_loses_with_13128() -> None:
    flow, sim = Flow(), vehicle()
    rival = dataclasses.replace(vehicle(2), vin=sim.vin)
    flow.register(sim)
    flow.register(rival)
    flow.paused.add(flow.topics.vehicle_commands)
    first = flow.query(ask(flow, sim, "q-first"))
    second = flow.query(ask(flow, rival, "q-second"))
    assert replies(first) == replies(second) == []  # both passed intake
    out = flow.release()
    assert answer_to(out, "q-first")[0]["status"] == "SUCCESS"
    [lost] = answer_to(out, "q-second")
    assert error_code(lost) == 13128
    assert flow.vehicles[sim.vin]["system_id"] == sim.system_id
    assert len(rehome_requests(out)) == 1


# --- the region fails or does not answer -------------------------------------------------------


def test_failed_regional_registration_is_13105_qry_fail_and_a_cancel() -> None:
    flow, sim, request_id = waiting_for_region()
    out = flow.result({"request_id": request_id, "vin": sim.vin, "system_id": sim.system_id,
                       "region": "NA", "outcome": "FAILED", "gateway_endpoint": "",
                       "error_code": 5000, "error_message": "store unavailable",
                       "completed_at": flow.now_ms})
    answer = only_reply(out)
    assert (error_code(answer), answer["correlation_id"]) == (13105, "q-1")
    [event] = lifecycle(out)
    assert (event["state"], event["previous_state"], event["error_code"]) == (
        "QRY_FAIL", "REGISTERED", 13105)
    [cancel] = rehome_requests(out, "CANCEL")
    assert (cancel["request_id"], cancel["region"]) == (request_id, "NA")
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"
    assert flow.vehicles[sim.vin]["pending"] is None


@pytest.mark.parametrize(("late_by", "own_request"), [(-0.001, True), (1, False)],
                         ids=["before the deadline", "for another request"])
def test_deadline_command_that_does_not_apply_changes_nothing(late_by: float,
                                                               own_request: bool) -> None:
    flow, sim, request_id = waiting_for_region()
    before = flow.snapshot()
    flow.advance(CONFIG.rehome_timeout_seconds + late_by)
    assert deadline(flow, sim, request_id if own_request else "someone-else") == []
    assert flow.snapshot() == before


def test_deadline_passed_is_13105_qry_fail_and_a_cancel_for_the_region() -> None:
    flow, sim, request_id = waiting_for_region()
    flow.advance(CONFIG.rehome_timeout_seconds + 0.5)
    out = deadline(flow, sim, request_id)
    answer = only_reply(out)
    assert (error_code(answer), answer["correlation_id"]) == (13105, "q-1")
    assert answer["body"]["lifecyclestate"] == "QRY_FAIL"
    [event] = lifecycle(out)
    assert (event["state"], event["error_code"], event["sequence"]) == ("QRY_FAIL", 13105, 1)
    [cancel] = rehome_requests(out, "CANCEL")
    assert (cancel["request_id"], cancel["region"]) == (request_id, "NA")
    assert event_outputs(out, "RehomeRequest")[0].topic == flow.topics.rehome("NA")
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"


def test_late_registered_result_after_giving_up_is_cancelled_and_leaves_nothing() -> None:
    flow, sim, request_id = waiting_for_region()
    flow.advance(CONFIG.rehome_timeout_seconds + 1)
    deadline(flow, sim, request_id)
    out = flow.release()  # the region finally handles the REGISTER, then the CANCEL
    late_cancels = [o for o in event_outputs(out, "RehomeRequest")
                    if o.value["action"] == "CANCEL"]
    assert late_cancels and all(c.value["request_id"] == request_id for c in late_cancels)
    assert replies(out) == []  # the device had its answer already
    assert lifecycle(out) == []
    assert flow.vehicles[sim.vin]["state"] == "QRY_FAIL"
    assert sim.vin not in flow.regional["NA"]
    assert ("NA", sim.primary.device_id) not in flow.identities


def test_a_registered_result_before_the_lost_query_write_is_redone_still_ends_regional() -> None:
    """A worker crashed after its REGISTER reached the region but before its vehicle entry (the
    pending rehome) reached the changelog. The worker taking over meets the region's REGISTERED
    first: no vehicle, so it cancels. Then it processes the query again, which sends the same
    REGISTER; the region answers the CANCEL (CANCELLED) and registers again. The CANCELLED is
    not a refusal of the pending REGISTER: the vehicle ends REGIONAL, the device gets SUCCESS."""
    flow, sim, request_id = waiting_for_region()
    flow.vehicles.pop(sim.vin)  # the lost changelog write
    result_topic = flow.topics.rehome_result
    flow.paused.add(result_topic)
    flow.release(flow.topics.rehome("NA"))  # the REGISTER: REGISTERED, parked before the global
    flow.paused.add(flow.topics.rehome("NA"))
    [cancel] = rehome_requests(flow.release(result_topic), "CANCEL")  # the global side cancels
    assert cancel["request_id"] == request_id
    flow.query(ask(flow, sim, "q-1"))  # the uncommitted query, processed again
    assert pending_request_id(flow, sim) == request_id
    out = flow.release()  # the region: CANCEL, then the same REGISTER again
    outcomes = [o.value["outcome"] for o in event_outputs(out, "RehomeResult")]
    assert outcomes == ["CANCELLED", "REGISTERED"]
    answer = only_reply(out)
    assert (answer["correlation_id"], answer["status"]) == ("q-1", "SUCCESS")
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"
    assert flow.regional["NA"][sim.vin]["request_id"] == request_id
    assert ("NA", sim.primary.device_id) in flow.identities


def test_late_registered_result_for_an_unknown_vehicle_is_cancelled() -> None:
    sim = vehicle()
    result = {"request_id": "req-9", "vin": sim.vin, "system_id": sim.system_id, "region": "EU",
              "outcome": "REGISTERED", "gateway_endpoint": EU_ENDPOINT, "error_code": None,
              "error_message": None, "completed_at": 0}
    decision = query.rehome_result(result, None, context())
    assert decision.state is KEEP
    [cancel] = decision.outputs
    assert cancel.topic == context().topics.rehome("EU")
    assert (cancel.value["action"], cancel.value["request_id"]) == ("CANCEL", "req-9")


# --- repeats and duplicates (SPEC 5) ---------------------------------------------------------


def test_exact_duplicate_after_completion_gets_the_identical_answer_and_no_new_event() -> None:
    flow, sim = Flow(), vehicle()
    first = flow.homed(sim, message_id="q-1")
    before = flow.snapshot()
    flow.advance(120)
    again = flow.query(ask(flow, sim, "q-1"))
    assert reply_texts(again) == reply_texts(first)
    assert lifecycle(again) == []
    assert rehome_requests(again) == []
    assert flow.snapshot() == before


def test_new_query_for_a_regional_vehicle_is_answered_without_new_work() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim, message_id="q-1")
    before = flow.domain_snapshot()
    out = flow.query(ask(flow, sim, "q-2"))
    answer = only_reply(out)
    assert (answer["status"], answer["correlation_id"]) == ("SUCCESS", "q-2")
    assert answer["body"]["iot_gateway_endpoint"] == NA_ENDPOINT
    assert answer["body"]["lifecyclestate"] == "PROVISION_PENDING_REGIONAL"
    assert [o for o in out if o.kind != "reply"] == []  # no rehome request, no event
    assert flow.domain_snapshot() == before  # only the answer is remembered


def test_exact_duplicate_of_a_repeat_query_gets_the_original_answer() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim, message_id="q-1")
    flow.advance(60)
    first = flow.query(ask(flow, sim, "q-2"))
    flow.advance(60)
    again = flow.query(ask(flow, sim, "q-2"))
    assert reply_texts(again) == reply_texts(first)


@pytest.mark.parametrize(("device", "changes"), [(1, {}), (0, {"ecu_type": "IVI"})],
                         ids=["from a non-primary device", "with another ECU type"])
def test_repeat_query_for_a_regional_vehicle_is_13122(device: int,
                                                      changes: dict[str, str]) -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    out = flow.query(ask(flow, as_device(sim, device, **changes), "q-2"))
    assert error_code(only_reply(out)) == 13122


def test_retry_while_pending_sends_no_second_request_and_both_are_answered() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome("NA"))
    first = flow.query(ask(flow, sim, "q-1"))
    second = flow.query(ask(flow, sim, "q-2"))
    assert len(rehome_requests(first, "REGISTER")) == 1
    assert second == []  # waits with the first
    out = flow.release()
    answers = replies(out)
    assert [a["correlation_id"] for a in answers] == ["q-1", "q-2"]
    assert {a["body"]["iot_gateway_endpoint"] for a in answers} == {NA_ENDPOINT}
    assert {a["status"] for a in answers} == {"SUCCESS"}
    assert len(lifecycle(out)) == 1
    assert len(rehome_requests(flow.sent, "REGISTER")) == 1


def test_exact_duplicate_while_pending_resends_only_the_same_request() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome("NA"))
    first = flow.query(ask(flow, sim, "q-1"))
    again = flow.query(ask(flow, sim, "q-1"))
    assert replies(again) == []
    assert rehome_requests(again) in ([], rehome_requests(first))
    out = flow.release()
    assert {r["request_id"] for r in rehome_requests(flow.sent)} == {
        rehome_requests(first)[0]["request_id"]}
    assert len({e["event_id"] for e in lifecycle(out)}) == 1
    assert len(set(reply_texts(out))) == 1
    assert flow.vehicles[sim.vin]["state"] == "REGIONAL"


def test_query_from_a_non_primary_device_while_pending_is_13122() -> None:
    flow, sim, _ = waiting_for_region()
    out = flow.query(ask(flow, as_device(sim, 1), "q-ivi"))
    out += flow.release()
    [answer] = answer_to(out, "q-ivi")
    assert error_code(answer) == 13122


def test_reprocessing_the_same_rehome_result_repeats_the_same_records() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.paused.add(flow.topics.rehome_result)
    flow.query(ask(flow, sim))
    [result] = flow.parked
    first = flow.release()
    after = flow.snapshot()
    flow.advance(300)
    second = flow.deliver(result)
    assert second == first
    assert [e["event_id"] for e in lifecycle(second)] == [e["event_id"] for e in lifecycle(first)]
    assert flow.snapshot() == after


def test_deadline_after_completion_changes_nothing() -> None:
    flow, sim, request_id = waiting_for_region()
    flow.release()
    before = flow.snapshot()
    flow.advance(CONFIG.rehome_timeout_seconds + 1)
    assert deadline(flow, sim, request_id) == []
    assert flow.snapshot() == before


def test_event_ids_are_derived_from_the_cause() -> None:
    outputs = []
    for _ in range(2):
        flow, sim = Flow(), vehicle()
        outputs.append(flow.homed(sim, message_id="q-1"))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("results_late", [False, True],
                         ids=["region answers at once", "results arrive after the retry"])
def test_retry_after_a_timeout_reaches_regional_and_the_abandoned_request_is_undone(
    results_late: bool,
) -> None:
    flow, sim, abandoned = waiting_for_region()
    if results_late:  # the region's results wait too (nothing reaches them before the release)
        flow.paused.add(flow.topics.rehome_result)
    flow.advance(CONFIG.rehome_timeout_seconds + 1)
    deadline(flow, sim, abandoned)
    flow.query(ask(flow, sim, "q-2"))
    retried = pending_request_id(flow, sim)
    out = flow.release(flow.topics.rehome("NA"))
    out += flow.release()
    [answer] = answer_to(out, "q-2")
    assert answer["status"] == "SUCCESS"
    stored = flow.vehicles[sim.vin]
    assert (stored["state"], stored["request_id"]) == ("REGIONAL", retried)
    assert flow.regional["NA"][sim.vin]["request_id"] == retried
    assert ("NA", sim.primary.device_id) in flow.identities
    assert [(e["previous_state"], e["state"]) for e in lifecycle(flow.sent)] == [
        ("REGISTERED", "QRY_FAIL"), ("QRY_FAIL", "REGIONAL")]


def test_exact_duplicate_of_a_failed_query_gets_the_same_answer_and_event_id() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    first = flow.query(ask(flow, sim, "q-1", region="ZZ"))
    flow.advance(60)
    again = flow.query(ask(flow, sim, "q-1", region="ZZ"))
    assert reply_texts(again) == reply_texts(first)
    assert {e["event_id"] for e in lifecycle(again)} <= {e["event_id"] for e in lifecycle(first)}
    assert flow.vehicles[sim.vin]["sequence"] == 1


def test_base64_query_is_answered_in_base64() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    out = flow.query(ask(flow, sim, body_encoding_type=1))
    answer = only_reply(out)
    assert answer["property_bag"]["body_encoding_type"] == 1
    assert answer["body"]["iot_gateway_endpoint"] == NA_ENDPOINT
    assert isinstance(json.loads(reply_texts(out)[0])["body"], str)


def test_answers_and_events_are_keyed_by_vin() -> None:
    flow, sim = Flow(), vehicle()
    out = flow.homed(sim)
    assert {o.key for o in out if o.kind != "internal"} == {sim.vin}


def test_vin_whose_only_query_failed_can_be_claimed_by_another_system() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    flow.query(ask(flow, sim, "q-1", region="ZZ"))  # 6100: the query failed
    rival = dataclasses.replace(vehicle(2), vin=sim.vin)
    flow.register(rival)
    out = flow.query(ask(flow, rival, "q-rival"))
    assert only_reply(out)["status"] == "SUCCESS"


# --- wire compatibility (docs/spec.md 3.6): envelope v2 and the camelCase bag -------------------


@pytest.mark.parametrize("bag", ["propertyBag", "property_bag"])
def test_v2_query_is_answered_in_v2_after_the_region_confirms(bag: str) -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    raw = ask(flow, sim, "q-1", version="v2", bag_spelling=bag,
              region_info={"region_code": "na", "country_code": sim.country.lower()})
    out = flow.query(raw, key=sim.vin.encode())
    answer = only_reply(out)  # built from the reply-to kept in the table while the region works
    assert (answer["version"], answer["message_type"], answer["correlation_id"]) == (
        "v2", 3, "q-1")
    assert not {"vin", "ecu_type", "status"} & set(answer)
    assert bag in answer
    assert answer["body"]["iot_gateway_endpoint"] == NA_ENDPOINT
    stored = flow.vehicles[sim.vin]
    assert (stored["state"], stored["region"], stored["country_code"]) == (
        "REGIONAL", "NA", sim.country)


def test_v2_query_refused_is_answered_in_v2() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    raw = ask(flow, sim, "q-1", version="v2", bag_spelling="propertyBag", primary=False)
    answer = only_reply(flow.query(raw, key=sim.vin.encode()))
    assert (answer["version"], answer["message_type"]) == ("v2", 3)
    assert answer["propertyBag"]["errorCode"] == 13122
    assert answer["body"]["lifecyclestate"] == "QRY_FAIL"


def test_camel_case_v1_query_repeated_is_answered_again_in_its_spelling() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    answer = only_reply(flow.query(ask(flow, sim, "q-2", bag_spelling="propertyBag")))
    assert (answer["version"], answer["status"]) == ("v1", "SUCCESS")
    assert answer["propertyBag"] == {"bodyEncodingType": 0}
