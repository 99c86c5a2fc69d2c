"""The workers' consumer-group timing against what the broker allows.

A broker refuses a member whose session timeout lies outside its
``group.min.session.timeout.ms``..``group.max.session.timeout.ms`` (6 s..30 min by default);
Faust would then retry the join forever. A worker checks the range before it starts and stops
with one line naming the fix (docs/operations.md, "Failover").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource

from vprov.config import Config
from vprov.kafka.clients import admin_client

log = logging.getLogger(__name__)

MIN_KEY = "group.min.session.timeout.ms"
MAX_KEY = "group.max.session.timeout.ms"


@dataclass(frozen=True)
class SessionBounds:
    """The session timeouts one broker accepts, in ms."""

    minimum: int
    maximum: int


def session_timeout_problem(session_timeout_ms: int, bounds: SessionBounds) -> str | None:
    """Why the broker would refuse ``session_timeout_ms``, with the fix; None when it fits."""
    if session_timeout_ms < bounds.minimum:
        return (f"kafka.session_timeout_ms={session_timeout_ms} is below the broker's "
                f"{MIN_KEY}={bounds.minimum}: set kafka.session_timeout_ms "
                f"(VPROV_SESSION_TIMEOUT_MS) to at least {bounds.minimum}, or lower {MIN_KEY} "
                "on the brokers")
    if session_timeout_ms > bounds.maximum:
        return (f"kafka.session_timeout_ms={session_timeout_ms} is above the broker's "
                f"{MAX_KEY}={bounds.maximum}: set kafka.session_timeout_ms "
                f"(VPROV_SESSION_TIMEOUT_MS) to at most {bounds.maximum}")
    return None


def broker_bounds(config: Config, timeout: float) -> SessionBounds | None:
    """The bounds one broker of ``config``'s cluster reports; None when it does not say (a
    principal without DescribeConfigs on the cluster): the join then tells."""
    with admin_client(config) as admin:
        try:
            brokers = admin.list_topics(timeout=timeout).brokers
            broker = str(min(brokers))
            resource = ConfigResource(ConfigResource.Type.BROKER, broker)
            entries = admin.describe_configs([resource])[resource].result(timeout)
            return SessionBounds(int(entries[MIN_KEY].value), int(entries[MAX_KEY].value))
        except (KafkaException, KeyError, ValueError) as exc:
            log.info("cannot read the broker's session timeout bounds (%s); not checked", exc)
            return None


def check_session_timeout(config: Config, timeout: float) -> str | None:
    bounds = broker_bounds(config, timeout)
    return session_timeout_problem(config.session_timeout_ms, bounds) if bounds else None
