"""Several inputs of an agent at once (streams/in_flight.py): a key's inputs in the order they
came, an input acknowledged only once carried out, the window's bound, and a failure that stops
the agent without carrying out the key's later inputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import faust
import pytest

from streams.in_flight import KeyedWindow
from streams.shell import Shell
from vprov import config as vconfig
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue


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


def test_a_failure_is_reported_at_once_without_waiting_for_another_input() -> None:
    async def scenario() -> list[str]:
        inputs, reported = Inputs(), []
        window = KeyedWindow(4, on_failure=lambda exc: reported.append(str(exc)))
        await window.submit("K1", inputs.work("a", fail=True), inputs.done("a"))
        await settle()
        inputs.release("a")
        await settle()
        return reported

    assert asyncio.run(scenario()) == ["a failed"]


def test_an_input_cancelled_by_anything_but_the_window_stops_the_agent() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        inputs, reported = Inputs(), []
        window = KeyedWindow(4, on_failure=lambda exc: reported.append(str(exc)))

        async def cancelled_inside() -> None:
            raise asyncio.CancelledError  # e.g. a future it awaited was cancelled under it

        await window.submit("K1", cancelled_inside, inputs.done("a"))
        await window.submit("K1", inputs.work("b"), inputs.done("b"))
        await settle()
        inputs.release("b")
        await settle()
        return inputs.log, reported

    log, reported = asyncio.run(scenario())
    assert reported == ["an input was cancelled while it was carried out"]
    assert log == []  # neither acknowledged; the key's next input not carried out either


def test_the_window_s_own_cancel_is_no_failure() -> None:
    async def scenario() -> list[str]:
        inputs, reported = Inputs(), []
        window = KeyedWindow(4, on_failure=lambda exc: reported.append(str(exc)))
        await window.submit("K1", inputs.work("a"), inputs.done("a"))
        await settle()
        window.cancel()
        await settle()
        window.raise_failure()  # nothing to raise
        return reported

    assert asyncio.run(scenario()) == []


def test_an_agent_whose_input_fails_stops_at_once_with_that_error(tmp_path: Path) -> None:
    # the agent waits for its next record; the failure must not wait for one (a quiet topic,
    # or a rebalance that waits for the failed input to be acknowledged, never sends it)
    config = vconfig.load(env={})
    app = faust.App("test-in-flight", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    worker = Shell(app, Catalogue(config), config, AvroSerde(), registry=None)  # type: ignore[arg-type]

    async def failing() -> None:
        raise RuntimeError("a defect in carrying out")

    async def acked() -> None:
        raise AssertionError("a failed input must not be acknowledged")

    class Stream:
        """One record, then the wait for the next; acknowledging the record is a failure."""

        def noack(self) -> Stream:
            return self

        async def events(self) -> AsyncIterator[object]:
            yield "record"
            await asyncio.sleep(60)  # waiting for the next record

        async def ack(self, event: object) -> None:
            await acked()

    async def scenario() -> None:
        agent = worker._carry_out_each(lambda event: (b"VIN1", failing), Stream())  # type: ignore[arg-type]
        await asyncio.wait_for(agent, timeout=5)

    with pytest.raises(RuntimeError, match="a defect in carrying out"):
        asyncio.run(scenario())
