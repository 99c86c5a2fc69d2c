"""``vprov register FILE``: good lines become records, bad lines are reported by number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flowkit import CONFIG, SERDE, vehicle

from vprov.ops.registration_file import LineError, read_lines, to_record, validate
from vprov.sim import fleet


def good(index: int = 0, **changes: Any) -> dict[str, Any]:
    return {**fleet.registrations(vehicle())[index], **changes}


def line(doc: Any) -> str:
    return json.dumps(doc) + "\n"


def without(name: str) -> dict[str, Any]:
    doc = good()
    del doc[name]
    return doc


def test_good_lines_become_records() -> None:
    docs = [good(0), good(1, home_region="EU")]
    results = list(read_lines([line(d) for d in docs], CONFIG))
    assert [r["device_id"] for r in results] == [d["device_id"] for d in docs]
    first, second = results
    assert isinstance(first, dict) and isinstance(second, dict)
    assert {k: first[k] for k in docs[0]} == docs[0]
    assert first["home_region"] is None
    assert second["home_region"] == "EU"
    assert isinstance(first["registered_at"], int)


def test_records_fit_the_registration_schema() -> None:
    record = to_record(good(0, home_region="AP"), now_ms=1_700_000_000_000)
    decoded = SERDE.decode("DeviceRegistration", SERDE.encode("DeviceRegistration", record))
    assert decoded["device_id"] == record["device_id"]
    assert decoded["home_region"] == "AP"


def test_to_record_uses_the_given_time() -> None:
    assert to_record(good(), now_ms=42)["registered_at"] == 42


BAD_LINES: list[Any] = [
    pytest.param("{not json", "not valid JSON", id="bad JSON"),
    pytest.param(line([good()]), "not a JSON object", id="not an object"),
    pytest.param(line(without("certificate_fingerprint")), "certificate_fingerprint is missing",
                 id="missing certificate_fingerprint"),
    pytest.param(line(without("primary")), "primary is missing", id="missing primary"),
    pytest.param(line(without("system_id")), "system_id is missing", id="missing system_id"),
    pytest.param(line(good(system_id="sys 01")), "system_id='sys 01'",
                 id="identifier with a space"),
    pytest.param(line(good(device_id="d" * 20)), "device_id=", id="device_id too long"),
    pytest.param(line(good(sub_system_id="")), "sub_system_id=", id="empty sub_system_id"),
    pytest.param(line(good(ecu_type="TOASTER")), "ecu_type='TOASTER'", id="unknown ECU type"),
    pytest.param(line(good(primary="yes")), "primary must be true or false",
                 id="non-bool primary"),
    pytest.param(line(good(primary=1)), "primary must be true or false", id="int primary"),
    pytest.param(line(good(certificate_fingerprint=" ")), "certificate_fingerprint",
                 id="blank fingerprint"),
    pytest.param(line(good(home_region="MARS")), "home_region='MARS'",
                 id="unknown home_region"),
]


@pytest.mark.parametrize(("bad", "problem"), BAD_LINES)
def test_bad_line_is_reported_with_its_number_and_the_rest_continue(bad: str,
                                                                    problem: str) -> None:
    lines = [line(good(0)), bad, line(good(1))]
    results = list(read_lines(lines, CONFIG))
    assert len(results) == 3
    first, error, last = results
    assert isinstance(error, LineError)
    assert error.line == 2
    assert problem in error.problem
    assert str(error).startswith("line 2: ")
    assert isinstance(first, dict) and isinstance(last, dict)
    assert last["device_id"] == good(1)["device_id"]


def test_blank_lines_are_skipped_but_counted() -> None:
    results = list(read_lines(["\n", line(good(0)), "   \n", "{oops\n"], CONFIG))
    assert len(results) == 2
    assert isinstance(results[1], LineError) and results[1].line == 4


def test_every_bad_line_of_a_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "registrations.jsonl"
    path.write_text("".join([
        line(good(0)), "{bad\n", line(good(1, ecu_type="FRIDGE")), line(good(1)),
        line(good(0, home_region="XX")),
    ]), encoding="utf-8")
    with path.open(encoding="utf-8") as lines:
        results = list(read_lines(lines, CONFIG))
    assert [r.line for r in results if isinstance(r, LineError)] == [2, 3, 5]
    assert len([r for r in results if isinstance(r, dict)]) == 2


def test_validate_accepts_a_good_document() -> None:
    assert validate(good(), CONFIG) is None
    assert validate(good(home_region="NA"), CONFIG) is None
