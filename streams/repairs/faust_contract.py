"""The private parts of Faust and aiokafka that the commit guard
(``streams/repairs/commit_guard.py``),
the fetch settings (``streams/repairs/transport.py``) and the watchdog lean on, checked at start-up.

The repairs override Faust methods that Faust calls itself, and read its bookkeeping. A Faust
release that renames or moves any of them would leave a repair silently unused, and records
lost: ``check`` fails the worker at start-up instead, with one line naming the versions
installed and what is missing. ``tests/unit/test_faust_contract.py`` runs the same check, and
drives the repairs through the real Faust classes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiokafka
import faust
from aiokafka import client as aiokafka_client
from aiokafka.consumer import fetcher, group_coordinator
from faust.stores import base as faust_store
from faust.stores import rocksdb as faust_rocksdb
from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as driver
from faust.types import tuples


class UnsupportedFaust(RuntimeError):
    """The installed Faust (or aiokafka) lacks a name the repairs rely on."""


def _declared(owner: type, name: str) -> bool:
    """An instance attribute the class declares (Faust annotates its bookkeeping)."""
    return any(name in vars(k).get("__annotations__", {}) for k in inspect.getmro(owner))


def _names_in(function: Any) -> set[str]:
    """The attribute and global names a function's code uses."""
    code = getattr(function, "__code__", None)
    return set(code.co_names) if code is not None else set()


def _qualname(owner: Any) -> str:
    return str(getattr(owner, "__qualname__", None) or getattr(owner, "__name__", "?"))


@dataclass(frozen=True)
class Requirement:
    owner: Any
    name: str
    kind: str  # what it must be, as the failure names it
    holds: Callable[[Any, str], bool]
    text: str = ""  # the failure's words, when "Owner.name (kind)" would not say it

    def label(self) -> str:
        return self.text or f"{_qualname(self.owner)}.{self.name} ({self.kind})"


def method(owner: Any, name: str) -> Requirement:
    return Requirement(owner, name, "method",
                       lambda o, n: callable(inspect.getattr_static(o, n, None)))


def coroutine(owner: Any, name: str) -> Requirement:
    return Requirement(owner, name, "coroutine method",
                       lambda o, n: inspect.iscoroutinefunction(getattr(o, n, None)))


def field(owner: type, name: str) -> Requirement:
    return Requirement(owner, name, "declared attribute", _declared)


def called_by(owner: Any, name: str, caller: str) -> Requirement:
    """``owner.caller`` still uses ``name``: Faust calls the override (or reads the field)."""
    return Requirement(owner, name, f"used by {caller}",
                       lambda o, n: n in _names_in(getattr(o, caller, None)),
                       text=f"{_qualname(owner)}.{caller} (uses {name})")


Consumer = faust_consumer.Consumer
REQUIRED: tuple[Requirement, ...] = (
    # the commit rules override these, and Faust must still call them
    method(Consumer, "_new_offset"),
    called_by(Consumer, "_new_offset", "_filter_committable_offsets"),
    coroutine(Consumer, "_add_gap"),
    called_by(Consumer, "_add_gap", "_drain_messages"),
    method(Consumer, "ack"),
    coroutine(Consumer, "perform_seek"),
    # a commit under way keeps its offsets until Faust records it (after the broker answered)
    coroutine(Consumer, "_commit_offsets"),
    called_by(Consumer, "_commit_offsets", "_commit_tps"),
    called_by(Consumer, "_committed_offset", "_commit_offsets"),
    # the watchdog's seek, on the consumer thread (defect 7)
    coroutine(Consumer, "_seek"),
    called_by(Consumer, "_seek", "seek"),
    field(faust_consumer.ThreadDelegateConsumer, "_thread"),
    coroutine(driver.AIOKafkaConsumerThread, "call_thread"),
    method(driver.AIOKafkaConsumerThread, "seek"),
    # records fetched before such a seek are not handed on (GuardedConsumer.getmany)
    coroutine(driver.AIOKafkaConsumerThread, "_fetch_records"),
    called_by(driver.AIOKafkaConsumerThread, "_fetch_records", "getmany"),
    called_by(faust_consumer.ThreadDelegateConsumer, "getmany", "_getmany"),
    coroutine(Consumer, "_getmany"),
    called_by(Consumer, "_getmany", "_wait_next_records"),
    Requirement(Consumer, "getmany", "async generator",
                lambda o, n: inspect.isasyncgenfunction(getattr(o, n, None))),
    called_by(Consumer, "getmany", "_drain_messages"),
    # the bookkeeping they and the watchdog read
    field(Consumer, "_committed_offset"),
    field(Consumer, "_acked"),
    field(Consumer, "_acked_index"),
    field(Consumer, "_gap"),
    field(Consumer, "_read_offset"),
    field(Consumer, "_unacked_messages"),
    field(Consumer, "_waiting_for_ack"),
    field(Consumer, "_paused_partitions"),
    field(Consumer, "_active_partitions"),
    Requirement(tuples, "ack_lock", "lock",
                lambda o, n: hasattr(getattr(o, n, None), "__enter__")),
    # the producer flush before a commit
    called_by(Consumer, "flush", "_commit_offsets"),
    called_by(driver.Producer, "buffer", "flush"),
    Requirement(faust_producer.ProducerBuffer, "size", "property",
                lambda o, n: isinstance(inspect.getattr_static(o, n, None), property)),
    called_by(faust_producer.ProducerBuffer, "message_sent", "__post_init__"),
    # the fetch settings
    method(driver.Consumer, "_new_consumer_thread"),
    method(driver.AIOKafkaConsumerThread, "_create_worker_consumer"),
    called_by(aiokafka.AIOKafkaConsumer, "_fetch_min_bytes", "__init__"),
    called_by(aiokafka.AIOKafkaConsumer, "_fetch_min_bytes", "start"),
    called_by(aiokafka.AIOKafkaConsumer, "_fetch_max_wait_ms", "__init__"),
    called_by(aiokafka.AIOKafkaConsumer, "_fetch_max_wait_ms", "start"),
    # offset commits on a connection of their own (streams/repairs/transport.py)
    called_by(aiokafka.AIOKafkaConsumer, "_client", "__init__"),
    Requirement(aiokafka_client.AIOKafkaClient, "send", "coroutine taking group=",
                lambda o, n: inspect.iscoroutinefunction(getattr(o, n, None))
                and "group" in inspect.signature(getattr(o, n)).parameters),
    called_by(group_coordinator.GroupCoordinator, "send", "_send_req"),
    called_by(group_coordinator.GroupCoordinator, "COORDINATION", "_send_req"),
    called_by(group_coordinator.GroupCoordinator, "_send_req", "_do_commit_offsets"),
    called_by(group_coordinator.GroupCoordinator, "OffsetCommitRequest", "_do_commit_offsets"),
    # a table entry read from a partition other than the current event's (streams/stores.py)
    method(faust_rocksdb.Store, "_db_for_partition"),
    method(faust_store.Store, "_encode_key"),
    method(faust_store.Store, "_decode_value"),
    # the table sizes /metrics reports (streams/metrics.py)
    method(faust_rocksdb.Store, "_dbs_for_actives"),
    # a rebalance's garbage collection only when a partition's database is dropped
    # (streams/repairs/store.py)
    called_by(faust_rocksdb.Store, "revoke_partitions", "on_rebalance"),
    field(faust_rocksdb.Store, "_dbs"),
    # fetches paced by what the last one brought (streams/repairs/fetch_pacing.py)
    method(driver.AIOKafkaConsumerThread, "on_start"),
    called_by(fetcher.Fetcher, "_fetch_min_bytes", "_get_actions_per_node"),
    called_by(fetcher.Fetcher, "_fetch_max_wait_ms", "_get_actions_per_node"),
    called_by(fetcher.Fetcher, "_proc_fetch_request", "_fetch_requests_routine"),
    # a static member's leave when its consumer stops (streams/repairs/static_leave.py)
    method(driver.AIOKafkaConsumerThread, "on_thread_stop"),
    called_by(group_coordinator.GroupCoordinator, "_maybe_leave_group", "close"),
    called_by(group_coordinator.GroupCoordinator, "_group_instance_id", "_maybe_leave_group"),
    method(group_coordinator.GroupCoordinator, "reset_generation"),
    # standby buffers applied every second (streams/repairs/standby_flush.py)
    method(faust_recovery.Recovery, "flush_buffers"),
    field(faust_recovery.Recovery, "buffers"),
    field(faust_recovery.Recovery, "standby_offsets"),
)


def missing(required: tuple[Requirement, ...] = REQUIRED) -> list[str]:
    """What the installed versions lack, as ``Owner.name (kind)``."""
    return [r.label() for r in required if not r.holds(r.owner, r.name)]


def versions() -> str:
    return f"faust-streaming {faust.__version__}, aiokafka {aiokafka.__version__}"


def check(required: tuple[Requirement, ...] = REQUIRED) -> None:
    """Raise ``UnsupportedFaust`` naming the installed versions and every missing name."""
    lacking = missing(required)
    if lacking:
        raise UnsupportedFaust(
            f"{versions()} lacks what the commit guard relies on: {', '.join(lacking)} "
            "(docs/faust-defects.md)")
