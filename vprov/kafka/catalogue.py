"""The topic catalogue: every topic the processor reads or writes, with its settings.

docs/spec.md section 7 names the external topics; the internal ones carry the global worker's
repartition hops (see docs/architecture.md). Nothing else in the project spells a topic name.

It also says where each topic lives when regions have clusters of their own (``placement``,
``home``) and which topics MirrorMaker 2 copies between them (``mirror_flows``): a client picks
its cluster here, and the MirrorMaker configuration is generated from here (vprov/kafka/mirror.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from vprov.config import GLOBAL_CLUSTER, Cluster, Config

# Tables per role. Faust names a table's changelog "<app id>-<table>-changelog"; the catalogue
# creates those topics before a worker starts, so their partition count is ours, not a guess.
GLOBAL_TABLES = ("registrations", "systems", "vehicles")


def regional_table(region: str) -> str:
    return f"regional-vehicles-{region}"


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    compacted: bool = False
    internal: bool = False
    min_insync_replicas: int = 1

    @property
    def config(self) -> dict[str, str]:
        """Topic settings: set on the topic itself, so they hold whatever the brokers' defaults
        are (the broker-wide min.insync.replicas is often left at 1)."""
        settings = {"min.insync.replicas": str(self.min_insync_replicas)}
        if self.compacted:
            settings["cleanup.policy"] = "compact"
        return settings


@dataclass(frozen=True)
class RecordType:
    """What a topic's record values are.

    ``device-json``: the devices' JSON text, validated by the flow that reads it;
    ``avro``: an Avro record named ``name`` (``vprov.kafka.avro``);
    ``command``: an internal command of the union ``name`` (``vprov.core.commands``).
    ``tombstone``: an empty value is a deletion (compacted topics keyed by identity)."""

    codec: str
    name: str = ""
    tombstone: bool = False


DEVICE_JSON = RecordType("device-json")


@dataclass(frozen=True)
class MirrorFlow:
    """Topics MirrorMaker 2 copies from one cluster to another, under the same names."""

    source: str  # cluster names
    target: str
    topics: tuple[str, ...]


class Catalogue:
    """Topic names for one configuration; per-region names are methods taking the region code."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._t = config.topics

    # Faust application ids: one consumer group per role, and per region for regional workers.
    # The prefix lets two deployments share a broker (with their own topic names).
    @property
    def global_app_id(self) -> str:
        return f"{self._config.app_prefix}-global"

    def regional_app_id(self, region: str) -> str:
        return f"{self._config.app_prefix}-regional-{region}"

    # external topics (docs/spec.md section 7)
    @property
    def query(self) -> str:
        return self._t.query

    @property
    def query_response(self) -> str:
        return self._t.query_response

    @property
    def registrations(self) -> str:
        return self._t.registrations

    @property
    def rehome_result(self) -> str:
        return self._t.rehome_result

    @property
    def lifecycle(self) -> str:
        return self._t.lifecycle

    @property
    def deadletter(self) -> str:
        return self._t.deadletter

    @property
    def admin(self) -> str:
        return self._t.admin

    @property
    def admin_outcome(self) -> str:
        return self._t.admin_outcome

    def rehome(self, region: str) -> str:
        return self._t.rehome.format(region=region)

    def device(self, region: str) -> str:
        return self._t.device.format(region=region)

    def device_response(self, region: str) -> str:
        return self._t.device_response.format(region=region)

    def onboarding(self, region: str) -> str:
        return self._t.onboarding.format(region=region)

    # internal topics of the global worker (repartition hops)
    @property
    def system_registrations(self) -> str:
        return f"{self.global_app_id}.system-registrations"

    @property
    def query_by_system(self) -> str:
        return f"{self.global_app_id}.query-by-system"

    @property
    def query_by_device(self) -> str:
        return f"{self.global_app_id}.query-by-device"

    @property
    def vehicle_commands(self) -> str:
        return f"{self.global_app_id}.vehicle-commands"

    def regional_commands(self, region: str) -> str:
        """A regional worker's own commands to a vehicle's partition (its hold deadlines)."""
        return f"{self.regional_app_id(region)}.vehicle-commands"

    def record_type(self, topic: str) -> RecordType:
        """The type of ``topic``'s record values; KeyError for a topic not in the catalogue."""
        return self._record_types[topic]

    @cached_property
    def _record_types(self) -> dict[str, RecordType]:
        # built once: a step taking a hop in place asks for its topic's type on every record
        types = {
            self.query: DEVICE_JSON,
            self.query_response: DEVICE_JSON,
            self.registrations: RecordType("avro", "DeviceRegistration", tombstone=True),
            self.rehome_result: RecordType("avro", "RehomeResult"),
            self.lifecycle: RecordType("avro", "LifecycleEvent"),
            self.deadletter: RecordType("avro", "DeadLetter"),
            self.admin: RecordType("avro", "AdminCommand"),
            self.admin_outcome: RecordType("avro", "AdminOutcome"),
            self.system_registrations: RecordType("command", "index"),
            self.query_by_system: RecordType("command", "query-hop"),
            self.query_by_device: RecordType("command", "query-hop"),
            self.vehicle_commands: RecordType("command", "vehicle"),
        }
        for region in self._config.regions:
            types.update({
                self.rehome(region): RecordType("avro", "RehomeRequest"),
                self.device(region): DEVICE_JSON,
                self.device_response(region): DEVICE_JSON,
                self.onboarding(region): RecordType("avro", "ChipsetOnboardingRequest"),
                self.regional_commands(region): RecordType("command", "regional"),
            })
        routes = [self.ingress_routes(), *(self.ingress_routes(r) for r in self._config.regions)]
        for topic, rerouted in (pair for route in routes for pair in route.items()):
            types[rerouted] = types[topic]  # a rerouted topic carries its input topic's records
        return types

    # Ingress (docs/spec.md 3.7): an external input topic that feeds a table, and the internal topic
    # that carries its misrouted records to the partition owning their key.
    def ingress_routes(self, region: str | None = None) -> dict[str, str]:
        """For the global worker (``region`` None) or a region's worker: external input topic
        -> its rerouted topic."""
        if region is None:
            app = self.global_app_id
            return {self.query: f"{app}.rerouted.query",
                    self.registrations: f"{app}.rerouted.registrations"}
        return {self.device(region): f"{self.regional_app_id(region)}.rerouted.device"}

    def _spec(self, name: str, *, compacted: bool = False, internal: bool = False) -> TopicSpec:
        return TopicSpec(
            name=name,
            partitions=self._config.partitions,
            replication_factor=self._config.replication_factor,
            compacted=compacted,
            internal=internal,
            min_insync_replicas=self._config.min_insync_replicas,
        )

    def external(self) -> list[TopicSpec]:
        specs = [
            self._spec(self.query),
            self._spec(self.query_response),
            self._spec(self.registrations, compacted=True),
            self._spec(self.rehome_result),
            self._spec(self.lifecycle),
            self._spec(self.deadletter),
            self._spec(self.admin),
            self._spec(self.admin_outcome),
        ]
        for region in self._config.regions:
            specs += [
                self._spec(self.rehome(region)),
                self._spec(self.device(region)),
                self._spec(self.device_response(region)),
                self._spec(self.onboarding(region)),
            ]
        return specs

    def internal(self) -> list[TopicSpec]:
        specs = [
            self._spec(self.system_registrations, compacted=True, internal=True),
            self._spec(self.query_by_system, internal=True),
            self._spec(self.query_by_device, internal=True),
            self._spec(self.vehicle_commands, internal=True),
        ]
        # Rerouted topics are not compacted: each record is a request to process once, and
        # the commit guard holds their offsets like those of any request topic.
        plain = list(self.ingress_routes().values())
        for region in self._config.regions:
            plain += [*self.ingress_routes(region).values(), self.regional_commands(region)]
        return specs + [self._spec(name, internal=True) for name in plain]

    def changelogs(self) -> list[TopicSpec]:
        names = [changelog_topic(self.global_app_id, t) for t in GLOBAL_TABLES]
        for r in self._config.regions:
            names.append(changelog_topic(self.regional_app_id(r), regional_table(r)))
        return [self._spec(name, compacted=True, internal=True) for name in names]

    def all(self) -> list[TopicSpec]:
        return self.external() + self.internal() + self.changelogs()

    def batched(self) -> frozenset[str]:
        """Topics whose records no answer waits for and that one worker alone writes to a
        partition: table changelogs, onboarding requests and the registration index's commands.
        A worker's producer may hold them longer to send several of a partition's records in one
        request (``kafka.producer_batch_linger_ms``); the flush before an offset commit sends
        them all. Not lifecycle events: the global worker and the region write a vehicle's
        events to the same partition, and a REGIONAL event held back could land after the
        region's PROVISIONED."""
        names = {spec.name for spec in self.changelogs()}
        names |= {self.system_registrations}
        names |= {self.onboarding(r) for r in self._config.regions}
        return frozenset(names)

    # --- where each topic lives (docs/architecture.md, "Deployment topologies") ---------------

    def global_side(self) -> set[str]:
        """Topics the global worker and the global clients use: they live on the global cluster.
        ``rehome.<R>`` starts there; ``rehome.result`` and ``vehicle.lifecycle`` end there."""
        names = {self.query, self.query_response, self.registrations, self.rehome_result,
                 self.lifecycle, self.deadletter, self.admin, self.admin_outcome}
        names |= {self.rehome(r) for r in self._config.regions}
        names |= {self.system_registrations, self.query_by_system, self.query_by_device,
                  self.vehicle_commands, *self.ingress_routes().values()}
        names |= {changelog_topic(self.global_app_id, t) for t in GLOBAL_TABLES}
        return names

    def regional_side(self, region: str) -> set[str]:
        """Topics region ``region``'s worker and devices use: they live on the region's cluster.
        The region writes its own ``rehome.result``, ``vehicle.lifecycle`` and dead letters
        there; devices' requests, answers, onboarding and the region's tables never leave it."""
        app = self.regional_app_id(region)
        return {self.rehome(region), self.device(region), self.device_response(region),
                self.onboarding(region), self.rehome_result, self.lifecycle, self.deadletter,
                *self.ingress_routes(region).values(), self.regional_commands(region),
                changelog_topic(app, regional_table(region))}

    def clusters_of(self, topic: str) -> list[Cluster]:
        """Every cluster ``topic`` is created on (one with a single cluster)."""
        found = [self._config.global_cluster] if topic in self.global_side() else []
        for region in self._config.regions:
            cluster = self._config.cluster(region)
            if topic in self.regional_side(region) and cluster not in found:
                found.append(cluster)
        return found

    @property
    def global_cluster(self) -> Cluster:
        return self._config.global_cluster

    def home(self, topic: str) -> Cluster:
        """The cluster a client outside the workers reads or writes ``topic`` on: the global
        one for the global side (where the regions' lifecycle events and rehome results are
        mirrored to), else the region's."""
        if topic in self.global_side():
            return self._config.global_cluster
        for region in self._config.regions:
            if topic in self.regional_side(region):
                return self._config.cluster(region)
        raise KeyError(f"{topic} is not in the topic catalogue")

    def placement(self) -> dict[str, list[TopicSpec]]:
        """Cluster name -> the topics to create on it, every topic on every cluster it lives on
        (MirrorMaker copies partition numbers: a mirrored topic has the same count on both)."""
        placed: dict[str, list[TopicSpec]] = {c.name: [] for c in self._config.clusters}
        for spec in self.all():
            for cluster in self.clusters_of(spec.name):
                placed[cluster.name].append(spec)
        return placed

    def mirror_flows(self) -> list[MirrorFlow]:
        """What crosses the link, for each region with a cluster of its own: the rehome
        requests go to the region; its rehome results and lifecycle events come back. Nothing
        else: device data, onboarding and the regional tables stay in the region."""
        flows = []
        for region in self._config.regions:
            name = self._config.cluster(region).name
            if name == GLOBAL_CLUSTER:
                continue
            flows += [MirrorFlow(GLOBAL_CLUSTER, name, (self.rehome(region),)),
                      MirrorFlow(name, GLOBAL_CLUSTER, (self.rehome_result, self.lifecycle))]
        return flows
