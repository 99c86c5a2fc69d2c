"""Requests that a producer outside compressed: librdkafka with each codec Kafka has. The
workers' consumer must decode every one (a codec it cannot read stops its fetcher, and with it
the worker)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.conftest import Flow
from tests.integration.harness import BOOTSTRAP, Fleet
from vprov.kafka.clients import producer
from vprov.sim import fleet


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_requests_are_answered(flow: Flow, fleet_: Fleet, codec: str) -> None:
    vehicle = fleet_.vehicle("NA")
    flow.register(vehicle)
    out = producer(BOOTSTRAP, **{"compression.type": codec, "linger.ms": 20})
    query_id = str(uuid.uuid4())
    out.produce(flow.cat.query, key=vehicle.vin.encode(),
                value=fleet.query(vehicle, query_id, int(time.time())))
    out.flush(30)
    assert flow.answer(query_id).value["status"] == "SUCCESS"
    provision_id = str(uuid.uuid4())
    out.produce(flow.cat.device("NA"), key=vehicle.vin.encode(),
                value=fleet.device_provision(vehicle, vehicle.primary, provision_id,
                                             int(time.time())))
    out.flush(30)
    answer = flow.answer(provision_id, flow.cat.device_response("NA"))
    assert answer.value["status"] == "SUCCESS"
