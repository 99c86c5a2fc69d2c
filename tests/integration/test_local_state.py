"""Local state is a cache of the changelog: a worker whose broker was rebuilt under it (topics
deleted and created again) discards what its RocksDB held and restores from the changelog; a
worker with healthy local state keeps it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests.integration.conftest import PORT_BASE
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    Bus,
    WorkerProcess,
    isolated_config,
    wait_until,
)
from vprov import config as config_module
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.clients import admin_client, close_admin
from vprov.kafka.topic_admin import ensure_topics
from vprov.sim import fleet

WEB_PORT = PORT_BASE + 125


def indexed(worker: WorkerProcess, vehicle: fleet.SimVehicle) -> bool:
    status, entry = worker.get(f"/systems/{vehicle.system_id}/")
    return status == 200 and len(entry["devices"]) == len(vehicle.devices)


def start_timed(worker: WorkerProcess) -> float:
    began = time.monotonic()
    worker.start().wait_ready()
    return time.monotonic() - began


def test_a_worker_restarted_on_a_rebuilt_broker_restores_from_the_changelog(
        tmp_path: Path) -> None:
    path = isolated_config(tmp_path / "vprov.toml", f"l{uuid.uuid4().hex[:6]}")
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    cat = Catalogue(config)
    ensure_topics(BOOTSTRAP, cat.all())
    bus = Bus(config, [])
    tag = fleet.run_tag(str(uuid.uuid4()))
    before = [fleet.make_vehicle(tag, i, "NA") for i in range(30)]
    worker = WorkerProcess("global", WEB_PORT, tmp_path, path)
    admin = admin_client(BOOTSTRAP)
    try:
        first_start = start_timed(worker)
        bus.register(before)
        for vehicle in before:
            wait_until(lambda v=vehicle: indexed(worker, v), what="registrations indexed")
        worker.stop()

        # A healthy restart keeps its state: nothing discarded, nothing missing.
        healthy_start = start_timed(worker)
        assert worker.health()["local_state_discarded"] == 0
        assert all(indexed(worker, v) for v in before)
        worker.stop()

        # The cluster is rebuilt: every topic of the deployment deleted and created again.
        names = [spec.name for spec in cat.all()]
        for future in admin.delete_topics(names).values():
            future.result(30)
        wait_until(lambda: not set(names) & set(admin.list_topics(timeout=10).topics),
                   what="topics deleted")
        wait_until(lambda: ensure_topics(BOOTSTRAP, cat.all()) is not None
                   and set(names) <= set(admin.list_topics(timeout=10).topics),
                   what="topics created again")

        rebuilt_start = start_timed(worker)  # Faust alone stops here with ConsistencyError
        assert worker.health()["local_state_discarded"] > 0
        log = worker.log_path.read_text(errors="replace")
        assert "ConsistencyError" not in log
        assert "local state disagrees with the changelog" in log
        # the changelog is the truth: what the old topics held is gone, new input is processed
        assert not any(indexed(worker, v) for v in before)
        after = [fleet.make_vehicle(tag, 100 + i, "NA") for i in range(5)]
        bus.register(after)
        for vehicle in after:
            wait_until(lambda v=vehicle: indexed(worker, v), what="new registrations indexed")
        print(f"\nstart to ready: first {first_start:.1f} s, healthy restart "
              f"{healthy_start:.1f} s, after the rebuild {rebuilt_start:.1f} s")
    finally:
        worker.stop()
        bus.close()
        try:
            for future in admin.delete_topics([spec.name for spec in cat.all()]).values():
                future.exception(30)  # deleted, or nothing to delete: either way, done
        finally:
            close_admin(admin)  # not left to the garbage collector (tests/client_guard.py)
