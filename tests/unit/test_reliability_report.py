"""The three-broker page's verdicts are read from each scenario's figures."""

from __future__ import annotations

from tests.reliability.report import render, target_met, timelines

CLEAN = {"lost_answers": 0, "dead_letters": 0, "worker_restarts": 0}


def test_met_when_every_longest_answer_is_within_the_target_and_nothing_was_harmed() -> None:
    row = {**CLEAN, "longest_query_answer_seconds": 9.9, "longest_device_answer_seconds": 4.0}
    assert target_met(row, 10.0) == "yes"


def test_not_met_when_one_kind_of_answer_waited_longer() -> None:
    row = {**CLEAN, "longest_query_answer_seconds": 3.0, "longest_device_answer_seconds": 10.5}
    assert target_met(row, 10.0) == "no"


def test_not_met_when_a_figure_of_harm_is_missing_or_not_zero() -> None:
    fast = {"longest_query_answer_seconds": 1.0}
    assert target_met({**fast, "lost_answers": 0, "dead_letters": 0}, 5.0) == "no"
    assert target_met({**CLEAN, **fast, "dead_letters": 2}, 5.0) == "no"


def test_unknown_when_the_scenario_failed_before_any_answer() -> None:
    assert target_met(dict(CLEAN), 5.0) == "?"


def test_a_timeline_names_the_harm_and_the_slowest_answers() -> None:
    line = {"started_at": "14:36:51", "harm": [[3.09, "kill kafka-3"], [7.1, "leaders moved"]],
            "slowest": [[1.72, 7.38, "query"]]}
    out = timelines([("test_one_broker_sigkilled_quick", {"timeline": line}),
                     ("test_no_harm_baseline", {})])
    assert out[2] == ("- `one_broker_sigkilled_quick` (fleet started 14:36:51): 3.09 kill "
                      "kafka-3; 7.1 leaders moved. Slowest: 7.38 s query at 1.72.")
    assert len(out) == 4  # the heading, a blank line, the one timeline, a blank line


def test_the_single_broker_page_points_to_the_three_broker_one_and_not_the_reverse() -> None:
    row = {"scenario": "test_no_harm_baseline", **CLEAN, "audit": "clean"}
    assert "reliability-3-brokers.md" in render([row], "make reliability", 1)
    assert "reliability-3-brokers.md" not in render([row], "make reliability BROKERS=3", 3)
