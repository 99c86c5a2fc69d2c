"""Kafka clients are closed where their work ends, and the suites' guard finds those that were
left open to the garbage collector (tests/client_guard.py). No broker: the clients point at a
port nothing listens on."""

from __future__ import annotations

import time

from tests import client_guard, ports
from vprov.kafka.clients import admin_client, close_admin, close_producer, consumer, producer


class Cycle:
    """An object the cycle collector alone can free, holding a client."""

    def __init__(self, client: object) -> None:
        self.client = client
        self.me = self


def nowhere() -> str:
    return f"127.0.0.1:{ports.closed_port()}"


def test_an_open_producer_in_a_cycle_is_found_and_kept_not_torn_down():
    out = producer(nowhere())
    Cycle(out)
    del out
    found = client_guard.open_clients_in_garbage()
    assert found == ["Producer"]
    kept = client_guard._kept.pop()
    assert client_guard.is_open(kept)  # still whole: nothing cleared it
    close_producer(kept, 0)  # type: ignore[arg-type]


def test_closed_clients_in_a_cycle_are_not_reported():
    reader = consumer(nowhere())
    reader.close()
    out = producer(nowhere())
    close_producer(out, 0)
    with admin_client(nowhere()) as admin:
        pass
    Cycle(reader), Cycle(out), Cycle(admin)
    del reader, out, admin
    assert client_guard.open_clients_in_garbage() == []


def test_closing_a_producer_whose_broker_is_gone_returns_after_the_timeout_with_the_dropped():
    out = producer(nowhere())
    for n in range(5):
        out.produce("nowhere", value=str(n).encode())
    began = time.monotonic()
    assert close_producer(out, 0.5) == 5
    assert time.monotonic() - began < 5  # Producer.close alone waits without end
    assert not client_guard.is_open(out)


def test_an_admin_client_is_closed_by_close_admin():
    admin = admin_client(nowhere())
    assert client_guard.is_open(admin)
    close_admin(admin)
    assert not client_guard.is_open(admin)
