"""The whole path on real parts: a JSON message in, the answer out (foundation)."""

from __future__ import annotations

from tests.integration.conftest import Flow, error_code
from tests.integration.harness import Fleet


def test_unregistered_system_is_answered_with_13103(flow: Flow, fleet_: Fleet) -> None:
    vehicle = fleet_.vehicle()
    answer = flow.query(vehicle)
    assert answer.value["message_type"] == "PROVISION_QUERY_RESPONSE"
    assert answer.value["status"] == "FAIL"
    assert error_code(answer) == 13103
    assert answer.value["body"]["lifecyclestate"] == "QRY_FAIL"
    assert answer.key == vehicle.vin
