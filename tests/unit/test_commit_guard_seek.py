"""The watchdog's seek on a real guarded consumer (no broker): it runs on the consumer thread, and
the records of the partition that the thread had fetched before it are not handed on (Faust's
drain loop would move its read offset past the seek's and drop the records read again)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.repairs.commit_guard import FetchedRecords, GuardedConsumer, GuardedConsumerThread
from tests.unit.guardkit import event_loop, guarded_app

P0, P1 = TP("provisioning.query", 0), TP("provisioning.query", 1)


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with event_loop() as loop:
        yield loop


def run(awaitable: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(awaitable)


class FakeAiokafka:
    """aiokafka's consumer as far as a seek goes: where it was called from."""

    def __init__(self, thread: OnThread) -> None:
        self.thread = thread
        self.on_thread: list[tuple[TP, int]] = []
        self.outside: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        (self.on_thread if self.thread.running else self.outside).append((tp, offset))


class OnThread:
    """``call_thread`` of the consumer thread: runs the call, noting that it is on the thread."""

    def __init__(self) -> None:
        self.running = False

    async def __call__(self, fun: Any, *args: Any, **kwargs: Any) -> Any:
        self.running = True
        try:
            result = fun(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result
        finally:
            self.running = False


@pytest.fixture
def consumer() -> GuardedConsumer:
    return guarded_app(strict=[P0.topic])[1]


def thread_of(consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch
              ) -> tuple[GuardedConsumerThread, FakeAiokafka]:
    thread = consumer._thread
    assert isinstance(thread, GuardedConsumerThread)
    on_thread = OnThread()
    aiokafka = FakeAiokafka(on_thread)
    monkeypatch.setattr(thread, "call_thread", on_thread)
    monkeypatch.setattr(thread, "_consumer", aiokafka)
    return thread, aiokafka


def test_faust_s_seek_calls_aiokafka_from_the_app_s_loop(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 7: ``Consumer._seek`` calls aiokafka's seek from the app's event loop; aiokafka
    deletes the partition's fetched records while the consumer thread may be reading them
    (KeyError in ``Fetcher.fetched_records``: the fetcher crashes and the worker stops)."""
    from faust.transport.drivers.aiokafka import Consumer

    _, aiokafka = thread_of(consumer, monkeypatch)
    run(Consumer._seek(consumer, P0, 7))
    assert aiokafka.outside == [(P0, 7)] and aiokafka.on_thread == []


def test_the_watchdog_s_seek_runs_on_the_consumer_thread(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    thread, aiokafka = thread_of(consumer, monkeypatch)
    run(consumer.seek(P0, 7))
    assert aiokafka.on_thread == [(P0, 7)] and aiokafka.outside == []
    assert thread.seeks == {P0: 1}
    assert consumer._read_offset[P0] == 7  # Faust's own bookkeeping of the seek


def record(tp: TP, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


def fetching(consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch,
             batches: list[dict[TP, list[int]]]) -> None:
    """The consumer thread hands out ``batches`` (partition -> offsets), one a fetch."""
    thread, _ = thread_of(consumer, monkeypatch)

    async def getmany(active: Any, timeout: float) -> FetchedRecords:
        # as GuardedConsumerThread._fetch_records: the seeks counted when the batch was taken
        batch = batches.pop(0)
        return FetchedRecords({tp: [record(tp, o) for o in offsets]
                               for tp, offsets in batch.items()}, thread.seeks)

    monkeypatch.setattr(thread, "getmany", getmany)
    monkeypatch.setattr(thread, "highwater", lambda tp: 100)
    consumer._set_active_tps({P0, P1})


def drain(consumer: GuardedConsumer, seek_at: tuple[TP, int] | None = None,
          seek_to: int = 0) -> list[tuple[int, int]]:
    """One batch as Faust's drain loop takes it; the watchdog seeks ``seek_at``'s partition to
    ``seek_to`` right after that record was handed on."""
    async def take() -> list[tuple[int, int]]:
        out = []
        async for tp, message in consumer.getmany(timeout=1.0):
            out.append((tp.partition, message.offset))
            if (tp, message.offset) == seek_at:
                await consumer.seek(tp, seek_to)
        return out

    return sorted(run(take()))


def test_records_fetched_before_a_seek_of_their_partition_are_not_handed_on(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    fetching(consumer, monkeypatch, [{P0: [5, 6, 7, 8], P1: [3, 4]}, {P0: [2, 3, 4, 5, 6]}])
    # the watchdog seeks P0 back to 2 while the batch is being handed on: 6..8 come again
    assert drain(consumer, seek_at=(P0, 5), seek_to=2) == [(0, 5), (1, 3), (1, 4)]
    assert consumer._read_offset[P0] == 2
    # the records read after the seek are handed on, all of them
    assert drain(consumer) == [(0, 2), (0, 3), (0, 4), (0, 5), (0, 6)]


def test_without_a_seek_every_record_is_handed_on(
        consumer: GuardedConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    fetching(consumer, monkeypatch, [{P0: [5, 6], P1: [3]}])
    assert drain(consumer) == [(0, 5), (0, 6), (1, 3)]
