"""Several inputs of one agent carried out at once, each key's in the order they came.

An agent that carries out one input at a time waits, per input, for its effects (an identity in
the IoT core: a round trip to Redis or to an IoT broker) while nothing else of its topic moves:
at a few hundred inputs a second those waits, not the CPU, bound what the agent can take. A
``KeyedWindow`` lets up to ``limit`` inputs be carried out together:

- inputs with the same key start one after the other, in the order the agent read them, so a
  key's decisions, effects and records keep their order (a vehicle's, a device's);
- an input is acknowledged once it was carried out (``done``), not when the agent reads the
  next one. Offsets are committed only over an unbroken run of acknowledged records
  (``streams/repairs/commit_guard.py``), so a crash replays every input that was in flight,
  and decisions are remembered: a replay sends the same records again and changes nothing;
- an input whose work fails in a way the shell does not handle (a defect: the shell turns bad
  input into a dead letter and retries the infrastructure) stops the agent at once: the window
  calls ``on_failure``, admits nothing more, and raises the failure from ``submit``. So does an
  input cancelled by anything but ``cancel``.

A ``limit`` of 1 is the agent that carries out one input at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class KeyedWindow:
    """Up to ``limit`` inputs under way; inputs with the same key one after another."""

    def __init__(self, limit: int,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"an agent must be allowed at least one input in flight, not {limit}")
        self._slots = asyncio.Semaphore(limit)
        self._last: dict[Hashable, asyncio.Future[None]] = {}  # each key's latest input
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._on_failure = on_failure
        self._stopped = False  # cancel() was called: the inputs' cancellations are expected

    async def submit(self, key: Hashable, work: Callable[[], Awaitable[None]],
                     done: Callable[[], Awaitable[Any]]) -> None:
        """Start ``work`` once a slot is free and the key's earlier inputs are done; ``done``
        runs after it. Returns as soon as the input is under way."""
        self.raise_failure()
        await self._slots.acquire()
        self.raise_failure()
        previous = self._last.get(key)
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[key] = finished
        task = asyncio.create_task(self._run(key, previous, finished, work, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, previous: asyncio.Future[None] | None,
                   finished: asyncio.Future[None], work: Callable[[], Awaitable[None]],
                   done: Callable[[], Awaitable[Any]]) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)
            if self._failure is not None:
                return  # an earlier input failed: the agent stops, this one is read again
            await work()
            await done()
        except asyncio.CancelledError:
            if not self._stopped:
                self._fail(RuntimeError("an input was cancelled while it was carried out"))
            raise
        except Exception as exc:  # noqa: BLE001 - reported through on_failure and submit
            self._fail(exc)
        finally:
            if not finished.done():
                finished.set_result(None)
            if self._last.get(key) is finished:
                del self._last[key]
            self._slots.release()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            if self._on_failure is not None:
                self._on_failure(exc)

    def raise_failure(self) -> None:
        """Raise the failure that stopped the window, if one did."""
        if self._failure is not None:
            raise self._failure

    async def drain(self) -> None:
        """Until every input under way is done; raises the first failure."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        self.raise_failure()

    def cancel(self) -> None:
        """Stop the inputs under way (the agent stops): they stay unacknowledged, so they are
        read again from the committed offset."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
