"""The files a bulk load writes have the table format Faust's stores are opened with."""

from __future__ import annotations

from pathlib import Path

import rocksdict

from streams.repairs.bulk_restore import _Store


def sst_bytes(path: Path) -> bytes:
    files = list(path.glob("*.sst"))
    assert files, "nothing was written to a table file"
    return b"".join(f.read_bytes() for f in files)


def write_keys(db: rocksdict.Rdict) -> None:
    for n in range(1000):
        db[f"VIN{n:014d}".encode()] = b"{}" * 40
    db.flush(True)  # the memtable into a table file, as a full write buffer would be
    db.close()


def test_the_load_writes_table_files_with_bloom_filters(tmp_path: Path) -> None:
    store = _Store(tmp_path / "loaded")
    write_keys(store.db)
    # RocksDB names the filter of a file in its meta-index block; a file written without a
    # filter keeps none, and every lookup of a key it does not hold reads its blocks
    assert b"BloomFilter" in sst_bytes(tmp_path / "loaded")


def test_a_store_opened_without_the_table_format_writes_none(tmp_path: Path) -> None:
    # the check above can fail: RocksDB's own defaults write no filter
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    write_keys(rocksdict.Rdict(str(tmp_path / "plain"), options=options))
    assert b"BloomFilter" not in sst_bytes(tmp_path / "plain")
