"""Connection settings of every Kafka client, one function per library, from the configuration.

The workers use aiokafka through Faust (``faust_settings``), everything else uses confluent-kafka
(``librdkafka``). Both read the same ``[kafka.security]`` table, so a client cannot be opened
without the TLS and SASL settings the configuration asks for.

A caller holding only a bootstrap address (a benchmark, a test) passes the string: its security
settings then come from the environment variables that override the configuration
(``KAFKA_SECURITY_PROTOCOL`` and the rest, docs/configuration.md).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol

from vprov.config import KafkaSecurity, security_from_env


class KafkaAccess(Protocol):
    """Where Kafka is and how to talk to it; ``vprov.config.Config`` is one."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def kafka_security(self) -> KafkaSecurity: ...


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)


def access(target: KafkaAccess | str) -> KafkaAccess:
    """``target`` itself, or a bare bootstrap address with the environment's security."""
    if isinstance(target, str):
        return KafkaConnection(target, security_from_env())
    return target


def librdkafka(target: KafkaAccess | str) -> dict[str, Any]:
    """confluent-kafka settings: the brokers and how to authenticate to them."""
    target = access(target)
    sec = target.kafka_security
    settings: dict[str, Any] = {"bootstrap.servers": target.bootstrap_servers,
                                "security.protocol": sec.protocol}
    if sec.sasl:
        settings.update({"sasl.mechanism": sec.sasl_mechanism,
                         "sasl.username": sec.sasl_username,
                         "sasl.password": sec.sasl_password})
    if sec.tls:
        if sec.ssl_ca_location:
            settings["ssl.ca.location"] = sec.ssl_ca_location
        if sec.ssl_certificate_location:
            settings["ssl.certificate.location"] = sec.ssl_certificate_location
            settings["ssl.key.location"] = sec.ssl_key_location
    return settings


# How the workers' librdkafka producer follows a partition whose leader moved (a broker
# stopped, restarted or lost). Fixed values rather than settings: they bound a wait after an
# error, and cost nothing while the cluster is healthy.
LEADER_MOVES: dict[str, Any] = {
    # A produce request answered NOT_LEADER_OR_FOLLOWER is retried, and the partition's leader
    # looked up again, with a backoff that doubles from retry.backoff.ms (100) up to this cap
    # (1000 by default). A broker that just took over a partition answers NOT_LEADER until it
    # has applied the change (a second or two for one restarted moments before): with the
    # default cap the records then waited up to a second more.
    "retry.backoff.max.ms": 250,
    # A broker that was down is connected to again after a backoff doubling up to this cap (10 s
    # by default): a broker restarted in a rolling restart leads partitions again as soon as the
    # next one stops, and is reached within a second.
    "reconnect.backoff.max.ms": 1000,
}

# A reader that hands on each record as soon as it comes (the edge bridge's answers, the fleet
# simulator's answer reader). The broker answers a waiting fetch as soon as a record reaches
# one of its partitions, so the wait only bounds how often an idle reader asks again: an idle
# reader of 40 partitions cost the broker 0.17-0.21 of a core at 10 ms and 0.04 at 500 ms, with
# the same delivery latency (p50 3 to 4 ms; docs/benchmarks.md, "Fetches of an idle reader").
PROMPT_READER: dict[str, Any] = {"fetch.min.bytes": 1, "fetch.wait.max.ms": 500}


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext:
    """The TLS context aiokafka uses: the configured CA (else the system's), the client
    certificate when there is one, host names checked."""
    context = ssl.create_default_context(cafile=sec.ssl_ca_location or None)
    if sec.ssl_certificate_location:
        context.load_cert_chain(sec.ssl_certificate_location, sec.ssl_key_location)
    return context


def faust_settings(target: KafkaAccess | str) -> dict[str, Any]:
    """``faust.App`` keyword arguments: ``broker`` and, when secured, ``broker_credentials``.

    Faust's ``SASLCredentials`` means PLAIN over SASL_PLAINTEXT unless it is given both the
    mechanism and, for SASL_SSL, a TLS context: both are always passed."""
    import faust

    target = access(target)
    sec = target.kafka_security
    settings: dict[str, Any] = {
        "broker": [f"kafka://{server.strip()}"
                   for server in target.bootstrap_servers.split(",") if server.strip()]}
    if sec.sasl:
        settings["broker_credentials"] = faust.SASLCredentials(
            username=sec.sasl_username, password=sec.sasl_password,
            mechanism=sec.sasl_mechanism, ssl_context=ssl_context(sec) if sec.tls else None)
    elif sec.tls:
        settings["broker_credentials"] = faust.SSLCredentials(ssl_context(sec))
    return settings
