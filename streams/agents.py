"""A worker's agents, tables, timer and views, made from the topology (vprov/flows/topology.py).

One agent per step: it decodes each record by its topic's record type, reads the entry of the
record's key, and hands the decision to the shell (``streams/shell.py``), which carries it out.
The agents only move data; what happens to a record is the step's decision.

All topics and tables of a role share the same partition count, so Faust assigns partition N
of every topic to the same worker; each table is read only under the key its input topic is
keyed by (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP

from streams.repairs import watchdog
from streams.repairs.offset_probe import OffsetProbe
from streams.shell import Shell
from streams.shell import Step as ShellStep
from streams.stores import DeadlineIndexedStore, deadline_timer, entry_in_partition
from streams.web import add_table_view
from vprov.flows import topology
from vprov.flows.topology import Input, Role, Step
from vprov.kafka.partitioning import owner


class HeldEntries:
    """The entries an in-place hop reads: in the hop key's own partition, when this worker holds
    it (``vprov.flows.topology.Entries``)."""

    def __init__(self, app: faust.App, shell: Shell, tables: dict[str, Any]) -> None:
        self.app = app
        self.shell = shell
        self.tables = tables
        self._assignment: tuple[int, frozenset[TP]] | None = None

    def held(self, table: str, topic: str, key: str) -> tuple[bool, Any]:
        if self.app.rebalancing:
            return False, None
        partition = owner(key.encode("utf-8"), self.shell.config.partitions)
        if TP(topic, partition) not in self.assignment():
            return False, None
        # a table's get reads the partition of the event being processed, not the key's
        return True, entry_in_partition(self.tables[table], key, partition)

    def assignment(self) -> frozenset[TP]:
        """The worker's partitions, asked of the consumer once per rebalance: the consumer
        builds a new set of them at every call, for every query the global worker decides.
        An assignment changes only in a rebalance, which counts itself and is flagged before
        the consumer's thread changes anything: a set read while none ran is kept."""
        generation = self.app.rebalancing_count
        if self._assignment is not None and self._assignment[0] == generation:
            return self._assignment[1]
        partitions = frozenset(self.app.consumer.assignment())
        if not self.app.rebalancing and self.app.rebalancing_count == generation:
            self._assignment = generation, partitions
        return partitions


def register(app: faust.App, shell: Shell, region: str | None) -> None:
    """The agents of the global worker (``region`` None) or of ``region``'s worker."""
    cat = shell.catalogue
    role = topology.role(cat, region)
    tables = {name: shell.table(name) for name in role.tables}
    deadlines = role.deadlines
    store = DeadlineIndexedStore(tables[deadlines.table], deadlines.of)
    if shell.metrics is not None:
        shell.metrics.deadline_index = store.deadlines
    # the steps read and write the entries with deadlines through their index
    entries: dict[str, Any] = {**tables, deadlines.table: store}
    held = HeldEntries(app, shell, tables)
    routes = cat.ingress_routes(region)
    prefix = "vprov.global" if region is None else f"vprov.regional.{region}"
    for step in role.steps:
        decide = _decider(shell, role, step, entries, held)
        name = f"{prefix}.{step.name}"
        if step.topic in routes:
            shell.ingress_agent(step.topic, routes[step.topic], decide, name=name,
                                by_vin=step.by_vin)
        else:
            shell.agent(step.topic, decide, name=name)
    _watch(app, shell, role, routes)
    deadline_timer(app, shell, store, deadlines.topic, deadlines.command, name=deadlines.timer)
    for view in role.views:
        add_table_view(app, tables[view.table], view.path, view.key, view.what)


def _decider(shell: Shell, role: Role, step: Step, entries: dict[str, Any],
             held: HeldEntries) -> Any:
    kind = shell.catalogue.record_type(step.topic)
    table = entries[step.table]

    def decide(event: faust.EventT) -> ShellStep:
        message = event.message
        key = (message.key or b"").decode("utf-8", errors="replace")
        value = topology.decode(kind, message.value, shell.serde, message.topic)
        given = Input(key, value, table.get(key), shell.source(event), shell.context(event),
                      role.region)
        decision = topology.decide(role, step, given, held)
        return (decision, table, key) if step.writes else (decision, None, None)

    return decide


def _watch(app: faust.App, shell: Shell, role: Role, routes: dict[str, str]) -> None:
    """The watchdog over the role's input topics; compacted ones need the offset probe, which
    tells their compaction holes from dropped records (the index must never lose one)."""
    compacted_topics = {spec.name for spec in shell.catalogue.all() if spec.compacted}
    inputs = {step.topic for step in role.steps} | set(routes.values())
    compacted = inputs & compacted_topics
    cat = shell.catalogue
    group = cat.global_app_id if role.region is None else cat.regional_app_id(role.region)
    watchdog.install(app, inputs - compacted, compacted=compacted,
                     probe=OffsetProbe(shell.config, group_prefix=group) if compacted else None)
