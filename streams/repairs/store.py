"""A table store that collects garbage on a rebalance only when it let a partition go (Faust
defect 8, docs/faust-defects.md).

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

import faust.stores
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP, CollectionT

log = logging.getLogger(__name__)

# the store URL scheme of the worker's app (``streams.app.create_app``); its tables inherit it
SCHEME = "vprov-rocksdb"


class Store(faust_rocksdb.Store):
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
