"""The LeaveGroup request (version 3) a static member sends when it stops, byte for byte as
Kafka's protocol defines it, and the coordinator's leave that sends it."""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors

from streams.repairs import static_leave
from streams.repairs.static_leave import (
    LeaveGroupRequest_v3,
    LeaveGroupResponse_v3,
    StaticLeaveRequest,
)


def kafka_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def test_the_request_is_version_3_of_leave_group_with_the_member_s_instance_id() -> None:
    built = StaticLeaveRequest("g", "m-1", "g.host-1").prepare({13: (0, 5)})
    assert (built.API_KEY, built.API_VERSION) == (13, 3)
    assert built.encode() == (kafka_string("g") + struct.pack(">i", 1) + kafka_string("m-1")
                              + kafka_string("g.host-1"))


def test_a_broker_without_version_3_is_not_sent_it(caplog: Any) -> None:
    with pytest.raises(NotImplementedError):
        StaticLeaveRequest("g", "m", "i").prepare({13: (0, 2)})
    coordinator = Coordinator("g.host-1", 4, NotImplementedError("LeaveGroupRequest v0"))
    asyncio.run(static_leave.leave_as_static_member(coordinator))  # the stop goes on
    assert coordinator.generation == -1
    assert "could not leave group g" in caplog.text


def response(group_error: int, member_error: int) -> Any:
    body = (struct.pack(">ih", 0, group_error) + struct.pack(">i", 1) + kafka_string("m")
            + kafka_string("i") + struct.pack(">h", member_error))
    return LeaveGroupResponse_v3.decode(body)


def test_an_error_for_the_group_or_the_member_is_named() -> None:
    assert static_leave.leave_error(response(0, 0)) is None
    assert static_leave.leave_error(response(0, 25)) == "UnknownMemberIdError"
    assert static_leave.leave_error(response(16, 0)) == "NotCoordinatorForGroupError"


class Coordinator:
    """aiokafka's GroupCoordinator as far as the leave goes."""

    def __init__(self, instance: str | None, generation: int, answer: Any) -> None:
        self._group_instance_id = instance
        self.generation = generation
        self.group_id = "g"
        self.member_id = "m"
        self.sent: list[Any] = []
        self.answer = answer
        self._maybe_leave_group = "aiokafka's own"

    async def _send_req(self, request: Any) -> Any:
        self.sent.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def reset_generation(self) -> None:
        self.generation = -1


def test_a_static_member_leaves_its_group_when_its_consumer_stops() -> None:
    coordinator = Coordinator("g.host-1", 4, response(0, 0))
    static_leave.leave_when_stopped(SimpleNamespace(_coordinator=coordinator))
    asyncio.run(coordinator._maybe_leave_group())  # what aiokafka's close calls
    [request] = coordinator.sent
    assert (request.group, request.member_id, request.instance_id) == ("g", "m", "g.host-1")
    assert coordinator.generation == -1


def test_a_dynamic_member_keeps_aiokafka_s_own_leave() -> None:
    coordinator = Coordinator(None, 4, response(0, 0))
    static_leave.leave_when_stopped(SimpleNamespace(_coordinator=coordinator))
    assert coordinator._maybe_leave_group == "aiokafka's own"


def test_a_failed_leave_does_not_stop_the_stop(caplog: Any) -> None:
    coordinator = Coordinator("g.host-1", 4, errors.KafkaConnectionError())
    asyncio.run(static_leave.leave_as_static_member(coordinator))
    assert coordinator.generation == -1
    assert "could not leave group g" in caplog.text


def test_a_member_that_never_joined_sends_nothing() -> None:
    coordinator = Coordinator("g.host-1", 0, response(0, 0))
    asyncio.run(static_leave.leave_as_static_member(coordinator))
    assert coordinator.sent == []


def test_the_response_schema_decodes_a_response_of_two_members() -> None:
    body = (struct.pack(">ih", 7, 0) + struct.pack(">i", 2) + kafka_string("a")
            + kafka_string("ia") + struct.pack(">h", 0) + kafka_string("b")
            + kafka_string("ib") + struct.pack(">h", 0))
    decoded = LeaveGroupResponse_v3.decode(body)
    assert decoded.throttle_time_ms == 7
    assert [m[0] for m in decoded.members] == ["a", "b"]
    assert LeaveGroupRequest_v3.RESPONSE_TYPE is LeaveGroupResponse_v3
