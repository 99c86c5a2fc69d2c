"""Which dead letters a selection takes, and how a payload is shown."""

from __future__ import annotations

from vprov.ops.deadletter import Selection, payload_text

LETTER = {"dead_letter_id": "d-1", "error_code": 13113, "source_topic": "provisioning.device.NA",
          "received_at": 1_700_000_000_000}


def test_every_given_criterion_must_hold() -> None:
    assert Selection().matches(LETTER) and Selection().empty
    assert Selection(code=13113, source_topic="provisioning.device.NA").matches(LETTER)
    assert not Selection(code=9000).matches(LETTER)
    assert not Selection(ids=frozenset({"d-2"})).matches(LETTER)
    assert not Selection(code=13113, source_topic="provisioning.query").matches(LETTER)
    assert Selection(since_ms=1_700_000_000_000).matches(LETTER)
    assert not Selection(since_ms=1_700_000_000_001).matches(LETTER)
    assert not Selection(code=1).empty


def test_a_payload_is_shown_as_json_text_or_escaped_bytes() -> None:
    assert payload_text(b'{"b":1,"a":2}') == '{\n  "a": 2,\n  "b": 1\n}'
    assert payload_text(b"not json") == "not json"
    assert payload_text(b"\xff\x00") == "b'\\xff\\x00'"
