"""The worker's table store: Faust's RocksDB store, opened with the project's settings
(``streams.store_options``), that collects garbage on a rebalance only when it let a partition
go (Faust defect 8, docs/faust-defects.md).

Faust's RocksDB store drops a revoked partition's database by forgetting it, and runs a full
``gc.collect()`` so that the database is freed and its lock released. It does so on every
rebalance of every table, whether a partition was revoked or not. A worker taking over a dead
peer's partitions revokes none, yet spends a full collection per table (about 0.1 s each on a
worker with a few thousand vehicles of state) while the event loop stands still and the moved
partitions wait.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import faust.stores
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP, CollectionT

log = logging.getLogger(__name__)

# the store URL scheme of the worker's app (``streams.app.create_app``); its tables inherit it
SCHEME = "vprov-rocksdb"


class StoreOptions(faust_rocksdb.RocksDBOptions):
    """Faust's store options, and those it does not know (kept in ``extra_options``): when to
    compact the memtables flushed to level 0.

    A store's entries are keyed by VIN, spread over the whole key range, so a compaction from
    level 0 merges with every file below and rewrites the partition. At a million vehicles that
    is about 42 MB and 0.3 s of a core per partition. With RocksDB's default of 4 flushes of 2 MB,
    one came every few seconds over a worker's partitions at 100 vehicles/s, each taking its core
    from the answers on a two-core machine. Waiting for more flushes rewrites less per new entry;
    lookups check one more bloom filter per file waiting in level 0."""

    def as_options(self) -> Any:
        options = super().as_options()
        trigger = self.extra_options.get("level0_compaction_trigger")
        if trigger and self.use_rocksdict:
            options.set_level_zero_file_num_compaction_trigger(trigger)
            # RocksDB slows (20) and stops (36) writes at fixed counts: keep them above it
            options.set_level_zero_slowdown_writes_trigger(max(20, trigger + 8))
            options.set_level_zero_stop_writes_trigger(max(36, trigger + 24))
        return options


class Store(faust_rocksdb.Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the project's RocksDB settings (streams/store_options.py), Faust's own included
        self.rocksdb_options = StoreOptions(**(self.options or {}),
                                            use_rocksdict=self.use_rocksdict)

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        dropped = [tp for tp in tps if tp.topic in table.changelog_topic.topics
                   and self._dbs.pop(tp.partition, None) is not None]
        for tp in dropped:
            log.info("closing db %s partition %d", tp.topic, tp.partition)
        if dropped:
            gc.collect()  # frees the forgotten databases: their locks go with them


def register() -> str:
    """Make the store known to Faust by URL; returns the URL a table names it with."""
    faust.stores.STORES.aliases[SCHEME] = f"{__name__}:Store"
    return f"{SCHEME}://"
