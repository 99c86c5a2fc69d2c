"""The audit fold of ``vprov replay --verify``: hand-built histories through the workers' state
machine, and their comparison with the tables' records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vprov.ops.audit import compare, fold, parse_since
from vprov.ops.lifecycle_events import dedupe, histories

VIN = "1HGCM82633A004352"
TCU = "TCU-0000000001"
IVI = "IVI-0000000002"
FRIDGE = "FRG-0000000003"


def event(seq: int, state: str, previous: str | None, device_id: str | None = None,
          partition: str = "NA", event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"e-{seq}-{device_id or 'v'}-{state}",
        "vin": VIN,
        "system_id": "c2c-sys-00000001",
        "device_id": device_id,
        "partition": "global" if device_id is None else partition,
        "state": state,
        "previous_state": previous,
        "error_code": None,
        "cause_message_id": f"m-{seq}",
        "sequence": seq,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def clean_history() -> list[dict[str, Any]]:
    return [
        event(1, "REGIONAL", "REGISTERED"),
        event(2, "PROVISIONED", "REGIONAL", TCU),
        event(3, "PROVISIONED", "REGIONAL", IVI),
        event(4, "ACTIVE", "REGIONAL", FRIDGE),
    ]


def tables(devices: dict[str, str] | None = None, global_state: str = "REGIONAL",
           global_seq: int = 1, regional_seq: int = 4) -> tuple[dict[str, Any], dict[str, Any]]:
    devices = devices or {TCU: "PROVISIONED", IVI: "PROVISIONED", FRIDGE: "ACTIVE"}
    global_view = {"vin": VIN, "state": global_state, "region": "NA", "sequence": global_seq}
    regional_view = {"vin": VIN, "sequence": regional_seq,
                     "devices": {d: {"state": s} for d, s in devices.items()}}
    return global_view, regional_view


def kinds(problems: list[Any]) -> list[str]:
    return [p.kind for p in problems]


def test_clean_history_folds_to_the_tables_state_without_problems() -> None:
    folded = fold(VIN, clean_history())
    assert folded.problems == []
    assert folded.vehicle_state == "REGIONAL"
    assert folded.devices == {TCU: "PROVISIONED", IVI: "PROVISIONED", FRIDGE: "ACTIVE"}
    assert folded.last_sequence == 4
    assert compare(folded, *tables(), region="NA") == []


def test_failed_query_then_retry_is_a_clean_history() -> None:
    history = [event(1, "QRY_FAIL", "REGISTERED"), event(2, "REGIONAL", "QRY_FAIL"),
               event(3, "PROV_FAIL", "REGIONAL", TCU), event(4, "PROVISIONED", "PROV_FAIL", TCU)]
    folded = fold(VIN, history)
    assert folded.problems == []
    global_view, regional_view = tables({TCU: "PROVISIONED"}, global_seq=2)
    assert compare(folded, global_view, regional_view, "NA") == []


def test_refused_transition_is_reported_and_changes_nothing() -> None:
    # a device already PROVISIONED cannot fall back to PROV_FAIL (5000)
    history = [*clean_history(), event(5, "PROV_FAIL", "PROVISIONED", TCU)]
    folded = fold(VIN, history)
    assert kinds(folded.problems) == ["refused"]
    assert "PROVISIONED -> PROV_FAIL" in folded.problems[0].detail
    assert "5000" in folded.problems[0].detail
    assert folded.devices[TCU] == "PROVISIONED"


def test_refused_vehicle_transition_from_registered() -> None:
    folded = fold(VIN, [event(1, "PROVISIONED", "REGISTERED")])
    assert kinds(folded.problems) == ["refused"]
    assert folded.vehicle_state == "REGISTERED"


def test_missing_event_is_reported_as_a_gap() -> None:
    history = [e for e in clean_history() if e["sequence"] != 2]
    folded = fold(VIN, history)
    assert kinds(folded.problems) == ["gap"]
    assert "sequence 2 missing before #3" in folded.problems[0].detail


def test_missing_events_at_the_start_are_a_gap() -> None:
    folded = fold(VIN, clean_history()[2:])
    assert "gap" in kinds(folded.problems)
    assert "sequence 1..2 missing" in folded.problems[0].detail


def test_missing_last_event_shows_against_the_table_sequence() -> None:
    folded = fold(VIN, clean_history()[:-1])
    assert folded.problems == []
    problems = compare(folded, *tables(), region="NA")
    assert sorted(kinds(problems)) == ["gap", "mismatch"]
    assert any(f"device {FRIDGE}: events end in REGIONAL" in p.detail for p in problems)


def test_state_that_differs_from_the_table_is_reported() -> None:
    folded = fold(VIN, clean_history())
    global_view, regional_view = tables({TCU: "PROVISIONED", IVI: "PROV_FAIL",
                                         FRIDGE: "ACTIVE"})
    problems = compare(folded, global_view, regional_view, "NA")
    assert kinds(problems) == ["mismatch"]
    assert problems[0].detail == (f"device {IVI}: events end in PROVISIONED, region NA table "
                                  "says PROV_FAIL")


def test_vehicle_state_that_differs_from_the_global_table_is_reported() -> None:
    folded = fold(VIN, clean_history())
    global_view, regional_view = tables(global_state="QRY_FAIL")
    problems = compare(folded, global_view, regional_view, "NA")
    assert kinds(problems) == ["mismatch"]
    assert "global table says QRY_FAIL" in problems[0].detail


def test_records_missing_from_the_tables_are_reported() -> None:
    folded = fold(VIN, clean_history())
    assert kinds(compare(folded, None, None, "NA")) == ["missing", "missing"]


def test_a_second_event_with_the_same_sequence_is_reported() -> None:
    history = [*clean_history(), event(4, "ACTIVE", "REGIONAL", FRIDGE, event_id="forged")]
    folded = fold(VIN, sorted(history, key=lambda e: e["sequence"]))
    assert "duplicate-sequence" in kinds(folded.problems)


def test_previous_state_that_disagrees_with_the_history_is_reported() -> None:
    history = [event(1, "REGIONAL", "REGISTERED"), event(2, "PROVISIONED", "PROV_FAIL", TCU)]
    folded = fold(VIN, history)
    assert kinds(folded.problems) == ["previous-state"]


def test_device_event_before_the_vehicle_is_regional() -> None:
    folded = fold(VIN, [event(1, "PROVISIONED", "REGIONAL", TCU)])
    assert kinds(folded.problems) == ["order"]


def test_partial_history_starts_from_its_first_events() -> None:
    folded = fold(VIN, clean_history()[2:], from_start=False)
    assert folded.problems == []
    assert folded.vehicle_state is None
    assert folded.devices == {IVI: "PROVISIONED", FRIDGE: "ACTIVE"}


def test_repeated_events_are_dropped_by_event_id() -> None:
    history = clean_history()
    unique, repeats = dedupe([*history, history[1], {"undecodable": "t:0:9"}])
    assert unique == history
    assert repeats == 1


def test_histories_group_by_vin_and_order_by_sequence() -> None:
    other = {**event(1, "REGIONAL", "REGISTERED"), "vin": "2HGCM82633A004352"}
    grouped = histories(list(reversed(clean_history())) + [other])
    assert list(grouped) == [VIN, "2HGCM82633A004352"]
    assert [e["sequence"] for e in grouped[VIN]] == [1, 2, 3, 4]


def test_since_without_zone_is_utc() -> None:
    assert parse_since("2026-01-01T00:00:00") == parse_since("2026-01-01T00:00:00+00:00") \
        == 1767225600000


def test_a_device_that_joins_late_and_one_that_leaves_fold_cleanly() -> None:
    late = "ADAS-000000000004"
    history = [event(1, "REGIONAL", "REGISTERED"), event(2, "PROVISIONED", "REGIONAL", TCU),
               event(3, "REGIONAL", None, late), event(4, "PROVISIONED", "REGIONAL", late),
               event(5, "REMOVED", "REGIONAL", IVI)]
    folded = fold(VIN, history)
    assert folded.problems == []
    assert folded.devices == {TCU: "PROVISIONED", late: "PROVISIONED", IVI: "REMOVED"}
    regional = {"devices": {TCU: {"state": "PROVISIONED"}, late: {"state": "PROVISIONED"}},
                "sequence": 5}
    assert compare(folded, {"state": "REGIONAL", "sequence": 1}, regional, "NA") == []
    # the table still holding the device that left is a mismatch
    regional["devices"][IVI] = {"state": "REGIONAL"}
    assert [p.kind for p in compare(folded, {"state": "REGIONAL", "sequence": 1}, regional,
                                    "NA")] == ["mismatch"]


def test_a_join_of_a_device_already_in_the_vehicle_is_reported() -> None:
    history = [event(1, "REGIONAL", "REGISTERED"), event(2, "PROVISIONED", "REGIONAL", TCU),
               event(3, "REGIONAL", None, TCU)]
    assert [p.kind for p in fold(VIN, history).problems] == ["order"]
