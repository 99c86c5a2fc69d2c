"""Topic administration with confluent-kafka's AdminClient."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from vprov.topics import TopicSpec


class BrokerUnavailable(RuntimeError):
    pass


def admin_client(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": 10000})


def ensure_topics(bootstrap_servers: str, specs: list[TopicSpec], timeout: float = 30.0
                  ) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created. Idempotent."""
    admin = admin_client(bootstrap_servers)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {bootstrap_servers} ({exc}); start it with `make up` or "
            "set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                  config=s.config) for s in missing],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
