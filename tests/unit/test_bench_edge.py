"""The benchmark's device-edge phase without brokers: the CPU-per-message arithmetic, where the
brokers' settings come from, and the page's section with its figures."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bench import page
from bench.deploy import write_config
from bench.edge_bench import (
    BridgeCost,
    EdgePath,
    EdgeReport,
    EdgeUnavailable,
    bridge_rows,
    combined,
    console_lines,
    difference,
    differences,
    edge_settings,
    parse_env,
    path_rows,
    proc_cpu_seconds,
    us_per_message,
)
from bench.loadgen import PhaseResult
from tests.unit.test_bench_report import bare_report

# /proc/<pid>/stat of a process whose name holds a space and a parenthesis: utime 250 and
# stime 50 ticks (fields 14 and 15)
STAT = ("4242 (vprov (edge) x) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 50 0 0 20 0 7 0 "
        "123456 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 17 1 0 0")

ENV = {
    "VPROV_EDGE_GLOBAL_ENDPOINT": "mqtts://127.0.0.1:19883",
    "VPROV_GATEWAY_ENDPOINT_NA": "mqtts://127.0.0.1:19884",
    "VPROV_IDENTITY": "mosquitto",
    "VPROV_EDGE_ADMIN_USERNAME": "vprov-identity",
    "VPROV_EDGE_ADMIN_PASSWORD": "admin-secret",
    "VPROV_EDGE_BRIDGE_USERNAME": "vprov-edge",
    "VPROV_EDGE_BRIDGE_PASSWORD": "bridge-secret",
    "VPROV_EDGE_CREDENTIAL_SECRET": "device-secret",
}


def test_cpu_seconds_come_from_utime_and_stime_after_the_command_name() -> None:
    assert proc_cpu_seconds(STAT, 100) == pytest.approx(3.0)
    assert proc_cpu_seconds(STAT, 250) == pytest.approx(1.2)


def test_cpu_per_message_counts_both_directions() -> None:
    assert us_per_message(0.5, 1000) == pytest.approx(500.0)
    assert us_per_message(0.5, 0) is None
    cost = BridgeCost("NA", cpu_seconds=0.3, to_kafka=200, to_devices=100, idle_cpu_percent=1.0)
    assert cost.messages == 300
    assert cost.us_per_message == pytest.approx(1000.0)
    report = edge_report()
    # both bridges: (0.2 + 0.3) CPU s over (100 + 100) + (200 + 200) messages
    assert report.us_per_message == pytest.approx(1e6 * 0.5 / 600)
    # idle 1.5% of a core each over the 5 s path: 0.075 s of each bridge's CPU was idling
    both = combined(report.bridges)
    assert (both.messages, both.idle_cpu_percent, both.wall) == (600, 3.0, 5.0)
    assert both.us_per_message_above_idle == pytest.approx(1e6 * (0.5 - 0.15) / 600)
    assert report.bridges[0].us_per_message_above_idle == pytest.approx(1e6 * 0.125 / 200)
    assert BridgeCost("NA", 0.01, 10, 10, 50.0, 5.0).us_per_message_above_idle == 0.0
    assert cost.us_per_message_above_idle is None  # no wall time recorded


def test_the_stack_env_lines_are_read_with_or_without_export() -> None:
    text = ("export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092\nVPROV_IDENTITY=mosquitto\n"
            "export VPROV_EDGE_CA_LOCATION='/tmp/a dir/ca.pem'\nnot a setting\n# x=1\n")
    assert parse_env(text) == {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
                               "VPROV_IDENTITY": "mosquitto",
                               "VPROV_EDGE_CA_LOCATION": "/tmp/a dir/ca.pem"}


def test_settings_come_from_the_environment_first() -> None:
    settings = edge_settings("NA", ENV, fallback=lambda: pytest.fail("not asked"))
    assert settings.edge["identity"] == "mosquitto"
    assert settings.edge["global_endpoint"] == "mqtts://127.0.0.1:19883"
    assert settings.edge["bridge_password"] == "bridge-secret"
    assert settings.gateways == {"NA": "mqtts://127.0.0.1:19884"}
    assert settings.source == "the environment"


def test_settings_fall_back_to_the_stack_and_say_what_is_missing() -> None:
    printed = "\n".join(f"export {k}={v}" for k, v in ENV.items())
    settings = edge_settings("NA", {"VPROV_IDENTITY": "redis"}, fallback=lambda: printed)
    assert settings.edge["identity"] == "mosquitto"  # the phase's identities are the broker's
    assert settings.source == "`scripts/stack.sh env`"
    with pytest.raises(EdgeUnavailable, match="VPROV_GATEWAY_ENDPOINT_EU.*make up EDGE=mqtt"):
        edge_settings("EU", {}, fallback=lambda: printed)
    with pytest.raises(EdgeUnavailable, match="VPROV_EDGE_GLOBAL_ENDPOINT"):
        edge_settings("NA", {}, fallback=lambda: "")


def test_the_edge_config_names_the_brokers_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = edge_settings("NA", {**ENV, "VPROV_EDGE_CA_LOCATION": str(ca)})
    path = tmp_path / "edge.toml"
    config = write_config(path, "ebtest", "127.0.0.1:19592", "redis://127.0.0.1:19579/0",
                          ("NA",), edge=settings.edge, gateways=settings.gateways)
    assert config.edge.identity == "mosquitto"
    assert config.edge.ca_location == str(ca)
    assert config.region("NA").gateway_endpoint == "mqtts://127.0.0.1:19884"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_differences_are_said_in_words() -> None:
    assert difference(80.4, 50.0) == "30 ms more"
    assert difference(50.0, 62.0) == "12 ms less"
    assert difference(50.2, 50.0) == "the same"
    assert difference(float("nan"), 50.0) == "not measured"
    found = differences(edge_report())
    assert found == {"query_p50": "20 ms more", "query_p99": "20 ms more",
                     "device_p50": "10 ms more", "device_p99": "10 ms more"}
    assert differences(EdgeReport("NA", 10, 5, 50)) is None


def test_the_tables_rows_carry_each_paths_figures() -> None:
    report = edge_report()
    mqtt, kafka = path_rows(report)
    assert mqtt[:3] == ["MQTT (device → broker → bridge → Kafka)", "50/50", "10.0"]
    assert kafka[0] == "Kafka-direct"
    assert mqtt[3:11] == ["70", "70", "70", "70", "40", "40", "40", "40"]
    assert kafka[3:11] == ["50", "50", "50", "50", "30", "30", "30", "30"]
    assert mqtt[11:] == ["9", "20.0", "4.0", "3.5", "40%"]
    assert kafka[11] == "-"  # no sender lag recorded
    rows = bridge_rows(report)
    assert [r[0] for r in rows] == ["global", "NA", "both"]
    assert rows[0] == ["global", "100", "100", "200", "0.20", "1,000", "1.5%", "625"]
    assert rows[2] == ["both", "300", "300", "600", "0.50", "833", "3.0%", "583"]


def test_the_page_has_the_edge_section_with_its_tables_and_sentences() -> None:
    report = bare_report()
    report.edge = edge_report()
    doc = page.markdown(report, None, None, None)
    assert "## Device edge: MQTT beside Kafka-direct\n" in doc
    assert "50 vehicles per path at 10 vehicles/s offered for 5 s (open loop)" in doc
    assert "| MQTT (device → broker → bridge → Kafka) | 50/50 | 10.0 | 70 |" in doc
    assert ("Over MQTT, against Kafka-direct: query → answer 20 ms more at p50 and 20 ms more "
            "at p99; device → answer 10 ms more at p50") in doc
    assert "Load average (1 min) as each path began, on 2 cores: MQTT" in doc
    assert ("opened 150 MQTT connections during the MQTT path (per vehicle: the global broker, "
            "the NA broker") in doc
    assert "p50 4 ms, p99 6 ms each, 0.8 s in all over the 5 s of the path" in doc
    assert "| both | 300 | 300 | 600 | 0.50 | 833 | 3.0% | 583 |" in doc
    assert "Both bridges together: **833 µs of CPU per message forwarded**, 583 µs above " \
           "idle." in doc
    assert doc.index("## Device edge") < doc.index("## Baseline")
    assert "bridge both: 600 messages" in "\n".join(console_lines(report.edge))


def test_a_run_without_the_edge_phase_has_no_edge_section() -> None:
    assert "Device edge" not in page.markdown(bare_report(), None, None, None)


def edge_report() -> EdgeReport:
    report = EdgeReport("NA", rate=10.0, seconds=5.0, vehicles=50,
                        settings_from="the environment")
    for via, query, device, load in (("mqtt", 0.07, 0.04, 3.5), ("kafka", 0.05, 0.03, 3.0)):
        result = PhaseResult(via, 10.0, 50, started_at=0.0, send_end=5.0, ended_at=5.5,
                             completed=50)
        result.completion_times = [0.1 * (i + 1) for i in range(50)]
        result.query_latency = [query] * 50
        result.device_latency = [device] * 100
        if via == "mqtt":
            result.send_lag = [0.001 * (i % 10) for i in range(50)]
        cpu = {"global": 0.6, "regional": 0.4, "mosquitto": 0.2}
        report.paths.append(EdgePath(via, result, cpu, wall=5.0, machine=3.2,
                                     load=(load, 2.0, 1.0),
                                     connects=[0.004, 0.006] * 75 if via == "mqtt" else []))
    report.bridges = [BridgeCost("global", 0.2, 100, 100, 1.5, wall=5.0),
                      BridgeCost("NA", 0.3, 200, 200, 1.5, wall=5.0)]
    return report
