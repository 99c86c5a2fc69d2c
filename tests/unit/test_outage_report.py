"""An identity registry's outage is reported once, however many inputs retry at once
(vprov/identity.py, ``Outage``, ``retry_while_down``): an agent carries out several inputs at a
time, and each of them used to log every one of its attempts."""

from __future__ import annotations

import asyncio
import logging

import pytest

from vprov.identity import Outage, retry_while_down


class Service:
    """Down until ``up`` is set; counts the calls."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    async def call(self) -> str:
        self.calls += 1
        if not self.up:
            raise ConnectionError("connection refused")
        return "done"


def test_many_calls_through_one_outage_log_its_start_and_its_end_once(
        caplog: pytest.LogCaptureFixture) -> None:
    service = Service()
    outage = Outage("identity registry at redis://r", "Check that Redis runs.",
                    (ConnectionError,))

    async def scenario() -> list[str]:
        calls = [asyncio.create_task(retry_while_down(outage, f"create d{n}", service.call,
                                                      backoff_max=0.02)) for n in range(16)]
        await asyncio.sleep(0.3)
        service.up = True
        return await asyncio.gather(*calls)

    with caplog.at_level(logging.WARNING, logger="vprov.identity"):
        results = asyncio.run(scenario())
    assert results == ["done"] * 16
    assert service.calls > 16 * 5  # every call kept trying
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("identity registry at redis://r unreachable during create d0: "
                               "connection refused")
    assert lines[0].endswith("Check that Redis runs.")
    assert lines[1].startswith("identity registry at redis://r reachable again after ")
    assert outage.began is None and outage.failures == 0


def test_a_long_outage_is_reported_again_every_report_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    service = Service()
    outage = Outage("the global broker", "Check the broker.", (ConnectionError,),
                    report_seconds=0.1)

    async def scenario() -> None:
        call = asyncio.create_task(retry_while_down(outage, "delete d1", service.call,
                                                    backoff_max=0.01))
        await asyncio.sleep(0.35)
        service.up = True
        await call

    with caplog.at_level(logging.WARNING, logger="vprov.identity"):
        asyncio.run(scenario())
    still = [r.getMessage() for r in caplog.records if "still unreachable" in r.getMessage()]
    assert 2 <= len(still) <= 4, still


def test_an_error_that_is_not_an_outage_is_raised_at_once() -> None:
    outage = Outage("identity registry", "Check.", (ConnectionError,))

    async def refused() -> None:
        raise ValueError("a device id the registry refuses")

    with pytest.raises(ValueError):
        asyncio.run(retry_while_down(outage, "create d1", refused, backoff_max=0.01))
    assert outage.began is None
