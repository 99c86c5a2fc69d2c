"""A static member that stops leaves its group at once (aiokafka sends no leave for it).

With static membership (``kafka.static_membership``) the broker keeps a member's partitions for
it until its session times out, so that a worker restarted in place takes them back without a
rebalance. aiokafka never sends a static member's leave: a planned stop or a scale-in would
then wait out the session timeout before the others take over. Kafka's LeaveGroup request names
static members by their instance id from version 3 on (KIP-345), which aiokafka does not
implement; this module adds it, and the worker's consumer sends it where aiokafka sends a
dynamic member's leave: when it stops, after its last commit.

A crashed worker sends nothing, so it keeps its partitions until the session times out, or until
it is back: that is what static membership is for.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aiokafka import errors
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

log = logging.getLogger(__name__)

LEAVE_GROUP = 13  # the API key of LeaveGroup


class LeaveGroupResponse_v3(Response):  # noqa: N801 - Kafka's name of the version
    API_KEY = LEAVE_GROUP
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", Array(("member_id", String("utf-8")),
                          ("group_instance_id", String("utf-8")),
                          ("error_code", Int16))),
    )


class LeaveGroupRequest_v3(RequestStruct):  # noqa: N801
    API_KEY = LEAVE_GROUP
    API_VERSION = 3
    RESPONSE_TYPE = LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")),
                          ("group_instance_id", String("utf-8")))),
    )


class StaticLeaveRequest(Request[LeaveGroupRequest_v3]):
    """One static member leaving ``group``."""

    API_KEY = LEAVE_GROUP

    def __init__(self, group: str, member_id: str, instance_id: str) -> None:
        self.group = group
        self.member_id = member_id
        self.instance_id = instance_id

    def build(self, request_struct_class: type[LeaveGroupRequest_v3]) -> LeaveGroupRequest_v3:
        return request_struct_class(self.group, [(self.member_id, self.instance_id)])


def leave_error(response: Any) -> str | None:
    """The error a LeaveGroup response reports for the group or the member; None: left."""
    codes = [response.error_code, *(member[2] for member in response.members)]
    failed = [code for code in codes if code]
    if not failed:
        return None
    return errors.for_code(failed[0]).__name__


async def leave_as_static_member(coordinator: Any) -> None:
    """aiokafka's ``GroupCoordinator._maybe_leave_group`` for a static member: a best effort,
    as aiokafka's own leave (a stop goes on whatever the broker answers)."""
    instance = coordinator._group_instance_id
    if coordinator.generation > 0 and instance is not None:
        request = StaticLeaveRequest(coordinator.group_id, coordinator.member_id, instance)
        try:
            problem = leave_error(await coordinator._send_req(request))
        except (errors.KafkaError, NotImplementedError) as exc:  # NotImplemented: no v3
            problem = repr(exc)
        if problem:
            log.warning("static member %s could not leave group %s (%s): its partitions move "
                        "after the session timeout", instance, coordinator.group_id, problem)
        else:
            log.info("static member %s left group %s", instance, coordinator.group_id)
    coordinator.reset_generation()


def leave_when_stopped(consumer: Any) -> None:
    """Make a started aiokafka consumer's coordinator leave as a static member when it closes
    (it does not without a group instance id: aiokafka's own leave then runs)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and coordinator._group_instance_id is not None:
        coordinator._maybe_leave_group = functools.partial(leave_as_static_member, coordinator)
