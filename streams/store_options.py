"""The RocksDB settings of a worker's table stores, from the configuration (``[rocksdb]``).

Faust opens one store per table partition, active or standby, each with its own memtables and
block cache; its defaults (3 x 64 MB memtables, a 2 GB cache) are sized for one large store. A
worker of this project holds dozens of small ones: small buffers keep its memory bounded
whatever the fleet size (the data stays on disk, and recent entries are in the OS page cache)."""

from __future__ import annotations

from typing import Any

from vprov.config import Config

MB = 1024 * 1024


def rocksdb_options(config: Config) -> dict[str, Any]:
    """A table's store options (``faust.stores.rocksdb.RocksDBOptions``), given to each table."""
    rocksdb = config.rocksdb
    return {
        "write_buffer_size": rocksdb.write_buffer_mb * MB,
        "max_write_buffer_number": rocksdb.max_write_buffer_number,
        "block_cache_size": rocksdb.block_cache_mb * MB,
        # not one of Faust's options: the store applies it (streams.repairs.store.StoreOptions)
        "level0_compaction_trigger": rocksdb.level0_compaction_trigger,
    }

