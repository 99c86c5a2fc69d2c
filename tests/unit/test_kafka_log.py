"""librdkafka's log lines through Python logging: each distinct line once per interval, quiet
unless -v."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from vprov.kafka import librdkafka_log
from vprov.kafka.librdkafka_log import RepeatFilter, librdkafka_logger, repeat_key

CONNECT = ("[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to "
           "ipv4#127.0.0.1:9092 failed: Connection refused (after {ms}ms in state CONNECT)")


def record(text: str, name: str = "rdkafka#consumer-2", level: int = logging.ERROR
           ) -> logging.LogRecord:
    # confluent-kafka logs (format, facility, client name, line)
    return logging.LogRecord(librdkafka_log.LOGGER_NAME, level, __file__, 1, "%s [%s] %s",
                             ("FAIL", name, text), None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_line_passes_once_per_interval_and_counts_what_was_held_back() -> None:
    clock = Clock()
    flt = RepeatFilter(interval=60, clock=clock)
    assert flt.filter(record(CONNECT.format(ms=0)))
    for ms in (0, 1, 12, 3):
        clock.now += 1
        assert not flt.filter(record(CONNECT.format(ms=ms)))
    clock.now += 60
    again = record(CONNECT.format(ms=0))
    assert flt.filter(again)
    assert again.getMessage().endswith("(4 repeats held back)")
    clock.now += 1
    assert not flt.filter(record(CONNECT.format(ms=0)))


def test_without_an_interval_each_distinct_line_passes_once_for_good() -> None:
    clock = Clock()
    flt = RepeatFilter(interval=None, clock=clock)
    assert flt.filter(record("a"))
    clock.now += 1e6
    assert not flt.filter(record("a"))


def test_distinct_lines_and_levels_pass() -> None:
    flt = RepeatFilter(clock=Clock())
    assert flt.filter(record(CONNECT.format(ms=0)))
    assert flt.filter(record(CONNECT.format(ms=0).replace("9092", "9093")))
    assert flt.filter(record(CONNECT.format(ms=0), level=logging.WARNING))
    assert flt.filter(record("Disconnected"))


def test_the_same_event_from_two_clients_is_one_line() -> None:
    flt = RepeatFilter(clock=Clock())
    assert flt.filter(record(CONNECT.format(ms=0), name="rdkafka#producer-1"))
    assert not flt.filter(record(CONNECT.format(ms=7), name="rdkafka#producer-3"))


def test_repeat_key_drops_what_varies_between_repeats() -> None:
    assert repeat_key("FAIL [rdkafka#producer-12] x (after 10009ms, 3 identical error(s) "
                      "suppressed)") == repeat_key("FAIL [rdkafka#producer-1] x (after 3ms, "
                                                   "1 identical error(s) suppressed)")
    assert repeat_key("127.0.0.1:9092") == "127.0.0.1:9092"


def test_the_filter_remembers_a_bounded_number_of_lines() -> None:
    flt = RepeatFilter(max_keys=3, clock=Clock())
    for n in range(10):
        assert flt.filter(record(f"line {n}"))
    assert flt.filter(record("line 0"))  # forgotten: shown again
    assert not flt.filter(record("line 9"))


@pytest.fixture
def restore_level() -> Iterator[logging.Logger]:
    logger = librdkafka_logger()
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_quiet_unless_verbose(restore_level: logging.Logger) -> None:
    logger = librdkafka_logger()
    assert logger is librdkafka_logger()
    assert sum(isinstance(f, RepeatFilter) for f in logger.filters) == 1
    librdkafka_log.configure(verbose=False)
    assert not logger.isEnabledFor(logging.CRITICAL)
    librdkafka_log.configure(verbose=True)
    assert logger.isEnabledFor(logging.DEBUG)


def test_every_client_gets_the_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    from vprov.kafka import clients

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(clients, "Producer", lambda conf: seen.append(conf))
    monkeypatch.setattr(clients, "Consumer", lambda conf: seen.append(conf))
    monkeypatch.setattr(clients, "AdminClient", lambda conf: seen.append(conf))
    clients.producer("127.0.0.1:1")
    clients.consumer("127.0.0.1:1")
    clients.admin_client("127.0.0.1:1")
    assert [conf["logger"] for conf in seen] == [librdkafka_logger()] * 3


def test_the_client_filter_quiets_repeats_of_the_named_loggers_only() -> None:
    from vprov.kafka.librdkafka_log import ClientRepeatFilter

    now = [0.0]
    quiet = ClientRepeatFilter(("aiokafka",), interval=30.0, clock=lambda: now[0])

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg,
                                 (("127.0.0.1", 9092),), None)

    failed = "Unable connect to node with id 1: Connect call failed %s"
    assert quiet.filter(record("aiokafka.conn", failed)) is True
    assert [quiet.filter(record("aiokafka.conn", failed)) for _ in range(100)] == [False] * 100
    assert quiet.filter(record("streams.shell", failed)) is True  # other loggers pass
    assert quiet.filter(record("streams.shell", failed)) is True
    now[0] = 31.0
    shown = record("aiokafka.conn", failed)
    assert quiet.filter(shown) is True  # again after the interval
    assert shown.getMessage().endswith("('127.0.0.1', 9092)")  # records are never changed


def test_a_worker_s_idle_client_does_not_write_a_refused_broker_to_stderr() -> None:
    """The watchdog's offset probe stays open between probes; while a broker is down its
    failed reconnections go through the de-duplicating logger, not one stderr line each."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.ERROR, stream=sys.stdout, format='%(message)s')\n"
        "from streams.repairs.offset_probe import OffsetProbe, UNKNOWN\n"
        "probe = OffsetProbe('127.0.0.1:1', timeout=1.5)\n"
        "assert probe.next_offset('t', 0, 0) == UNKNOWN\n"
        "assert probe.next_offset('t', 0, 0) == UNKNOWN\n"
        "probe.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)
    assert "Connection refused" not in done.stderr, done.stderr
    routed = [line for line in done.stdout.splitlines() if "Connection refused" in line]
    assert len(routed) == 1, done.stdout  # shown once, its repeats held back
