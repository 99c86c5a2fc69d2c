"""Several inputs of an agent at once (streams/in_flight.py): a key's inputs in the order they
came, an input acknowledged only once carried out, the window's bound, and a failure that stops
the agent without carrying out the key's later inputs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from streams.in_flight import KeyedWindow


class Inputs:
    """Inputs whose work waits until the test releases it, with what happened, in order."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.log: list[str] = []

    def work(self, name: str, fail: bool = False) -> Callable[[], Awaitable[None]]:
        gate = self.gates.setdefault(name, asyncio.Event())

        async def run() -> None:
            self.log.append(f"start {name}")
            await gate.wait()
            if fail:
                raise RuntimeError(f"{name} failed")
            self.log.append(f"end {name}")

        return run

    def done(self, name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            self.log.append(f"ack {name}")

        return ack

    def release(self, name: str) -> None:
        self.gates[name].set()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_inputs_of_other_keys_do_not_wait_for_each_other() -> None:
    async def scenario() -> list[str]:
        inputs, window = Inputs(), KeyedWindow(4)
        for name, key in (("a", "K1"), ("b", "K2")):
            await window.submit(key, inputs.work(name), inputs.done(name))
        await settle()
        inputs.release("b")  # the second is carried out while the first still waits
        await settle()
        inputs.release("a")
        await window.drain()
        return inputs.log

    assert asyncio.run(scenario()) == ["start a", "start b", "end b", "ack b", "end a", "ack a"]


def test_inputs_of_one_key_start_one_after_the_other_in_the_order_they_came() -> None:
    async def scenario() -> list[str]:
        inputs, window = Inputs(), KeyedWindow(4)
        for name in ("a", "b", "c"):
            await window.submit("K1", inputs.work(name), inputs.done(name))
        await settle()
        inputs.release("c")
        inputs.release("b")  # released first, still started after "a" is acknowledged
        await settle()
        inputs.release("a")
        await window.drain()
        return inputs.log

    assert asyncio.run(scenario()) == ["start a", "end a", "ack a", "start b", "end b", "ack b",
                                       "start c", "end c", "ack c"]


def test_an_input_is_acknowledged_only_after_it_was_carried_out() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        inputs, window = Inputs(), KeyedWindow(2)
        await window.submit("K1", inputs.work("a"), inputs.done("a"))
        await settle()
        before = list(inputs.log)
        inputs.release("a")
        await window.drain()
        return before, inputs.log

    before, after = asyncio.run(scenario())
    assert before == ["start a"]
    assert after == ["start a", "end a", "ack a"]


def test_no_more_than_the_limit_are_under_way() -> None:
    async def scenario() -> tuple[list[str], bool]:
        inputs, window = Inputs(), KeyedWindow(2)
        for name in ("a", "b"):
            await window.submit(name, inputs.work(name), inputs.done(name))
        third = asyncio.create_task(window.submit("c", inputs.work("c"), inputs.done("c")))
        await settle()
        admitted_early = third.done()
        inputs.release("a")
        await settle()
        inputs.release("b")
        inputs.release("c")
        await third
        await window.drain()
        return inputs.log, admitted_early

    log, admitted_early = asyncio.run(scenario())
    assert not admitted_early
    assert log.index("start c") > log.index("ack a")


def test_a_limit_of_one_carries_out_one_input_at_a_time() -> None:
    async def scenario() -> list[str]:
        inputs, window = Inputs(), KeyedWindow(1)
        submitted = asyncio.create_task(_submit_all(window, inputs, [("a", "K1"), ("b", "K2")]))
        await settle()
        inputs.release("b")
        inputs.release("a")
        await submitted
        await window.drain()
        return inputs.log

    assert asyncio.run(scenario()) == ["start a", "end a", "ack a", "start b", "end b", "ack b"]


async def _submit_all(window: KeyedWindow, inputs: Inputs, named: list[tuple[str, str]]) -> None:
    for name, key in named:
        await window.submit(key, inputs.work(name), inputs.done(name))


def test_a_failure_stops_the_agent_and_the_keys_later_inputs_are_not_carried_out() -> None:
    async def scenario() -> tuple[list[str], str]:
        inputs, window = Inputs(), KeyedWindow(4)
        await window.submit("K1", inputs.work("a", fail=True), inputs.done("a"))
        await window.submit("K1", inputs.work("b"), inputs.done("b"))
        await settle()
        inputs.release("a")
        inputs.release("b")
        await settle()
        with pytest.raises(RuntimeError) as raised:
            await window.submit("K2", inputs.work("c"), inputs.done("c"))
        return inputs.log, str(raised.value)

    log, error = asyncio.run(scenario())
    assert log == ["start a"]  # neither acknowledged, "b" not carried out, "c" not taken
    assert error == "a failed"


def test_inputs_still_under_way_when_the_agent_stops_stay_unacknowledged() -> None:
    async def scenario() -> list[str]:
        inputs, window = Inputs(), KeyedWindow(4)
        await window.submit("K1", inputs.work("a"), inputs.done("a"))
        await window.submit("K2", inputs.work("b"), inputs.done("b"))
        await settle()
        inputs.release("b")
        await settle()
        window.cancel()
        await settle()
        inputs.release("a")
        await settle()
        return inputs.log

    assert asyncio.run(scenario()) == ["start a", "start b", "end b", "ack b"]


def test_a_window_needs_room_for_one_input() -> None:
    with pytest.raises(ValueError, match="at least one input"):
        KeyedWindow(0)
