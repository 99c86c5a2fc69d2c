"""The bulk restore (streams/repairs/bulk_restore.py) fills a worker's tables exactly as Faust's own
recovery does: the same keys, values and persisted offsets, key for key."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka import Producer

from streams.repairs import bulk_restore
from streams.repairs.local_state import OFFSET_KEY, local_partitions, partition_dir
from tests.integration.conftest import PORT_BASE, Flow
from tests.integration.harness import BOOTSTRAP, Fleet, WorkerProcess, own_deployment
from vprov.kafka.catalogue import Catalogue
from vprov.ops.workers import running
from vprov.sim import fleet

VEHICLES = 12
GLOBAL_TABLES = ("registrations", "systems", "vehicles")


def dump(tables_dir: Path, tables: dict[str, str]) -> dict[tuple[str, int], dict[bytes, bytes]]:
    """Every non-empty table partition's RocksDB store under ``tables_dir``, as a dict."""
    import rocksdict

    found = {}
    for table in tables:
        for partition in local_partitions(tables_dir, table):
            db = rocksdict.Rdict(str(partition_dir(tables_dir, table, partition)),
                                 options=rocksdict.Options(raw_mode=True),
                                 access_type=rocksdict.AccessType.read_only())
            try:
                entries = dict(db.items())
            finally:
                db.close()
            if entries:
                found[(table, partition)] = entries
    return found


def changelogs(prefix_app: str) -> dict[str, str]:
    return {table: f"{prefix_app}-{table}-changelog" for table in GLOBAL_TABLES}


def worker_tables_dir(workdir: Path, app_id: str, port: int) -> Path:
    # streams/app.py: <data dir>/<app id>-<web port>, Faust's tables in its "v1/tables"
    found = list((workdir / "data" / f"{app_id}-{port}").rglob("tables"))
    assert len(found) == 1, found
    return found[0]


def test_bulk_restore_equals_faust_s_recovery(tmp_path: Path) -> None:
    prefix = f"b{uuid.uuid4().hex[:6]}"
    path, config, bus = own_deployment(tmp_path, prefix)
    cat = Catalogue(config)
    try:
        # some state through the flows: registrations, systems, vehicles homed in NA
        writer = WorkerProcess("global", PORT_BASE + 170, tmp_path, path)
        na = WorkerProcess("regional", PORT_BASE + 171, tmp_path, path, region="NA")
        with running({"global": writer, "NA": na}):
            flow = Flow(bus, {"global": writer, "NA": na})
            made = Fleet(tag=fleet.run_tag(prefix))
            vehicles = [made.vehicle("NA") for _ in range(VEHICLES)]
            flow.register(*vehicles)
            for vehicle in vehicles:
                assert flow.query(vehicle).value["status"] == "SUCCESS"
        # and a tombstone in a changelog, as a deleted entry leaves it
        tables = changelogs(cat.global_app_id)
        gone = vehicles[0].devices[1].device_id.encode()
        out = Producer({"bootstrap.servers": BOOTSTRAP, "partitioner": "murmur2_random"})
        out.produce(tables["registrations"], key=gone, value=None)
        out.flush(30)

        # Faust's own recovery, on an empty disk
        port = PORT_BASE + 172
        faust_side = WorkerProcess("global", port, tmp_path / "faust", path,
                                   extra_env={"VPROV_BULK_RESTORE": "false"})
        (tmp_path / "faust").mkdir()
        with running({"global": faust_side}):
            pass
        recovered = dump(worker_tables_dir(tmp_path / "faust", cat.global_app_id, port),
                         tables)

        # the bulk restore, on another empty disk
        bulk_dir = tmp_path / "bulk"
        result = bulk_restore.restore(BOOTSTRAP, bulk_dir, tables, config.partitions,
                                      min_records=1)
        loaded = dump(bulk_dir, tables)
    finally:
        bus.close()

    assert result.records > VEHICLES * 3
    assert set(loaded) == set(recovered)
    for where, entries in recovered.items():
        assert loaded[where] == entries, where
    devices = {k for (t, _), e in loaded.items() if t == "registrations" for k in e} - {
        OFFSET_KEY}
    assert gone not in devices
    assert len(devices) == VEHICLES * 2 - 1  # two devices each, one deleted
