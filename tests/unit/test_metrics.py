"""The worker metrics: what the shell sends is counted by flow, code and state, answers are timed
from their request's record, and each app keeps its own registry."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import (
    SCRAPED,
    Metrics,
    Waiting,
    WorkerCollector,
    sample_names,
)
from streams.repairs import faust_contract
from tests.unit.flowkit import CONFIG, context
from vprov.core import envelope
from vprov.core.codes import ErrorCode
from vprov.core.envelope import ReplyTo, response_error_code
from vprov.core.outputs import Output, event, internal
from vprov.flows.common import dead_letter, failure_reply, success_reply
from vprov.flows.context import Source
from vprov.flows.lifecycle import State, advance
from vprov.kafka.catalogue import Catalogue
from vprov.ops.funnel import format_funnels, funnels

CAT = Catalogue(CONFIG)
VIN = "1VYBL0E0000000005"


def record(topic: str, key: str | None = VIN, age: float = 0.0) -> Any:
    """An input record as Faust hands it to the shell, ``age`` seconds old."""
    return SimpleNamespace(message=SimpleNamespace(
        topic=topic, key=key.encode() if key else None, timestamp=time.time() - age))


def reply_to(message_id: str = "m1", version: str = envelope.VERSION,
             bag: str = envelope.BAG_SNAKE) -> ReplyTo:
    return ReplyTo(message_id=message_id, system_id="c2c-sys-00000001", sub_system_id="s1",
                   vin=VIN, device_id="dtcu0001", ecu_type="TCU", body_encoding_type=0,
                   version=version, bag_spelling=bag)


def query_failure(code: ErrorCode, message_id: str = "m1") -> Output:
    return failure_reply(context(), topic=CAT.query_response, reply_to=reply_to(message_id),
                         response_type=envelope.PROVISION_QUERY_RESPONSE, code=code,
                         detail="detail", fallback_id="")


def query_success(message_id: str = "m1") -> Output:
    return success_reply(context(), topic=CAT.query_response, reply_to=reply_to(message_id),
                         response_type=envelope.PROVISION_QUERY_RESPONSE,
                         body=envelope.query_response_body("mqtts://na", "REGIONAL"))


def device_answer(message_id: str, region: str = "NA") -> Output:
    return success_reply(context(), topic=CAT.device_response(region),
                         reply_to=reply_to(message_id),
                         response_type=envelope.DEVICE_PROVISION_RESPONSE,
                         body=envelope.device_response_body("PROVISIONED"))


def rehome_request(action: str) -> Output:
    return event(CAT.rehome("NA"), VIN, "RehomeRequest", {"action": action, "vin": VIN})


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"region": metrics.region, **labels})
    return 0.0 if value is None else value


def test_a_refused_request_is_counted_by_code_and_timed_from_its_record() -> None:
    metrics = Metrics(CAT, CONFIG, None)
    metrics.count(record(CAT.query, age=2.0), [query_failure(ErrorCode.QUERY_VIN_INVALID)])

    assert sample(metrics, "vprov_requests_received_total", flow="query") == 1
    assert sample(metrics, "vprov_requests_total", flow="query", outcome="fail",
                  code="13101") == 1
    assert sample(metrics, "vprov_requests_total", flow="query", outcome="success", code="") == 0
    assert sample(metrics, "vprov_request_latency_seconds_count", flow="query") == 1
    assert 2.0 <= sample(metrics, "vprov_request_latency_seconds_sum", flow="query") < 3.0


def test_a_query_answered_after_its_hops_is_timed_from_the_query_record() -> None:
    metrics = Metrics(CAT, CONFIG, None)
    metrics.count(record(CAT.query, age=5.0),
                  [internal(CAT.query_by_system, "c2c-sys-00000001", {})])
    assert sample(metrics, "vprov_request_latency_seconds_count", flow="query") == 0

    metrics.count(record(CAT.rehome_result), [query_success()])

    assert sample(metrics, "vprov_requests_total", flow="query", outcome="success", code="") == 1
    assert sample(metrics, "vprov_request_latency_seconds_count", flow="query") == 1
    assert 5.0 <= sample(metrics, "vprov_request_latency_seconds_sum", flow="query") < 6.0
    assert len(metrics.waiting) == 0


def test_held_secondaries_answered_with_their_primary_are_timed_from_their_own_records() -> None:
    metrics = Metrics(CAT, CONFIG, "NA")
    metrics.count(record(CAT.device("NA"), age=10.0), [])  # secondary: held
    metrics.count(record(CAT.device("NA"), age=1.0),
                  [device_answer("primary"), device_answer("secondary")])

    assert sample(metrics, "vprov_requests_received_total", flow="device") == 2
    assert sample(metrics, "vprov_requests_total", flow="device", outcome="success",
                  code="") == 2
    assert sample(metrics, "vprov_request_latency_seconds_count", flow="device") == 2
    # 1 s for the primary's own answer, 10 s for the held one
    assert 11.0 <= sample(metrics, "vprov_request_latency_seconds_sum", flow="device") < 12.0


def test_an_unanswerable_request_is_a_dead_letter_of_its_flow_and_does_not_wait() -> None:
    metrics = Metrics(CAT, CONFIG, "NA")
    source = Source(CAT.device("NA"), 0, 7, VIN.encode())
    metrics.count(record(CAT.device("NA")),
                  [dead_letter(context(), source, b"junk", ErrorCode.NOT_JSON, None)])

    assert sample(metrics, "vprov_dead_letters_total", flow="device", code="13113") == 1
    assert len(metrics.waiting) == 0


def test_lifecycle_events_are_counted_by_state() -> None:
    metrics = Metrics(CAT, CONFIG, "NA")
    entry = {"vin": VIN, "system_id": "s", "region": "NA", "sequence": 1,
             "devices": {d: {"device_id": d, "state": State.REGIONAL.value} for d in ("a", "b")}}
    events = [advance(context(), entry, State.PROVISIONED, "m", device_id=d)[1]
              for d in ("a", "b")]
    metrics.count(record(CAT.device("NA")), [*events, device_answer("m")])

    assert sample(metrics, "vprov_lifecycle_events_total", state="PROVISIONED") == 2


def test_the_rehome_round_trip_runs_from_the_register_to_its_result() -> None:
    metrics = Metrics(CAT, CONFIG, None)
    metrics.count(record(CAT.vehicle_commands), [rehome_request("REGISTER")])
    metrics.count(record(CAT.query, age=0.0), [rehome_request("REGISTER")])  # re-sent: same
    metrics.count(record(CAT.rehome_result), [])
    metrics.count(record(CAT.rehome_result), [])  # a second result has nothing to time

    assert sample(metrics, "vprov_rehome_roundtrip_seconds_count") == 1


def test_a_cancelled_rehome_is_not_timed() -> None:
    metrics = Metrics(CAT, CONFIG, None)
    metrics.count(record(CAT.vehicle_commands), [rehome_request("REGISTER")])
    metrics.count(record(CAT.vehicle_commands), [rehome_request("CANCEL")])
    metrics.count(record(CAT.rehome_result), [])

    assert sample(metrics, "vprov_rehome_roundtrip_seconds_count") == 0


def test_two_workers_in_one_process_keep_their_own_counts() -> None:
    na, eu = Metrics(CAT, CONFIG, "NA"), Metrics(CAT, CONFIG, "EU")
    na.count(record(CAT.device("NA")), [device_answer("m")])

    assert sample(na, "vprov_requests_received_total", flow="device") == 1
    assert sample(eu, "vprov_requests_received_total", flow="device") == 0
    families = {f.name for f in text_string_to_metric_families(
        generate_latest(na.registry).decode())}
    assert {"vprov_requests", "vprov_request_latency_seconds", "vprov_dead_letters",
            "vprov_lifecycle_events", "vprov_rehome_roundtrip_seconds"} <= families


def test_waiting_times_are_dropped_after_the_limit() -> None:
    waiting = Waiting(limit=60)
    waiting.add("a", 1.0, now=1000.0)
    waiting.add("b", 2.0, now=1050.0)
    waiting.prune(now=1070.0)

    assert waiting.take("a") is None
    assert waiting.take("b") == 2.0


@pytest.mark.parametrize("version", envelope.VERSIONS)
@pytest.mark.parametrize("bag", [envelope.BAG_SNAKE, envelope.BAG_CAMEL])
def test_response_error_code_reads_every_dialect(version: str, bag: str) -> None:
    to = reply_to(version=version, bag=bag)
    failed = envelope.build_response(to, message_type=envelope.PROVISION_QUERY_RESPONSE,
                                     message_id="r", now=1, body={}, error=(13111, "x"))
    ok = envelope.build_response(to, message_type=envelope.PROVISION_QUERY_RESPONSE,
                                 message_id="r", now=1, body={})

    assert response_error_code(failed.decode()) == 13111
    assert response_error_code(ok.decode()) is None


def test_response_error_code_ignores_the_key_inside_a_string_value() -> None:
    to = reply_to(message_id='x"error_code":42')
    ok = envelope.build_response(to, message_type=envelope.PROVISION_QUERY_RESPONSE,
                                 message_id="r", now=1, body={})

    assert response_error_code(ok.decode()) is None


class NoConsumer:
    @property
    def consumer(self) -> Any:
        raise RuntimeError("not started")


@pytest.mark.parametrize("region", [None, "NA"])
def test_the_scraped_families_are_the_listed_ones(region: str | None) -> None:
    metrics = Metrics(CAT, CONFIG, region)
    app = NoConsumer()
    app.rebalancing = False  # type: ignore[attr-defined]
    app.tables = {}  # type: ignore[attr-defined]
    shell = SimpleNamespace(processed=3, forwarded=1, retries=0)
    families = list(WorkerCollector(app, shell, metrics).collect())  # type: ignore[arg-type]

    assert {f.name for f in families} <= set(SCRAPED)
    waiting = {"vprov_pending_rehomes", "vprov_pending_queries"} if region is None else \
        {"vprov_held_requests"}
    assert set(SCRAPED) - {f.name for f in families} == \
        {"vprov_pending_rehomes", "vprov_pending_queries", "vprov_held_requests"} - waiting
    assert {f.type for f in families if f.name == "vprov_retries"} == {"counter"}
    assert "vprov_requests_total" in sample_names(metrics)
    assert "vprov_consumer_lag" in sample_names(metrics)


def test_the_funnel_sums_every_worker_by_flow() -> None:
    glob, na = Metrics(CAT, CONFIG, None), Metrics(CAT, CONFIG, "NA")
    glob.count(record(CAT.query, age=1.0), [query_failure(ErrorCode.QUERY_VIN_INVALID)])
    glob.count(record(CAT.query), [query_success()])
    glob.count(record(CAT.query), [])  # still waiting: counted as in flight here
    source = Source(CAT.device("NA"), 0, 7, VIN.encode())
    na.count(record(CAT.device("NA")),
             [dead_letter(context(), source, b"junk", ErrorCode.NOT_JSON, None)])
    samples = [(s.name, s.labels, s.value)
               for metrics in (glob, na) for family in metrics.registry.collect()
               for s in family.samples]

    found = funnels(samples)

    query = found["query"]
    assert (query.received, query.success, query.failure, query.in_flight) == (3, 1, 1, 1)
    assert (found["device"].received, found["device"].dead_lettered) == (1, 1)
    assert format_funnels(found).splitlines() == [
        "query   received 3 = answered 1 + failed 1 + dead-lettered 0 + waiting 0 "
        "+ in flight 1",
        "device  received 1 = answered 0 + failed 0 + dead-lettered 1 + held 0",
    ]


def test_the_installed_faust_has_what_the_table_sizes_read() -> None:
    # the start-up check (streams/repairs/faust_contract.py) raises, naming the versions, when it
    # is gone
    assert "Store._dbs_for_actives (method)" in [r.label() for r in faust_contract.REQUIRED]
    faust_contract.check()


def test_operations_doc_names_exactly_the_exported_metrics() -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    named = set(re.findall(r"\bvprov_[a-z_]+[a-z]", doc))
    exported = sample_names(Metrics(CAT, CONFIG, None))
    families = {n.removesuffix("_bucket") for n in exported if n.endswith("_bucket")}

    assert named <= exported | families, named - exported - families
    undocumented = {n for n in exported if not n.endswith(("_bucket", "_count", "_sum"))} - named
    assert undocumented == set()


def test_a_record_that_cannot_be_counted_does_not_stop_the_input() -> None:
    metrics = Metrics(CAT, CONFIG, "NA")
    broken = Output("event", CAT.lifecycle, VIN, {}, record="LifecycleEvent")  # no state

    metrics.count(record(CAT.device("NA")), [broken])  # does not raise

    assert metrics.errors == 1
