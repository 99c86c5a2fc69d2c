"""Least privilege on Kafka: one principal per role, its ACLs derived from the topic catalogue.

A role lists the topics it reads and writes, the prefixes of its own internal topics (Faust's
changelogs and the repartition hops are named after the application id) and its consumer
groups. Everything here is computed from ``Catalogue``, so a new topic or a new region gets its
ACLs with no other change. ``vprov acls`` prints the bindings, ``vprov acls --apply`` creates
them (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from vprov.config import Config
from vprov.kafka.catalogue import Catalogue, TopicSpec
from vprov.kafka.settings import KafkaAccess

# Consumer groups of the command-line readers (vprov.kafka.clients.consumer without a group).
READER_GROUP_PREFIX = "vprov-reader-"


@dataclass(frozen=True)
class Role:
    name: str  # "global", "regional-NA", "publisher", "gateway", "subscriber", "fleet-admin"
    username: str  # the SASL user, principal User:<username>
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # its internal topics (every operation) and the groups of its own readers (the worker's
    # offset probe and local state check)
    own_prefixes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # consumer groups (literal)
    group_prefixes: tuple[str, ...] = ()
    worker: bool = False  # creates the topics it uses and checks their settings

    @property
    def principal(self) -> str:
        return f"User:{self.username}"

    def owns(self, topic: str) -> bool:
        return topic.startswith(self.own_prefixes) if self.own_prefixes else False

    def topics(self, catalogue: Catalogue) -> list[TopicSpec]:
        """The catalogue's topics this role uses, for a worker to create before it starts."""
        used = set(self.reads) | set(self.writes)
        return [s for s in catalogue.all() if s.name in used or self.owns(s.name)]


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW ACL, in Kafka's terms."""

    principal: str
    resource: str  # TOPIC or GROUP
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, CREATE, DESCRIBE_CONFIGS, ALL

    def __str__(self) -> str:
        return (f"{self.principal:28} {self.resource:5} {self.pattern:8} {self.operation:16} "
                f"{self.name}")


def _own(app_id: str) -> tuple[str, ...]:
    # "<app id>." for the repartition hops, "<app id>-" for Faust's changelogs; the separator
    # keeps region NA's prefix from covering a region named NAX
    return (f"{app_id}.", f"{app_id}-")


def roles(config: Config) -> list[Role]:
    cat = Catalogue(config)
    regions = list(config.regions)
    found = [Role(
        "global", "vprov-global",
        reads=(cat.query, cat.registrations, cat.rehome_result, cat.admin),
        writes=(cat.query_response, cat.lifecycle, cat.deadletter, cat.admin_outcome,
                *(cat.rehome(r) for r in regions)),
        own_prefixes=_own(cat.global_app_id), groups=(cat.global_app_id,), worker=True)]
    for r in regions:
        app = cat.regional_app_id(r)
        found.append(Role(
            f"regional-{r}", f"vprov-regional-{r}",
            reads=(cat.rehome(r), cat.device(r)),
            writes=(cat.rehome_result, cat.device_response(r), cat.onboarding(r),
                    cat.lifecycle, cat.deadletter),
            own_prefixes=_own(app), groups=(app,), worker=True))
    found += [
        Role("publisher", "vprov-publisher", writes=(cat.registrations,)),
        Role("gateway", "vprov-gateway",
             reads=(cat.query_response, *(cat.device_response(r) for r in regions)),
             writes=(cat.query, *(cat.device(r) for r in regions)),
             group_prefixes=(READER_GROUP_PREFIX, "vprov-gateway-")),
        Role("subscriber", "vprov-subscriber", reads=(cat.lifecycle,),
             group_prefixes=(READER_GROUP_PREFIX, "vprov-subscriber-")),
        # vprov vehicle: sends operators' commands, reads their outcomes
        Role("fleet-admin", "vprov-fleet-admin", reads=(cat.admin_outcome,),
             writes=(cat.admin,), group_prefixes=(READER_GROUP_PREFIX, "vprov-fleet-admin-")),
    ]
    return found


def role(config: Config, name: str) -> Role:
    for found in roles(config):
        if found.name == name:
            return found
    known = ", ".join(r.name for r in roles(config))
    raise ValueError(f"unknown role {name!r}; roles: {known}")


def worker_role(config: Config, region: str | None) -> Role:
    return role(config, "global" if region is None else f"regional-{region}")


def bindings(found: list[Role]) -> list[Binding]:
    """Every ALLOW binding of ``found``. READ and WRITE imply DESCRIBE in Kafka."""
    out: set[Binding] = set()
    for r in found:
        def add(resource: str, pattern: str, name: str, *operations: str, r: Role = r) -> None:
            out.update(Binding(r.principal, resource, name, pattern, op) for op in operations)

        extra = ("CREATE", "DESCRIBE_CONFIGS") if r.worker else ()
        for topic in r.reads:
            add("TOPIC", "LITERAL", topic, "READ", *extra)
        for topic in r.writes:
            add("TOPIC", "LITERAL", topic, "WRITE", *extra)
        for prefix in r.own_prefixes:
            add("TOPIC", "PREFIXED", prefix, "ALL")
            add("GROUP", "PREFIXED", prefix, "READ")
        for group in r.groups:
            add("GROUP", "LITERAL", group, "READ")
        for prefix in r.group_prefixes:
            add("GROUP", "PREFIXED", prefix, "READ")
    return sorted(out)


def on_cluster(config: Config, found: list[Role], cluster: str) -> list[Binding]:
    """The bindings of ``found`` for one cluster when regions have clusters of their own: a
    worker's principal only on its own cluster, the gateway wherever devices write, the others
    on the global cluster; and only for the topics placed on that cluster."""
    topics = {s.name for s in Catalogue(config).placement()[cluster]}

    def lives_here(r: Role) -> bool:
        if r.name == "gateway":
            return True
        region = r.name.removeprefix("regional-")
        if region != r.name:
            return config.cluster(region).name == cluster
        return cluster == config.global_cluster.name

    kept = []
    for b in bindings([r for r in found if lives_here(r)]):
        if b.resource == "TOPIC" and b.pattern == "LITERAL" and b.name not in topics:
            continue
        kept.append(b)
    return kept


def apply(kafka: KafkaAccess | str, found: list[Binding], timeout: float = 30.0) -> None:
    """Create the bindings (idempotent: Kafka keeps one copy of an ACL) with an admin client
    whose principal may alter ACLs."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    from vprov.kafka.clients import admin_client

    acls = [AclBinding(ResourceType[b.resource], b.name, ResourcePatternType[b.pattern],
                       b.principal, "*", AclOperation[b.operation], AclPermissionType.ALLOW)
            for b in found]
    with admin_client(kafka) as admin:
        for future in admin.create_acls(acls, request_timeout=timeout).values():
            future.result()
