"""Fetches batch while records flow and wait for the first byte when they stop
(``streams/repairs/fetch_pacing.py``), on aiokafka's own Fetcher settings."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.repairs import fetch_pacing
from streams.repairs.fetch_pacing import FetchPacing, Pace
from streams.repairs.transport import FetchSettings

IDLE = Pace(1, 200)
FLOWING = Pace(65536, 25)


def fetcher(brought: list[bool]) -> Any:
    """A fetcher whose fetches bring records (True) or nothing (False), in that order; it
    records the settings each fetch was built with."""
    made = SimpleNamespace(_fetch_min_bytes=1, _fetch_max_wait_ms=1500, built=[])

    async def proc(assignment: Any, node_id: Any, request: Any) -> bool:
        made.built.append((made._fetch_min_bytes, made._fetch_max_wait_ms))
        return brought.pop(0)

    made._proc_fetch_request = proc
    return made


def run(fetch: Any, times: int) -> None:
    async def fetches() -> None:
        for _ in range(times):
            await fetch._proc_fetch_request(None, 1, None)
    asyncio.run(fetches())


def test_a_fetch_after_records_batches_and_after_a_run_of_empty_ones_waits_for_a_byte() -> None:
    idle_after = fetch_pacing.IDLE_AFTER
    brought = [True, False, True] + [False] * idle_after + [True]
    fetch = fetcher(list(brought))
    fetch_pacing.install(fetch, FetchPacing(IDLE, FLOWING))
    run(fetch, len(brought))
    flowing, idle = (65536, 25), (1, 200)
    # a new worker is idle; one empty fetch among flowing ones does not make it idle
    assert fetch.built == [idle, flowing, flowing, *[flowing] * idle_after, idle]


def test_without_a_batch_wait_every_fetch_is_answered_at_once() -> None:
    fetch = fetcher([True, True])
    fetch_pacing.install(fetch, FetchSettings(1, 200, 65536, 0).pacing())
    run(fetch, 2)
    assert fetch.built == [(1, 200), (1, 200)]


def test_the_configuration_s_defaults_batch_for_25_ms() -> None:
    from vprov import config
    cfg = config.load(env={})
    settings = FetchSettings(cfg.fetch_min_bytes, cfg.fetch_max_wait_ms, cfg.fetch_batch_bytes,
                             cfg.fetch_batch_wait_ms)
    assert settings.pacing() == FetchPacing(Pace(1, 200), Pace(65536, 25))
