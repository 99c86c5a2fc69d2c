"""Python's garbage collector out of the answers' way.

A full collection walks every object the process keeps. A worker keeps about 100,000 from its
start (modules, Faust, aiokafka, the tables' machinery) for its whole life, and a full
collection walking them stood the event loop still for 50 to 350 ms in the benchmark: every
record in flight waited as long. Once the worker is ready those objects are taken out of the
collector's reach (``gc.freeze``); a full collection then walks only what came after.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
READY_POLL_SECONDS = 1.0


async def freeze_when_ready(ready: Callable[[], bool]) -> int:
    """Wait until ``ready()``, collect the start's garbage (frozen, it would never be freed),
    then freeze what is left; returns how many objects were frozen."""
    while not ready():
        await asyncio.sleep(READY_POLL_SECONDS)
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%d objects of the worker's start taken out of the garbage collector's walks",
             frozen)
    return frozen


def install(app: Any, ready: Callable[[], bool]) -> None:
    """Freeze the worker's start-up objects once ``ready()`` (a Faust app task)."""

    async def freeze_startup_objects() -> None:
        await freeze_when_ready(ready)

    app.task(freeze_startup_objects)
