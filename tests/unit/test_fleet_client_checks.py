"""The fleet driver looks for a stuck Kafka client only once a request has waited
``QUIET_SECONDS`` for its answer (vprov/sim/fleet_driver.py): a look asks the cluster for end
offsets partition by partition and the fleet stops sending while it waits. Before, it looked
every 15 s while trips were under way, from the second look on holding the sender up to 2 s:
at the start of every benchmark phase after the first, and every 15 s within one."""

from __future__ import annotations

from collections import Counter

import pytest

from vprov import config as config_module
from vprov.sim import fleet
from vprov.sim.fleet_driver import QUIET_SECONDS, FleetDriver, Request, Trip


class Clients:
    """The driver's producer and reader as far as the checks go: what was asked of them."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def renew_stuck(self) -> int:
        self.calls["renew_stuck"] += 1
        return 0

    def note_positions(self) -> None:
        self.calls["note_positions"] += 1


def driver_waiting_since(sent_at: float) -> tuple[FleetDriver, Clients, Clients]:
    """A driver with one trip under way whose query was sent at ``sent_at``."""
    made = FleetDriver(config_module.load(env={}), "checks")
    producer, reader = Clients(), Clients()
    made.producer, made.reader = producer, reader  # type: ignore[assignment]
    trip = Trip(1, fleet.make_vehicle("checks", 1, "NA"))
    made.trips, made.in_flight = [trip], 1
    trip.waiting.add("q1")
    made.requests["q1"] = Request("q1", trip, "query", "t", b"", sent_at)
    return made, producer, reader


def test_a_fleet_that_is_answered_only_notes_its_reader_positions() -> None:
    now = 1000.0
    made, producer, reader = driver_waiting_since(now - 1.0)
    made.last_answer_at = now - 2 * QUIET_SECONDS  # a quiet stretch before this trip
    made._renew_stuck_clients(now)
    assert reader.calls == Counter(note_positions=1)
    assert producer.calls == Counter()


@pytest.mark.parametrize(("last_answer_ago", "producer_looked"), [
    (QUIET_SECONDS + 1.0, True),  # nothing answered for as long: the producer too
    (1.0, False),  # answers to other requests: the producer delivers
])
def test_a_request_overdue_makes_the_driver_look(last_answer_ago: float,
                                                 producer_looked: bool) -> None:
    now = 1000.0
    made, producer, reader = driver_waiting_since(now - QUIET_SECONDS - 1.0)
    made.last_answer_at = now - last_answer_ago
    made._renew_stuck_clients(now)
    assert reader.calls == Counter(renew_stuck=1)
    assert producer.calls == (Counter(renew_stuck=1) if producer_looked else Counter())


def test_checks_are_at_least_quiet_seconds_apart() -> None:
    now = 1000.0
    made, _, reader = driver_waiting_since(now - QUIET_SECONDS - 1.0)
    made._renew_stuck_clients(now)
    made._renew_stuck_clients(now + QUIET_SECONDS / 2)
    made._renew_stuck_clients(now + QUIET_SECONDS)
    assert reader.calls == Counter(renew_stuck=2)


def test_an_ended_trip_does_not_count_as_waiting() -> None:
    now = 1000.0
    made, _, _ = driver_waiting_since(now - QUIET_SECONDS - 1.0)
    made.trips[0].ended_at = now - 1.0
    assert made.oldest_wait_started(now) == now
