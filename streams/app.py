"""Build a worker's Faust application: one consumer group per role (and per region)."""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import faust
from faust.tables.manager import TableManager
from faust.web import Response

from streams import collector
from streams import metrics as worker_metrics
from streams.repairs import standby_flush
from streams.repairs import store as repaired_store
from streams.repairs.producer import Batching
from streams.repairs.transport import FetchSettings, consumer_of, install
from streams.shell import Shell
from vprov.config import Config
from vprov.edge.dynsec import MosquittoIdentityRegistry
from vprov.identity import IdentityRegistry, RedisIdentityRegistry
from vprov.kafka.avro import serde_from_config
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.settings import faust_settings, librdkafka

# Faust's commit_every is a count of acknowledged records; this many is never reached
COMMIT_EVERY_NEVER = 2**62


@dataclass(frozen=True)
class WorkerOptions:
    role: str  # "global" or "regional"
    region: str | None
    web_port: int
    web_host: str = "127.0.0.1"
    data_dir: Path = Path(".run/data")
    # what tells this worker from the others of its role across restarts: a StatefulSet
    # ordinal, a host name (``group_instance_id``)
    instance: str | None = None


def group_instance_id(app_name: str, options: WorkerOptions) -> str:
    """The worker's static member id in its group: its role's group and its instance name,
    which defaults to the host name and web port (the same pair names its RocksDB directory),
    so a worker restarted in place comes back as the same member."""
    instance = options.instance or f"{socket.gethostname()}-{options.web_port}"
    return f"{app_name}.{instance}"


def app_id(catalogue: Catalogue, options: WorkerOptions) -> str:
    if options.role == "global":
        return catalogue.global_app_id
    assert options.region is not None
    return catalogue.regional_app_id(options.region)


def create_app(config: Config, options: WorkerOptions) -> tuple[faust.App, Shell]:
    catalogue = Catalogue(config)
    name = app_id(catalogue, options)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        name,
        # Faust's RocksDB store without its garbage collection on every rebalance
        store=repaired_store.register(),
        # one RocksDB directory per worker process: several workers may share a machine
        datadir=str(options.data_dir / f"{name}-{options.web_port}"),
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_port=options.web_port,
        web_bind=options.web_host,
        web_host=options.web_host,
        producer_linger=config.producer_linger_ms / 1000.0,
        producer_acks=-1,
        # offsets are committed by the timer, every second, beside the processing: Faust's
        # commit after every N acknowledgements runs inside the loop that hands records to the
        # agents, so while it waits (for the producer's records to be acknowledged by every
        # in-sync replica, for a group coordinator that moved) no record of any partition is
        # processed: a broker's restart stalled every answer for as long
        broker_commit_every=COMMIT_EVERY_NEVER,
        broker_commit_interval=1.0,
        # a warm copy of each table partition on another worker of the role: a partition that
        # moves replays only what its standby has not applied yet
        table_standby_replicas=config.table_standby_replicas,
        # a worker that dies without leaving the group is noticed after this long; the group
        # waits for it before handing its partitions to the others
        broker_session_timeout=config.session_timeout_ms / 1000,
        broker_heartbeat_interval=config.heartbeat_interval_ms / 1000,
        consumer_group_instance_id=(group_instance_id(name, options)
                                    if config.static_membership else None),
        # finish the events in flight before giving partitions away in a rebalance
        stream_wait_empty=True,
        topic_disable_leader=True,
        **faust_settings(config),  # broker and credentials
    )
    # Faust's consumer and producer with the commit guard (streams/repairs/commit_guard.py), and the
    # fetch settings Faust does not expose
    install(app, FetchSettings(min_bytes=config.fetch_min_bytes,
                               max_wait_ms=config.fetch_max_wait_ms,
                               batch_bytes=config.fetch_batch_bytes,
                               batch_wait_ms=config.fetch_batch_wait_ms),
            librdkafka(config) if config.producer_client == "librdkafka" else None,
            Batching(catalogue.batched(), config.producer_batch_linger_ms))
    registry = open_registry(config)
    metrics = worker_metrics.Metrics(catalogue, config, options.region)
    shell = Shell(app, catalogue, config, serde_from_config(config), registry, metrics)
    standby_flush.install(app)
    _health_page(app, shell)
    worker_metrics.install(app, shell, metrics)
    collector.install(app, lambda: is_ready(app))
    return app, shell


def is_ready(app: faust.App) -> bool:
    """Ready once partitions are assigned and every table has recovered from its changelog."""
    recovery = cast(TableManager, app.tables).recovery  # the interface does not declare it
    return (
        not app.rebalancing
        and recovery.completed.is_set()
        and not recovery.in_recovery
        and bool(app.consumer.assignment())
    )


def input_partitions(app: faust.App) -> int:
    """How many partitions of input topics (changelogs aside) this worker consumes: across a
    role's workers they add up to the role's total once a rebalance has settled."""
    try:
        assigned = app.consumer.assignment()
    except Exception:  # the consumer is not started yet
        return 0
    changelogs = app.tables.changelog_topics
    return sum(1 for tp in assigned if tp.topic not in changelogs)


def _health_page(app: faust.App, shell: Shell) -> None:
    @app.page("/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> Response:
        ready = is_ready(app)
        body = {
            "app": app.conf.id,
            "ready": ready,
            "input_partitions": input_partitions(app),
            # the group's generation this worker last joined: it moves with every rebalance
            "generation": app.consumer_generation_id,
            "processed": shell.processed,
            "dead_lettered": shell.dead_lettered,
            "forwarded": shell.forwarded,
            "local_state_discarded": shell.local_state_discarded,
            "changelog_records_applied": shell.changelog_records_applied,
            "bulk_restore": (dataclasses.asdict(shell.bulk_restored)
                             if shell.bulk_restored is not None else None),
            "retries": shell.retries,
        }
        return web.json(body, status=200 if ready else 503)

    @app.page("/debug/consumer")
    async def consumer_state(web: faust.web.View, request: faust.web.Request) -> Response:
        """What the consumer holds per partition and where each agent waits: for a partition
        that stops moving."""
        consumer = consumer_of(app)
        body = {
            "assigned": sorted(f"{tp.topic}:{tp.partition}" for tp in consumer.assignment()),
            **consumer.positions(),
            "agents": app.agents.human_tracebacks(),
        }
        return web.json(body)


def open_registry(config: Config) -> IdentityRegistry:
    """The identity registry ``edge.identity`` names: ``redis`` (the default) or ``mosquitto``
    (the IoT brokers' dynamic-security plugin, ``vprov.edge.dynsec``)."""
    if config.edge.identity == "mosquitto":
        return MosquittoIdentityRegistry(config)
    return RedisIdentityRegistry(config.redis_url, config.identity_backoff_max_seconds)
