"""The worker's start-up objects leave the garbage collector's walks once it is ready."""

from __future__ import annotations

import asyncio
import gc
import weakref

from streams import collector


def test_nothing_is_frozen_before_the_worker_is_ready_and_the_start_is_frozen_after(monkeypatch):
    monkeypatch.setattr(collector, "READY_POLL_SECONDS", 0.01)
    checks = []
    kept = [["an object of the start"] for _ in range(1000)]

    def ready() -> bool:
        checks.append(gc.get_freeze_count())
        return len(checks) >= 3

    gc.unfreeze()
    try:
        frozen = asyncio.run(collector.freeze_when_ready(ready))
        assert checks == [0, 0, 0]  # nothing frozen while it was not ready
        assert frozen >= len(kept) and gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_garbage_of_the_start_is_collected_not_frozen():
    class Cycle:
        pass

    gc.unfreeze()
    try:
        cycle = Cycle()
        cycle.me = cycle  # unreachable once dropped: only a collection frees it
        alive = weakref.ref(cycle)
        del cycle
        assert alive() is not None
        asyncio.run(collector.freeze_when_ready(lambda: True))
        assert alive() is None  # frozen, it would have lived as long as the process
    finally:
        gc.unfreeze()


def test_the_freeze_runs_as_a_task_of_the_app():
    tasks = []

    class App:
        def task(self, fn):
            tasks.append(fn)
            return fn

    collector.install(App(), lambda: True)
    assert len(tasks) == 1
    gc.unfreeze()
    try:
        asyncio.run(tasks[0]())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
