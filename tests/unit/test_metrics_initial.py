"""A fresh worker's /metrics: every counter whose labels are known in advance is there at 0, so a
dashboard shows 0 and an alert on ``increase()`` sees the first event."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import (
    ANSWER_CODES,
    REQUEST_DEAD_LETTER_CODES,
    SHELL_DEAD_LETTER_CODES,
    Metrics,
)
from streams.shell import dead_letter_code
from tests.unit.flowkit import CONFIG, context
from vprov.core.codes import ErrorCode
from vprov.flows.common import dead_letter
from vprov.flows.context import Source
from vprov.flows.lifecycle import State, TransitionRefused
from vprov.kafka.catalogue import Catalogue

CAT = Catalogue(CONFIG)
VIN = "1VYBL0E0000000005"
# worker (region None: the global one) -> its request flow and the source flows of dead letters
WORKERS = {None: ("query", {"query", "registration", "internal"}),
           "NA": ("device", {"device", "internal"})}

Labels = frozenset[tuple[str, str]]


def exposed(metrics: Metrics) -> dict[str, dict[Labels, float]]:
    """The ``vprov_*_total`` samples of the text page, by name and label set."""
    text = generate_latest(metrics.registry).decode()
    found: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("vprov_") and s.name.endswith("_total"):
                found.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return found


def labels(**items: str) -> Labels:
    return frozenset(items.items())


@pytest.mark.parametrize("region", WORKERS)
def test_a_fresh_registry_exposes_every_known_counter_at_zero(region: str | None) -> None:
    metrics = Metrics(CAT, CONFIG, region)
    flow, dead_flows = WORKERS[region]
    name = metrics.region

    found = exposed(metrics)

    assert set(found) == {"vprov_requests_received_total", "vprov_requests_total",
                          "vprov_dead_letters_total", "vprov_lifecycle_events_total"}
    assert all(value == 0 for series in found.values() for value in series.values())
    assert set(found["vprov_requests_received_total"]) == {labels(region=name, flow=flow)}
    answers = {labels(region=name, flow=flow, outcome="fail", code=str(int(code)))
               for code in ANSWER_CODES} | {labels(region=name, flow=flow, outcome="success",
                                                   code="")}
    assert set(found["vprov_requests_total"]) == answers
    dead = found["vprov_dead_letters_total"]
    assert {dict(series)["flow"] for series in dead} == dead_flows
    assert {labels(region=name, flow=flow, code=str(int(code)))
            for code in REQUEST_DEAD_LETTER_CODES} <= set(dead)
    assert {labels(region=name, flow=other, code=str(int(code)))
            for other in dead_flows - {flow} for code in SHELL_DEAD_LETTER_CODES} <= set(dead)
    assert set(found["vprov_lifecycle_events_total"]) == \
        {labels(region=name, state=state.value) for state in State}


def test_every_code_a_request_can_carry_starts_at_zero() -> None:
    assert set(REQUEST_DEAD_LETTER_CODES) == set(ErrorCode)
    assert set(ANSWER_CODES) == set(ErrorCode) - {ErrorCode.INTERNAL_ERROR}


def test_the_shell_dead_letters_only_with_the_codes_started_for_every_flow() -> None:
    refused = TransitionRefused(State.ACTIVE, State.REGISTERED)

    assert {dead_letter_code(refused), dead_letter_code(RuntimeError("boom"))} == \
        set(SHELL_DEAD_LETTER_CODES)


def test_the_first_dead_letter_increments_its_zero_series() -> None:
    metrics = Metrics(CAT, CONFIG, "NA")
    before = exposed(metrics)["vprov_dead_letters_total"]
    source = Source(CAT.device("NA"), 0, 7, VIN.encode())
    event: Any = SimpleNamespace(message=SimpleNamespace(topic=CAT.device("NA"), key=VIN.encode(),
                                                    timestamp=None))

    metrics.count(event, [dead_letter(context(), source, b"junk", ErrorCode.NOT_JSON, None)])

    after = exposed(metrics)["vprov_dead_letters_total"]
    assert set(after) == set(before)
    assert after[labels(region="NA", flow="device", code="13113")] == 1
    assert sum(after.values()) == 1
