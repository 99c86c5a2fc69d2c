"""Internal commands: the JSON they have always had on the topics, and nothing else decodes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flowkit import registration_of, vehicle

from streams.shell import encode_internal
from vprov.core import commands
from vprov.core.commands import (
    Bind,
    CommandError,
    HoldDeadline,
    Join,
    Leave,
    Matched,
    MatchFailed,
    QueryHop,
    RehomeDeadline,
    Remove,
    Upsert,
)
from vprov.core.envelope import ProvisionQuery, ReplyTo

REG = registration_of(vehicle(), 0)
QUERY = ProvisionQuery(system_id="sys-1", sub_system_id="sub-1", vin="1VTESTA0000000001",
                       device_id="d-1", ecu_type="TCU", primary=True, region_code="NA",
                       country_code="US")
REPLY_TO = ReplyTo(message_id="q-1", system_id="sys-1", sub_system_id="sub-1",
                   vin="1VTESTA0000000001", device_id="d-1", ecu_type="TCU",
                   body_encoding_type=0)
QUERY_JSON = {"query": {"system_id": "sys-1", "sub_system_id": "sub-1",
                        "vin": "1VTESTA0000000001", "device_id": "d-1", "ecu_type": "TCU",
                        "primary": True, "region_code": "NA", "country_code": "US"},
              "reply_to": {"message_id": "q-1", "system_id": "sys-1", "sub_system_id": "sub-1",
                           "vin": "1VTESTA0000000001", "device_id": "d-1", "ecu_type": "TCU",
                           "body_encoding_type": 0, "version": REPLY_TO.version,
                           "bag_spelling": REPLY_TO.bag_spelling},
              "hops": 1}

# (command, the JSON the topics carry, the decoder of its topic)
WIRE: list[Any] = [
    pytest.param(Upsert(REG), {"op": "upsert", "registration": dict(REG)},
                 commands.decode_index, id="upsert"),
    pytest.param(Remove("d-1"), {"op": "remove", "device_id": "d-1"},
                 commands.decode_index, id="remove"),
    pytest.param(Bind("V1", ("d-1", "d-2")), {"op": "bind", "vin": "V1", "devices": ["d-1", "d-2"]},
                 commands.decode_index, id="bind"),
    pytest.param(QueryHop(QUERY, REPLY_TO, 1), QUERY_JSON, commands.decode_query_hop,
                 id="query hop"),
    pytest.param(Matched(QUERY, REPLY_TO, 1, (REG,)),
                 {**QUERY_JSON, "kind": "matched", "devices": [dict(REG)]},
                 commands.decode_vehicle, id="matched"),
    pytest.param(MatchFailed(QUERY, REPLY_TO, 1, 13111, "device_id d-1"),
                 {**QUERY_JSON, "kind": "match_failed", "code": 13111,
                  "detail": "device_id d-1"},
                 commands.decode_vehicle, id="match failed"),
    pytest.param(RehomeDeadline("req-1"), {"kind": "deadline", "request_id": "req-1"},
                 commands.decode_vehicle, id="rehome deadline"),
    pytest.param(Join("c-1", "d-1", REG),
                 {"kind": "join", "command_id": "c-1", "device_id": "d-1",
                  "registration": dict(REG)},
                 commands.decode_vehicle, id="join"),
    pytest.param(Leave("c-1", "d-1"), {"kind": "leave", "command_id": "c-1", "device_id": "d-1"},
                 commands.decode_vehicle, id="leave"),
    pytest.param(HoldDeadline(), {"kind": "hold-deadline"}, commands.decode_regional,
                 id="hold deadline"),
]


@pytest.mark.parametrize(("command", "wire", "decode"), WIRE)
def test_a_command_keeps_its_json_on_the_topic(command: Any, wire: dict[str, Any],
                                               decode: Any) -> None:
    assert encode_internal(command.to_json()) == encode_internal(wire)
    raw = json.dumps(wire).encode()
    assert decode(raw) == command
    assert decode(wire) == command


@pytest.mark.parametrize(("raw", "decode"), [
    pytest.param(b'{"kind": "reboot"}', commands.decode_vehicle, id="unknown vehicle kind"),
    pytest.param(b'{"op": "rename"}', commands.decode_index, id="unknown index op"),
    pytest.param(b'{"kind": "deadline"}', commands.decode_regional, id="a vehicle kind, regional"),
    pytest.param(b"{}", commands.decode_vehicle, id="no kind"),
    pytest.param(b'{"kind": "deadline"}', commands.decode_vehicle, id="a deadline without its id"),
    pytest.param(b'{"kind": "matched", "query": {}, "reply_to": {}}', commands.decode_vehicle,
                 id="a match without its query"),
    pytest.param(b'{"query": {"vin": "V"}, "reply_to": {}}', commands.decode_query_hop,
                 id="a query hop missing fields"),
    pytest.param(b"not json", commands.decode_vehicle, id="not JSON"),
    pytest.param(b"[1]", commands.decode_index, id="not an object"),
    pytest.param(None, commands.decode_regional, id="no value"),
])
def test_what_is_not_a_command_of_its_topic_is_refused(raw: bytes | None, decode: Any) -> None:
    with pytest.raises(CommandError):
        decode(raw)
