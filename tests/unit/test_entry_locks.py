"""One decision at a time per table entry (streams/entry_locks.py): two agents deciding on the
same entry while the first awaits its effects must not erase each other's write."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust

from streams.entry_locks import EntryLocks
from streams.shell import Shell
from vprov import config as vconfig
from vprov.core.outputs import Decision, Effect
from vprov.kafka.avro import AvroSerde
from vprov.kafka.catalogue import Catalogue


class SlowRegistry:
    """An identity registry whose creates wait until the test lets them through."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.created: list[str] = []

    async def create(self, scope: str, device_id: str, attributes: dict[str, str]) -> None:
        await self.go.wait()
        self.created.append(device_id)

    async def delete(self, scope: str, device_id: str) -> None:
        return None


def shell(tmp_path: Path, registry: SlowRegistry) -> Shell:
    config = vconfig.load(env={})
    app = faust.App("test-entry-locks", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    made = Shell(app, Catalogue(config), config, AvroSerde(), registry)  # type: ignore[arg-type]

    async def sent(records: list[Any]) -> None:
        return None

    made._send = sent  # type: ignore[method-assign]
    return made


def event(offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic="t", partition=0, offset=offset,
                                                   key=b"VIN1", headers=None))


def test_a_decision_waits_for_the_one_carried_out_on_its_entry_and_decides_again(
        tmp_path: Path) -> None:
    registry = SlowRegistry()
    worker = shell(tmp_path, registry)
    table: dict[str, int] = {"VIN1": 0}
    decided: list[str] = []

    def register() -> tuple[Decision, Any, str]:  # awaits an effect before its write
        decided.append("register")
        return (Decision(state=table["VIN1"] + 1,
                         effects=[Effect("create_identity", "NA", "D1")]), table, "VIN1")

    def provision() -> tuple[Decision, Any, str]:
        decided.append("provision")
        return Decision(state=table["VIN1"] + 10), table, "VIN1"

    async def both() -> None:
        first = asyncio.ensure_future(worker.process(event(1), register))
        await asyncio.sleep(0)  # it decided, and waits for its effect
        second = asyncio.ensure_future(worker.process(event(2), provision))
        await asyncio.sleep(0.01)
        assert table["VIN1"] == 0  # the second waits for the first's write
        registry.go.set()
        await asyncio.gather(first, second)

    asyncio.run(both())

    # without the lock the provision would have decided on 0 and one write erased the other
    assert table["VIN1"] == 11
    assert decided == ["register", "provision", "provision"]
    assert registry.created == ["D1"]
    assert len(worker.entries) == 0  # nothing kept once nobody holds or waits


def test_other_entries_do_not_wait(tmp_path: Path) -> None:
    registry = SlowRegistry()
    worker = shell(tmp_path, registry)
    table = {"VIN1": 0, "VIN2": 0}

    async def both() -> None:
        first = asyncio.ensure_future(worker.process(event(1), lambda: (
            Decision(state=1, effects=[Effect("create_identity", "NA", "D1")]), table, "VIN1")))
        await asyncio.sleep(0)
        await worker.process(event(2), lambda: (Decision(state=2), table, "VIN2"))
        assert table == {"VIN1": 0, "VIN2": 2}  # written while VIN1 still waits
        registry.go.set()
        await first

    asyncio.run(both())
    assert table == {"VIN1": 1, "VIN2": 2}


def test_a_decision_without_an_entry_takes_no_lock() -> None:
    locks = EntryLocks()

    async def hold() -> None:
        async with locks.holding(None, "VIN1"):
            assert not locks.busy(None, "VIN1")
            assert len(locks) == 0

    asyncio.run(hold())
