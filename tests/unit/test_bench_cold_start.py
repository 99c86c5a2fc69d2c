"""The cold-start benchmark's pure parts: whose process is whose, and the demo's summary rows."""

from __future__ import annotations

from bench.cold_start import LATENCY_ROW, MACHINE_ROW, role_of

RUN = "/tmp/vprov-cold-x/run"


def test_processes_are_told_apart_by_their_command_lines() -> None:
    broker = (f"java -Xms256m -Dlog4j.configuration=file:{RUN}/kafka/log4j.properties "
              f"-cp /c/libs/* kafka.Kafka {RUN}/kafka/server.properties")
    assert role_of(broker, RUN) == "broker"
    assert role_of(broker.replace(RUN, "/elsewhere/.run"), RUN) is None  # another stack's
    assert role_of("/r/.venv/bin/python /r/.venv/bin/vprov worker --role global --web-port 6066",
                   RUN) == "global"
    assert role_of("python vprov worker --role regional --region EU --web-port 6068",
                   RUN) == "regional"
    assert role_of("python vprov simulate --vehicles 1000 --rate 80", RUN) == "simulator"
    assert role_of("redis-server 127.0.0.1:6379", RUN) is None


def test_the_summary_rows_are_read_with_their_percentiles() -> None:
    rows = {m[1]: m.groups()[1:] for line in (
        "    query -> answer           137.1    239.0    301.8    436.1    1000",
        "      first 10 s              133.0    250.0    304.5    436.1     800",
        "    vehicle first -> last     189.2    336.2    424.0    534.1    1000",
        "  throughput                       78.7 vehicles/s (12.7 s)",
    ) if (m := LATENCY_ROW.match(line))}
    assert rows == {"query -> answer": ("137.1", "239.0", "301.8", "436.1", "1000"),
                    "first 10 s": ("133.0", "250.0", "304.5", "436.1", "800")}


def test_the_machine_row_gives_the_busy_cores() -> None:
    line = ("  machine CPU meanwhile            1.93 of 2 cores busy (96%): the cores were full, "
            "so the latencies include waiting for one")
    match = MACHINE_ROW.match(line)
    assert match is not None and float(match[1]) == 1.93
    assert MACHINE_ROW.match("  throughput                       78.7 vehicles/s (12.7 s)") is None
