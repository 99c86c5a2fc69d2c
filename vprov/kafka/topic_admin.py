"""Topic administration with confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from vprov.config import Config
from vprov.kafka.catalogue import Catalogue, TopicSpec
from vprov.kafka.clients import admin_client
from vprov.kafka.settings import KafkaAccess, access
from vprov.reach import Unreachable, kafka_reason, kafka_setting

log = logging.getLogger(__name__)

# How long topic creation waits for brokers the replication factor needs: a cluster started
# beside the workers registers its brokers one by one, and a loaded broker can be fenced for a
# heartbeat or two; a cluster that is really too small still fails, with the fix, after this.
BROKER_WAIT_SECONDS = 20.0


class BrokerUnavailable(Unreachable):
    """No answer from Kafka: ``cannot reach Kafka at ADDRESS (SETTING): REASON``."""

    def __init__(self, bootstrap_servers: str, reason: str, setting: str | None = None) -> None:
        super().__init__("Kafka", bootstrap_servers, setting or kafka_setting(), reason)


@dataclass(frozen=True)
class ObservedTopic:
    """What the broker says about an existing topic."""

    partitions: int
    cleanup_policy: str  # as Kafka reports it: "delete", "compact" or "compact,delete"
    replication_factor: int | None = None  # the fewest replicas of any partition; None: unknown
    min_insync_replicas: int | None = None  # None: unknown

    @property
    def compacted(self) -> bool:
        return "compact" in (p.strip() for p in self.cleanup_policy.split(","))


@dataclass(frozen=True)
class Mismatch:
    spec: TopicSpec
    found: ObservedTopic

    @property
    def partitions_differ(self) -> bool:
        return self.found.partitions != self.spec.partitions

    @property
    def compaction_differs(self) -> bool:
        return self.found.compacted != self.spec.compacted

    # Replication only counts when below the setting: more is the operator's choice.
    @property
    def replication_low(self) -> bool:
        found = self.found.replication_factor
        return found is not None and found < self.spec.replication_factor

    @property
    def insync_low(self) -> bool:
        found = self.found.min_insync_replicas
        return found is not None and found < self.spec.min_insync_replicas

    @property
    def layout_differs(self) -> bool:
        """Partitions or compaction: what co-partitioning and the offset guard need."""
        return self.partitions_differ or self.compaction_differs

    @property
    def durability_low(self) -> bool:
        return self.replication_low or self.insync_low


class TopicMismatch(RuntimeError):
    """Existing topics disagree with the catalogue; the message says which and how to fix."""

    def __init__(self, message: str, mismatches: list[Mismatch]) -> None:
        super().__init__(message)
        self.mismatches = mismatches


def compare_topics(specs: Iterable[TopicSpec], observed: Mapping[str, ObservedTopic]
                   ) -> list[Mismatch]:
    """The existing topics (``observed``, by name) whose partition count or compaction differs
    from their spec, or whose replication is below it. Topics absent from ``observed`` do not
    exist yet and cannot disagree."""
    found = [Mismatch(spec, observed[spec.name]) for spec in specs if spec.name in observed]
    return [m for m in found if m.layout_differs or m.durability_low]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _policy(compacted: bool) -> str:
    return "compact" if compacted else "delete"


def _recreate_reason(m: Mismatch) -> str | None:
    """Why only deleting and re-creating the topic fixes it, or None when altering it does."""
    if m.found.partitions > m.spec.partitions:
        return "Kafka cannot remove partitions"
    if m.partitions_differ and m.spec.compacted:
        # A compacted topic is state read by key: added partitions would strand its keys.
        return "it holds state, and adding partitions would move its keys"
    if m.compaction_differs and not m.spec.compacted:
        return ("changing cleanup.policy may not be enough, as records compaction already "
                "removed would look lost to the offset guard")
    return None


def _fixes(m: Mismatch, bootstrap_servers: str) -> list[str]:
    """One fix for the layout, one per replication setting below the configuration."""
    fixes = [_fix(m, bootstrap_servers)] if m.layout_differs else []
    if m.replication_low:
        fixes.append(f"give each of its {_plural(m.found.partitions, 'partition')} "
                     f"{m.spec.replication_factor} replicas with `kafka-reassign-partitions.sh "
                     f"--bootstrap-server {bootstrap_servers} --reassignment-json-file FILE "
                     f"--execute`, FILE listing {m.spec.replication_factor} broker ids for each "
                     "partition (docs/operations.md, \"Three brokers\")")
    if m.insync_low:
        fixes.append(f"`kafka-configs.sh --bootstrap-server {bootstrap_servers} --alter "
                     f"--entity-type topics --entity-name {m.spec.name} --add-config "
                     f"min.insync.replicas={m.spec.min_insync_replicas}`")
    return fixes


def _fix(m: Mismatch, bootstrap_servers: str) -> str:
    name, expected = m.spec.name, m.spec.partitions
    recreate = (f"delete it with `kafka-topics.sh --bootstrap-server {bootstrap_servers} "
                f"--delete --topic {name}` and re-create it with `vprov topics create`")
    reason = _recreate_reason(m)
    if reason:
        return f"{reason}: {recreate}"
    if m.partitions_differ:  # fewer partitions on a topic that holds no state
        return (f"`kafka-topics.sh --bootstrap-server {bootstrap_servers} --alter --topic {name} "
                f"--partitions {expected}` (adding partitions moves keys: records already in it "
                f"stay on their old partition), or {recreate}")
    return (f"`kafka-configs.sh --bootstrap-server {bootstrap_servers} --alter --entity-type "
            f"topics --entity-name {name} --add-config cleanup.policy=compact`")


def mismatch_message(mismatches: list[Mismatch], observed: Mapping[str, ObservedTopic],
                     bootstrap_servers: str) -> str:
    """What was found and expected of each mismatched topic, and how to fix it. ``observed`` is
    every existing topic of the deployment, to tell whether setting the configured partition
    count to theirs is a fix too."""
    spec = mismatches[0].spec
    verb = "does" if len(mismatches) == 1 else "do"
    needs = []
    if any(m.layout_differs for m in mismatches):
        needs.append("Faust co-partitions every topic, so each table lookup needs all of them "
                     f"to have kafka.partitions = {spec.partitions} partitions, and "
                     "cleanup.policy=compact on the compacted ones only")
    if any(m.durability_low for m in mismatches):
        needs.append(f"Every topic needs at least kafka.replication_factor = "
                     f"{spec.replication_factor} replicas and min.insync.replicas = "
                     f"{spec.min_insync_replicas} (kafka.min_insync_replicas), so that a write "
                     "the brokers acknowledged survives the loss of a broker")
    lines = [f"{_plural(len(mismatches), 'topic')} of this deployment {verb} not match its "
             f"configuration. {'. '.join(needs)}:"]
    for m in mismatches:
        found, wanted = _differences(m)
        lines.append(f"  {m.spec.name}: found {' and '.join(found)}, "
                     f"expected {' and '.join(wanted)}")
        lines += [f"    fix: {fix}" for fix in _fixes(m, bootstrap_servers)]
    counts = {t.partitions for t in observed.values()}
    if any(m.partitions_differ for m in mismatches) and len(counts) == 1:
        (count,) = counts
        lines.append(f"Or keep the topics: all {_plural(len(observed), 'existing topic')} of "
                     f"this deployment have {count} partitions, so setting kafka.partitions = "
                     f"{count} (or VPROV_PARTITIONS={count}) matches their partition counts.")
    if any(m.spec.compacted and _recreate_reason(m) for m in mismatches):
        lines.append("Deleting a compacted topic deletes the state it holds: stop the workers "
                     "first, clear their --data-dir, and publish the registrations again with "
                     "`vprov register` once the topics are re-created.")
    return "\n".join(lines)


def _differences(m: Mismatch) -> tuple[list[str], list[str]]:
    """What was found and what is expected, for each setting of ``m`` that differs."""
    found, wanted = [], []
    if m.partitions_differ:
        found.append(_plural(m.found.partitions, "partition"))
        wanted.append(_plural(m.spec.partitions, "partition"))
    if m.compaction_differs:
        found.append(f"cleanup.policy={m.found.cleanup_policy}")
        wanted.append(f"cleanup.policy={_policy(m.spec.compacted)}")
    if m.replication_low:
        found.append(_plural(m.found.replication_factor or 0, "replica"))
        wanted.append(f"at least {_plural(m.spec.replication_factor, 'replica')}")
    if m.insync_low:
        found.append(f"min.insync.replicas={m.found.min_insync_replicas}")
        wanted.append(f"at least min.insync.replicas={m.spec.min_insync_replicas}")
    return found, wanted


def too_few_brokers_message(specs: list[TopicSpec], brokers: int, bootstrap_servers: str
                            ) -> str:
    """Why topics of ``specs`` cannot be created on a cluster of ``brokers`` brokers."""
    wanted = max(s.replication_factor for s in specs)
    return (f"kafka.replication_factor = {wanted}, but the Kafka cluster at {bootstrap_servers} "
            f"has {_plural(brokers, 'broker')} up, and a topic cannot have more replicas than "
            f"there are brokers: set kafka.replication_factor (VPROV_REPLICATION_FACTOR) to at "
            f"most {brokers} and kafka.min_insync_replicas (VPROV_MIN_INSYNC_REPLICAS) to at most "
            "that, or start the missing brokers")


@dataclass(frozen=True)
class Listing:
    """The cluster's topics as its metadata shows them."""

    partitions: dict[str, int]  # partition count per topic (0 while a new one has no metadata)
    replicas: dict[str, int]  # the fewest replicas of any of a topic's partitions
    brokers: int  # brokers up


def _list_topics(admin: AdminClient, bootstrap_servers: str, timeout: float) -> Listing:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(bootstrap_servers, kafka_reason(exc.args[0], timeout)) from None
    topics = metadata.topics.items()
    return Listing({name: len(topic.partitions) for name, topic in topics},
                   {name: min(len(p.replicas) for p in topic.partitions.values())
                    for name, topic in topics if topic.partitions},
                   len(metadata.brokers))


def _observe(admin: AdminClient, listing: Listing, names: Iterable[str],
             timeout: float) -> dict[str, ObservedTopic]:
    """Partition count, cleanup.policy and replication of those ``names`` that exist."""
    partitions = listing.partitions
    wanted = sorted({n for n in names if partitions.get(n)})  # the broker refuses repeats
    if not wanted:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in wanted],
                                     request_timeout=timeout)
    observed = {}
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue  # deleted since it was listed
            raise
        insync = entries.get("min.insync.replicas")
        observed[resource.name] = ObservedTopic(
            partitions[resource.name], entries["cleanup.policy"].value or "",
            listing.replicas.get(resource.name),
            int(insync.value) if insync is not None and insync.value else None)
    return observed


def check_topics(kafka: KafkaAccess | str, specs: list[TopicSpec], timeout: float = 30.0
                 ) -> list[Mismatch]:
    """The existing topics of ``specs`` that disagree with them (nothing is changed)."""
    kafka = access(kafka)
    bootstrap_servers = kafka.bootstrap_servers
    with admin_client(kafka) as admin:
        listing = _list_topics(admin, bootstrap_servers, timeout)
        return compare_topics(specs, _observe(admin, listing, (s.name for s in specs), timeout))


def _raise_on_mismatch(specs: list[TopicSpec], observed: dict[str, ObservedTopic],
                       bootstrap_servers: str) -> None:
    mismatches = compare_topics(specs, observed)
    if mismatches:
        raise TopicMismatch(mismatch_message(mismatches, observed, bootstrap_servers), mismatches)


def wait_for_brokers(list_topics: Callable[[], Listing], listing: Listing, needed: int,
                     wait: float, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> Listing:
    """The cluster's listing once it has ``needed`` brokers up, or the last one after ``wait``
    seconds."""
    log.warning("the Kafka cluster has %d of the %d brokers kafka.replication_factor needs up; "
                "waiting up to %.0f s for the others to register", listing.brokers, needed, wait)
    deadline = clock() + wait
    while listing.brokers < needed and clock() < deadline:
        sleep(0.5)
        listing = list_topics()
    return listing


def ensure_topics(kafka: KafkaAccess | str, specs: list[TopicSpec], timeout: float = 30.0,
                  check: bool = True, broker_wait: float = BROKER_WAIT_SECONDS) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created. Idempotent.

    With ``check``, existing topics whose partition count or compaction differs from their spec,
    or whose replication is below it, raise ``TopicMismatch`` — before anything is created, so
    that matching the configuration to the existing topics remains a fix. So do topics to create
    with more replicas than the cluster has brokers up after ``broker_wait`` seconds."""
    kafka = access(kafka)
    bootstrap_servers = kafka.bootstrap_servers
    with admin_client(kafka) as admin:
        listing = _list_topics(admin, bootstrap_servers, timeout)
        names = [s.name for s in specs]
        if check:
            _raise_on_mismatch(specs, _observe(admin, listing, names, timeout),
                               bootstrap_servers)
        missing = [s for s in specs if s.name not in listing.partitions]
        if not missing:
            return []
        needed = max(s.replication_factor for s in missing)
        if needed > listing.brokers:
            listing = wait_for_brokers(lambda: _list_topics(admin, bootstrap_servers, timeout),
                                       listing, needed, broker_wait)
            if needed > listing.brokers:
                raise TopicMismatch(too_few_brokers_message(missing, listing.brokers,
                                                            bootstrap_servers), [])
            missing = [s for s in missing if s.name not in listing.partitions]
            if not missing:
                return []
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                      config=s.config) for s in missing],
            operation_timeout=timeout,
        )
        created = []
        raced = []
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                raced.append(name)
        if check and raced:
            # Someone else created these meanwhile, perhaps with other settings.
            _raise_on_mismatch(specs, _observe_settled(admin, bootstrap_servers, names, raced,
                                                       timeout), bootstrap_servers)
        return created


def _observe_settled(admin: AdminClient, bootstrap_servers: str, names: list[str],
                     raced: list[str], timeout: float) -> dict[str, ObservedTopic]:
    """Observe ``names`` once the metadata of the ``raced`` topics has arrived (or up to 5 s)."""
    deadline = time.monotonic() + min(timeout, 5.0)
    while True:
        listing = _list_topics(admin, bootstrap_servers, timeout)
        if all(listing.partitions.get(n) for n in raced) or time.monotonic() >= deadline:
            return _observe(admin, listing, names, timeout)
        time.sleep(0.2)


def ensure_placed(config: Config, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """``ensure_topics`` on every cluster of ``config`` for the ``specs`` the topic catalogue
    places there (one cluster, or the global one and the regions')."""
    wanted = {s.name for s in specs}
    created: list[str] = []
    placement = Catalogue(config).placement()
    for cluster in config.clusters:
        mine = [s for s in placement[cluster.name] if s.name in wanted]
        if mine:
            created += ensure_topics(cluster, mine, timeout)
    return created
