"""The one line a command prints when Kafka, Redis or a worker cannot be reached, and the checks
that produce it (against local ports only: closed ones, and servers that accept and never
answer)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests import ports
from vprov import cli, config, reach
from vprov.config import KafkaSecurity
from vprov.kafka.settings import KafkaConnection
from vprov.kafka.topic_admin import BrokerUnavailable
from vprov.ops.status import WorkerUnreachable
from vprov.reach import Unreachable

# --- the messages --------------------------------------------------------------------------------


def test_the_line_names_what_where_the_setting_and_why() -> None:
    exc = Unreachable("Kafka", "127.0.0.1:9092", "KAFKA_BOOTSTRAP_SERVERS", "connection refused")
    assert str(exc) == ("cannot reach Kafka at 127.0.0.1:9092 (KAFKA_BOOTSTRAP_SERVERS): "
                        "connection refused")
    hinted = Unreachable("Redis", "redis://h:1/0", "REDIS_URL", "no answer within 3 s", "hint")
    assert str(hinted) == ("cannot reach Redis at redis://h:1/0 (REDIS_URL): no answer within "
                           "3 s; hint")
    assert (hinted.what, hinted.address, hinted.setting, hinted.reason) == (
        "Redis", "redis://h:1/0", "REDIS_URL", "no answer within 3 s")


def test_broker_unavailable_is_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:1")
    exc = BrokerUnavailable("k:1", "connection refused")
    assert isinstance(exc, Unreachable) and isinstance(exc, RuntimeError)
    assert str(exc) == "cannot reach Kafka at k:1 (KAFKA_BOOTSTRAP_SERVERS): connection refused"


def test_worker_unreachable_names_the_option_and_how_to_start_one() -> None:
    exc = WorkerUnreachable("http://127.0.0.1:7000/", "connection refused")
    assert str(exc) == (
        "cannot reach the global worker at http://127.0.0.1:7000 (--global-url): connection "
        "refused; start the workers with `make demo` or `vprov worker --role global "
        "--web-port <port>`")
    default = WorkerUnreachable("http://127.0.0.1:6066", "connection refused")
    assert "(default of --global-url)" in str(default)
    regional = WorkerUnreachable("http://127.0.0.1:6067", "no answer within 2 s", role="NA",
                                 default="http://127.0.0.1:6067")
    assert str(regional) == (
        "cannot reach the NA worker at http://127.0.0.1:6067 (default of --region-url NA=URL): "
        "no answer within 2 s; start the workers with `make demo` or `vprov worker --role "
        "regional --region NA --web-port <port>`")
    assert "(--region-url EU=URL)" in str(WorkerUnreachable("http://h:1", "x", role="EU"))


def test_the_setting_is_the_variable_the_file_or_the_default(tmp_path: Path) -> None:
    defaults = config.load(env={})
    assert reach.kafka_setting(defaults, env={"KAFKA_BOOTSTRAP_SERVERS": "h:1"}) == \
        "KAFKA_BOOTSTRAP_SERVERS"
    assert reach.kafka_setting(defaults, env={}) == "default of KAFKA_BOOTSTRAP_SERVERS"
    assert reach.redis_setting(defaults, env={"REDIS_URL": "redis://h"}) == "REDIS_URL"
    assert reach.redis_setting(defaults, env={}) == "default of REDIS_URL"
    own = tmp_path / "own.toml"
    own.write_text(config.DEFAULTS_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    from_file = config.load(own, env={})
    assert reach.kafka_setting(from_file, env={}) == f"kafka.bootstrap_servers in {own}"
    assert reach.redis_setting(from_file, env={}) == f"redis.url in {own}"
    assert reach.kafka_setting(from_file, env={"KAFKA_BOOTSTRAP_SERVERS": "h:1"}) == \
        "KAFKA_BOOTSTRAP_SERVERS"


def test_reasons_are_short_and_lower_case() -> None:
    assert reach.os_reason(ConnectionRefusedError(111, "Connection refused"), 3) == \
        "connection refused"
    assert reach.os_reason(TimeoutError("timed out"), 2.5) == "no answer within 2.5 s"
    assert reach.os_reason(socket.gaierror(-2, "Name or service not known"), 1, "nohost") == \
        "cannot resolve host nohost"
    assert reach.os_reason(OSError(113, "No route to host"), 1) == "no route to host"
    assert reach.kafka_reason(KafkaError(KafkaError._TRANSPORT)) == \
        "broker transport failure (no connection to a broker)"
    assert reach.kafka_reason(KafkaError(KafkaError._TIMED_OUT), 4) == "no answer within 4 s"


def test_a_late_kafka_error_is_one_line_too() -> None:
    assert reach.kafka_failure(KafkaError(KafkaError._ALL_BROKERS_DOWN), "k:1", "S") == \
        "cannot reach Kafka at k:1 (S): broker transport failure (no connection to a broker)"
    refused = reach.kafka_failure(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                             "not allowed"), "k:1", "S")
    assert refused == ("Kafka at k:1 (S) refused a request: not allowed; this client lacks an "
                       "ACL for it: `vprov acls` lists each role's, and an admin creates them "
                       "with `vprov acls --apply`")


def _secured(**security: str) -> KafkaConnection:
    return KafkaConnection("k:1", KafkaSecurity(protocol="SASL_SSL", sasl_username="u",
                                                sasl_password="p", **security))


def test_a_refused_password_names_the_user_and_the_settings() -> None:
    error = KafkaError(KafkaError._AUTHENTICATION,
                       "sasl_ssl://k:1/bootstrap: SASL authentication error: Authentication "
                       "failed during authentication due to invalid credentials with SASL "
                       "mechanism SCRAM-SHA-512 (after 306ms in state AUTH_REQ)")
    refused = reach.kafka_refusal([KafkaError(KafkaError._ALL_BROKERS_DOWN), error], _secured())
    assert str(refused) == (
        "Kafka at k:1 refused to authenticate user 'u' with SCRAM-SHA-512: SASL authentication "
        "error: Authentication failed during authentication due to invalid credentials with "
        "SASL mechanism SCRAM-SHA-512; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")


def test_an_unknown_ca_names_the_ca_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", __file__)
    error = KafkaError(KafkaError._SSL, "sasl_ssl://k:1/bootstrap: SSL handshake failed: "
                       "error:0A000086:SSL routines::certificate verify failed")
    refused = reach.kafka_refusal([error], _secured(ssl_ca_location=__file__))
    assert str(refused) == (f"Kafka at k:1: the broker's TLS certificate is not signed by a CA "
                            f"in {__file__}; set KAFKA_SSL_CA_LOCATION to the CA that signed it")


def test_a_broker_that_is_merely_down_is_no_refusal() -> None:
    assert reach.kafka_refusal([KafkaError(KafkaError._ALL_BROKERS_DOWN)], _secured()) is None


def test_passwords_are_not_shown() -> None:
    assert reach.redact("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert reach.redact("redis://user:s3cret@h/0") == "redis://user:***@h/0"
    assert reach.redact("redis://h:6379/0") == "redis://h:6379/0"


def test_bootstrap_lists_parse() -> None:
    assert reach.kafka_addresses("a:1, PLAINTEXT://b:2,[::1]:3,c") == [
        ("a", 1), ("b", 2), ("::1", 3), ("c", 9092)]
    for bad in ("", "a:x", "a:0", ":1"):
        with pytest.raises(ValueError):
            reach.kafka_addresses(bad)


def test_the_timeout_is_the_option_else_the_variable_else_10() -> None:
    assert reach.connect_timeout(3.0, env={"VPROV_CONNECT_TIMEOUT": "5"}) == 3.0
    assert reach.connect_timeout(None, env={"VPROV_CONNECT_TIMEOUT": " 5 "}) == 5.0
    assert reach.connect_timeout(None, env={"VPROV_CONNECT_TIMEOUT": ""}) == 10.0
    assert reach.connect_timeout(None, env={}) == 10.0
    for bad in ("abc", "0", "-1", "nan", "inf"):
        with pytest.raises(config.ConfigError, match="VPROV_CONNECT_TIMEOUT"):
            reach.connect_timeout(None, env={"VPROV_CONNECT_TIMEOUT": bad})


# --- the checks, on local ports ------------------------------------------------------------------


def test_closed_ports_are_refused_at_once() -> None:
    port = ports.closed_port()
    began = time.monotonic()
    with pytest.raises(Unreachable) as kafka:
        reach.kafka(f"127.0.0.1:{port}", 5, "KAFKA_BOOTSTRAP_SERVERS")
    assert str(kafka.value) == (f"cannot reach Kafka at 127.0.0.1:{port} "
                                "(KAFKA_BOOTSTRAP_SERVERS): connection refused")
    with pytest.raises(Unreachable) as redis:
        reach.redis(f"redis://:pw@127.0.0.1:{port}/0", 5, "REDIS_URL")
    assert str(redis.value) == (f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0 "
                                "(REDIS_URL): connection refused")
    with pytest.raises(Unreachable) as worker:
        reach.http(f"http://127.0.0.1:{port}", "the global worker", 5, "--global-url")
    assert str(worker.value) == (f"cannot reach the global worker at http://127.0.0.1:{port} "
                                 "(--global-url): connection refused")
    assert time.monotonic() - began < 2


def test_two_bootstrap_servers_both_refused() -> None:
    a, b = ports.closed_port(), ports.closed_port()
    with pytest.raises(Unreachable, match="connection refused$"):
        reach.kafka(f"127.0.0.1:{a},127.0.0.1:{b}", 5, "S")


def test_silent_ports_are_given_up_after_the_timeout(silent_port: int) -> None:
    for check, expected in (
        (lambda: reach.redis(f"redis://127.0.0.1:{silent_port}/0", 0.5, "REDIS_URL"),
         f"cannot reach Redis at redis://127.0.0.1:{silent_port}/0 (REDIS_URL): no answer "
         "within 0.5 s"),
        (lambda: reach.http(f"http://127.0.0.1:{silent_port}", "the global worker", 0.5,
                            "--global-url"),
         f"cannot reach the global worker at http://127.0.0.1:{silent_port} (--global-url): "
         "no answer within 0.5 s"),
        (lambda: reach.kafka(f"127.0.0.1:{silent_port}", 1, "KAFKA_BOOTSTRAP_SERVERS"),
         f"cannot reach Kafka at 127.0.0.1:{silent_port} (KAFKA_BOOTSTRAP_SERVERS): the port "
         "accepts connections, but no Kafka broker answered within 1 s (vprov -v shows "
         "librdkafka's log)"),
    ):
        began = time.monotonic()
        with pytest.raises(Unreachable) as caught:
            check()
        assert str(caught.value) == expected
        assert time.monotonic() - began < 2.5, expected


def test_a_worker_url_that_is_not_http_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="expected http://host:port"):
        reach.http("localhost:6066", "the global worker", 1, "--global-url")


# --- main ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raised, line", [
    (KafkaException(KafkaError(KafkaError._TRANSPORT)),
     "error: cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS): broker transport "
     "failure (no connection to a broker)"),
    (WorkerUnreachable("http://h:1", "connection refused"),
     "error: cannot reach the global worker at http://h:1 (--global-url): connection refused; "
     "start the workers with `make demo` or `vprov worker --role global --web-port <port>`"),
])
def test_main_turns_infrastructure_failures_into_one_line_and_exit_3(
    raised: Exception, line: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")

    def fail(args: object) -> int:
        raise raised

    monkeypatch.setattr(cli, "cmd_topics", fail)
    assert cli.main(["topics", "create"]) == 3
    assert capsys.readouterr().err.strip() == line


def test_main_leaves_other_exceptions_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(args: object) -> int:
        raise KeyError("bug")

    monkeypatch.setattr(cli, "cmd_topics", fail)
    with pytest.raises(KeyError):
        cli.main(["topics", "create"])


def test_the_options_go_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["-v", "--connect-timeout", "3", "replay"])
    after = parser.parse_args(["replay", "-v", "--connect-timeout", "3"])
    neither = parser.parse_args(["replay"])
    assert (before.verbose, before.connect_timeout) == (True, 3.0)
    assert (after.verbose, after.connect_timeout) == (True, 3.0)
    assert (neither.verbose, neither.connect_timeout) == (False, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--connect-timeout", "0", "replay"])
