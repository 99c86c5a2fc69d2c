"""After the first boot (docs/after-first-boot.md), on the real workers: a move to another
region (both policies, a repeat, a target that never answers, a crash in the middle), a device
replaced in a workshop, a decommissioning and a reinstatement, the factory-reset policies; each
sent as an operator would, with ``vprov vehicle``, and audited with ``vprov replay --verify``."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import (
    MOVE_TIMEOUT_SECONDS,
    PORTS,
    SILENT_REGION,
    Flow,
    error_code,
    run_vprov,
)
from tests.integration.harness import (
    BOOTSTRAP,
    Bus,
    Fleet,
    WorkerProcess,
    isolated_config,
    wait_until,
)
from tests.integration.test_late_registration import register_device
from vprov import config as config_module
from vprov.core import envelope
from vprov.core.outputs import GLOBAL_SCOPE
from vprov.identity import identity_key
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.workers import running
from vprov.sim import fleet

pytestmark = pytest.mark.reprovisioning


def provisioned(flow: Flow, fleet_: Fleet, region: str = "NA") -> fleet.SimVehicle:
    """A vehicle homed in ``region`` with both devices provisioned."""
    vehicle = fleet_.vehicle(region)
    flow.register(vehicle)
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    for device in vehicle.devices:
        assert flow.provision(vehicle, device).value["status"] == "SUCCESS"
    # the bus reads each topic on its own: an answer can reach it before its lifecycle event
    for device in vehicle.devices:
        seen(flow, vehicle.vin, "PROVISIONED", device.device_id)
    return vehicle


def vehicle_cmd(config_path: Path, capsys: pytest.CaptureFixture[str], *args: str
                ) -> tuple[int, str]:
    code, out, err = run_vprov(config_path, capsys, "vehicle", *args, "--timeout", "60")
    return code, out + err


def regional(flow: Flow, region: str, vin: str) -> tuple[int, Any]:
    return flow.workers[region].get(f"/vehicles/{vin}/")


def unfrozen(flow: Flow, region: str, vin: str, what: str) -> Any:
    """The region's entry once it is no longer frozen. The outcome (DONE, FAILED) comes with the
    global side's switch or undo, and the region's COMMIT or RESUME after it
    (docs/after-first-boot.md): a reader as quick as the outcome can look before the region has
    applied it."""
    def entry() -> Any:
        status, found = regional(flow, region, vin)
        return found if status == 200 and not found.get("frozen") else None
    return wait_until(entry, timeout=15, what=f"{what} applied in {region}")


def committed(flow: Flow, region: str, vin: str) -> Any:
    """The target's entry once it has taken the move's COMMIT."""
    return unfrozen(flow, region, vin, "the move's COMMIT")


def audit_clean(config_path: Path, capsys: pytest.CaptureFixture[str], vin: str,
                urls: dict[str, str]) -> str:
    """``vprov replay --verify`` of one vehicle; its output, asserted clean."""
    regions = [arg for region, url in urls.items() if region != "global"
               for arg in ("--region-url", f"{region}={url}")]
    code, out, err = run_vprov(config_path, capsys, "replay", "--vin", vin, "--verify",
                               "--global-url", urls["global"], *regions)
    assert code == 0 and "verified: no problems" in out, out + err
    return out


def seen(flow: Flow, vin: str, state: str, device_id: str | None = None, count: int = 1
         ) -> int:
    """Wait until the bus has ``count`` distinct events of the vehicle into ``state`` (of
    ``device_id``, or of the vehicle); then the number of the vehicle's distinct events."""
    def history() -> list[dict[str, Any]]:
        return flow.histories({vin}).get(vin, [])

    wait_until(lambda: sum(e["state"] == state and e["device_id"] == device_id
                           for e in history()) >= count, timeout=30)
    return len(history())


def urls_of(flow: Flow) -> dict[str, str]:
    return {"global": flow.workers["global"].url, "NA": flow.workers["NA"].url,
            "EU": flow.workers["EU"].url}


# --- move --------------------------------------------------------------------------------------


def test_a_migrated_vehicle_answers_from_its_new_region_and_keeps_its_devices(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str],
        redis_client: redis.Redis) -> None:
    vehicle = provisioned(flow, fleet_)
    tcu, ivi = vehicle.devices
    code, out = vehicle_cmd(config_path, capsys, "move", vehicle.vin, "--to", "EU",
                            "--policy", "migrate", "--command-id", f"mv-{vehicle.vin}")
    assert code == 0, out
    assert "MOVE" in out and "DONE (region EU)" in out

    # the next query is answered with the new region's endpoint
    answer = flow.query(vehicle).value
    assert answer["status"] == "SUCCESS"
    assert answer["body"]["iot_gateway_endpoint"] == flow.bus.config.region("EU").gateway_endpoint
    # homed once: the source let it go, the target has its devices as they were
    entry = committed(flow, "EU", vehicle.vin)
    wait_until(lambda: regional(flow, "NA", vehicle.vin)[0] == 404, timeout=15,
               what="the move's RELEASE applied in NA")
    assert {d: v["state"] for d, v in entry["devices"].items()} == \
        {tcu.device_id: "PROVISIONED", ivi.device_id: "PROVISIONED"}
    assert entry["devices"][tcu.device_id]["details"]["ecu_model"]  # migrated, details too
    # still provisioned: a new request in the new region is 13124 under the default policy
    moved = dataclasses.replace(vehicle, region="EU")
    assert error_code(flow.provision(moved, ivi)) == 13124
    # identities: the source's revoked, the target's primary created
    assert not redis_client.exists(identity_key("NA", tcu.device_id))
    assert redis_client.exists(identity_key("EU", tcu.device_id))
    out = audit_clean(config_path, capsys, vehicle.vin, urls_of(flow))
    assert "MOVING" in out

    # the same command again: the same outcome, no second effect
    events = seen(flow, vehicle.vin, "REGIONAL", count=2)  # the first boot's, the switch
    code, again = vehicle_cmd(config_path, capsys, "move", vehicle.vin, "--to", "EU",
                              "--policy", "migrate", "--command-id", f"mv-{vehicle.vin}")
    assert code == 0 and "DONE (region EU)" in again, again
    time.sleep(1)
    assert len(flow.histories({vehicle.vin})[vehicle.vin]) == events


def test_a_reset_move_makes_every_device_provision_again(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vehicle = provisioned(flow, fleet_)
    code, out = vehicle_cmd(config_path, capsys, "move", vehicle.vin, "--to", "EU",
                            "--policy", "reset")
    assert code == 0, out
    entry = committed(flow, "EU", vehicle.vin)
    assert {v["state"] for v in entry["devices"].values()} == {"REGIONAL"}
    assert all("details" not in v for v in entry["devices"].values())
    moved = dataclasses.replace(vehicle, region="EU")
    for device in moved.devices:
        answer = flow.provision(moved, device)
        assert answer.value["status"] == "SUCCESS", answer.value
    audit_clean(config_path, capsys, vehicle.vin, urls_of(flow))
    # each device: provisioned in NA, reset in EU by the move, provisioned again in EU
    for device in vehicle.devices:
        seen(flow, vehicle.vin, "PROVISIONED", device.device_id, count=2)
    history = flow.histories({vehicle.vin})[vehicle.vin]
    for device in vehicle.devices:
        steps = [(e["partition"], e["previous_state"], e["state"]) for e in history
                 if e["device_id"] == device.device_id]
        assert steps == [("NA", "REGIONAL", "PROVISIONED"), ("EU", "PROVISIONED", "REGIONAL"),
                         ("EU", "REGIONAL", "PROVISIONED")]


def test_a_move_to_a_region_that_never_answers_is_undone_at_its_deadline(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vehicle = provisioned(flow, fleet_)
    started = time.monotonic()
    code, out = vehicle_cmd(config_path, capsys, "move", vehicle.vin, "--to", SILENT_REGION)
    assert code == 1, out
    assert "FAILED" in out and "13105" in out and f"region {SILENT_REGION}" in out
    assert time.monotonic() - started >= MOVE_TIMEOUT_SECONDS - 1
    # the vehicle stays where it was, and its region serves it again
    status, entry = flow.workers["global"].get(f"/vehicles/{vehicle.vin}/")
    assert (entry["state"], entry["region"], entry.get("admin")) == ("REGIONAL", "NA", None)
    unfrozen(flow, "NA", vehicle.vin, "the undo's RESUME")
    assert error_code(flow.provision(vehicle, vehicle.devices[1])) == 13124
    assert flow.query(vehicle).value["body"]["iot_gateway_endpoint"] == \
        flow.bus.config.region("NA").gateway_endpoint
    out = audit_clean(config_path, capsys, vehicle.vin, urls_of(flow))
    assert "MOVING" in out


def test_refused_moves_change_nothing(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vehicle = provisioned(flow, fleet_)
    for args, code_wanted in ((("--to", "XX"), "6100"), (("--to", "NA"), "5000")):
        code, out = vehicle_cmd(config_path, capsys, "move", vehicle.vin, *args)
        assert code == 1 and "REFUSED" in out and code_wanted in out, out
    unknown = fleet_.vehicle("NA")
    code, out = vehicle_cmd(config_path, capsys, "decommission", unknown.vin)
    assert code == 1 and "REFUSED" in out and "13135" in out, out
    assert len(flow.histories({vehicle.vin})[vehicle.vin]) == 3  # REGIONAL, 2x PROVISIONED


def test_a_short_wait_for_the_outcome_is_not_taken_for_an_unreachable_kafka(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout`` bounds the wait for the outcome, not the command's delivery: a first
    request takes a new client longer than a millisecond (connection, metadata, producer id)."""
    unknown = fleet_.vehicle("NA")
    command = f"dc-{uuid.uuid4()}"
    code, out, err = run_vprov(config_path, capsys, "vehicle", "decommission", unknown.vin,
                               "--command-id", command, "--timeout", "0.001")
    assert code in (1, 4), out + err  # refused already, or no outcome yet; not 3
    code, out = vehicle_cmd(config_path, capsys, "decommission", unknown.vin,
                            "--command-id", command)  # it was delivered: its outcome comes
    assert code == 1 and "REFUSED" in out and "13135" in out, out


def test_device_requests_during_a_move_get_13131_and_the_vehicle_is_homed_once(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While the target (a region no worker serves) does not answer, the source holds the
    vehicle frozen: its devices and queries are answered 13131, never dropped."""
    vehicle = provisioned(flow, fleet_)
    command = f"mv-{uuid.uuid4()}"
    code, out, err = run_vprov(config_path, capsys, "vehicle", "move", vehicle.vin, "--to",
                               SILENT_REGION, "--command-id", command, "--timeout", "1")
    assert code == 4, out + err  # no final outcome yet: the move waits for the target
    wait_until(lambda: (regional(flow, "NA", vehicle.vin)[1] or {}).get("frozen"), timeout=20)
    assert error_code(flow.provision(vehicle, vehicle.devices[1])) == 13131
    assert error_code(flow.query(vehicle)) == 13131
    code, out = vehicle_cmd(config_path, capsys, "move", vehicle.vin, "--to", SILENT_REGION,
                            "--command-id", command)  # waits for the same move's outcome
    assert code == 1 and "FAILED" in out, out
    assert flow.query(vehicle).value["status"] == "SUCCESS"


# --- replace, decommission, reinstate ------------------------------------------------------------


def test_replacing_the_primary_revokes_the_old_device_and_the_new_one_provisions(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str],
        redis_client: redis.Redis) -> None:
    vehicle = provisioned(flow, fleet_)
    old = vehicle.primary
    new = dataclasses.replace(old, device_id=f"{old.device_id}r", fingerprint="sha256:fresh")
    workshop = dataclasses.replace(vehicle, devices=(*vehicle.devices, new))
    register_device(flow, workshop, 2)  # registered as usual, under the vehicle's system
    wait_until(lambda: new.device_id in (regional(flow, "NA", vehicle.vin)[1] or {})
               .get("devices", {}), timeout=30)

    command = ("replace-device", vehicle.vin, "--old", old.device_id, "--new", new.device_id,
               "--command-id", f"rp-{vehicle.vin}")
    code, out = vehicle_cmd(config_path, capsys, *command)
    assert code == 0 and "DONE" in out, out
    events = seen(flow, vehicle.vin, "REMOVED", old.device_id)
    code, again = vehicle_cmd(config_path, capsys, *command)  # repeated: same outcome, no effect
    assert code == 0 and "DONE" in again, again
    assert error_code(flow.provision(vehicle, old)) == 13132
    assert error_code(flow.query(vehicle)) == 13132  # the old primary asks
    assert not redis_client.exists(identity_key("NA", old.device_id))
    assert not redis_client.exists(identity_key(GLOBAL_SCOPE, old.device_id))
    # the new device is the primary now: it provisions, and queries, like any primary
    after = dataclasses.replace(workshop, devices=(dataclasses.replace(new, primary=True),
                                                   vehicle.devices[1]))
    assert flow.provision(after, after.devices[0]).value["status"] == "SUCCESS"
    assert flow.query(after).value["status"] == "SUCCESS"
    status, entry = regional(flow, "NA", vehicle.vin)
    assert entry["primary_device_id"] == new.device_id
    assert old.device_id not in entry["devices"]
    # the repeat added nothing: only the new device's PROVISIONED came after it
    assert seen(flow, vehicle.vin, "PROVISIONED", new.device_id) == events + 1
    audit_clean(config_path, capsys, vehicle.vin, urls_of(flow))


def test_a_decommissioned_vehicle_is_erased_refused_and_reinstated_only_explicitly(
        flow: Flow, fleet_: Fleet, config_path: Path, capsys: pytest.CaptureFixture[str],
        redis_client: redis.Redis) -> None:
    vehicle = provisioned(flow, fleet_)
    command = ("decommission", vehicle.vin, "--command-id", f"dc-{vehicle.vin}")
    code, out = vehicle_cmd(config_path, capsys, *command)
    assert code == 0 and "DONE" in out, out
    events = seen(flow, vehicle.vin, "DECOMMISSIONED")
    code, again = vehicle_cmd(config_path, capsys, *command)  # repeated: same outcome, no effect
    assert code == 0 and "DONE" in again, again
    time.sleep(1)
    assert len(flow.histories({vehicle.vin})[vehicle.vin]) == events
    # erased in the region: only the marker; the global store keeps what the audit needs
    status, entry = regional(flow, "NA", vehicle.vin)
    assert entry["decommissioned"] is True and entry["devices"] == {}
    assert entry["vehicle_info"] == {}
    status, entry = flow.workers["global"].get(f"/vehicles/{vehicle.vin}/")
    assert entry["state"] == "DECOMMISSIONED" and entry["devices"] == []
    for device in vehicle.devices:
        assert not redis_client.exists(identity_key("NA", device.device_id))
    assert error_code(flow.query(vehicle)) == 13133
    assert error_code(flow.provision(vehicle, vehicle.devices[1])) == 13133
    out = audit_clean(config_path, capsys, vehicle.vin, urls_of(flow))
    assert "DECOMMISSIONED" in out

    code, out = vehicle_cmd(config_path, capsys, "move", vehicle.vin, "--to", "EU")
    assert code == 1 and "13133" in out, out
    code, out = vehicle_cmd(config_path, capsys, "reinstate", vehicle.vin)
    assert code == 0 and "DONE" in out, out
    assert flow.query(vehicle).value["status"] == "SUCCESS"
    for device in vehicle.devices:
        assert flow.provision(vehicle, device).value["status"] == "SUCCESS"
    audit_clean(config_path, capsys, vehicle.vin, urls_of(flow))


# --- a deployment of its own: a crash in the middle of a move, the factory-reset policy --------


def _pause(worker: WorkerProcess, sig: signal.Signals) -> None:
    assert worker.proc is not None
    os.killpg(worker.proc.pid, sig)


def test_a_global_worker_killed_between_the_targets_confirmation_and_the_release_loses_nothing(
        tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"vmove{uuid.uuid4().hex[:4]}"
    path = isolated_config(tmp_path / f"{prefix}.toml", prefix, move_timeout_seconds=120,
                           factory_reset="reprovision")
    config = config_module.load(path, env={"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP})
    cat = Catalogue(config)
    ensure_topics(BOOTSTRAP, cat.all())
    bus = Bus(config, [cat.query_response, cat.lifecycle, cat.rehome("EU"), cat.rehome_result,
                       cat.admin_outcome, cat.device_response("NA"), cat.device_response("EU")])
    base = PORTS["global"] + 40
    procs = {"global": WorkerProcess("global", base, tmp_path, path),
             "NA": WorkerProcess("regional", base + 1, tmp_path, path, region="NA"),
             "EU": WorkerProcess("regional", base + 2, tmp_path, path, region="EU")}
    try:
        with running(procs):
            flow = Flow(bus, procs)
            fleet_ = Fleet(tag=fleet.run_tag(prefix))
            vehicle = provisioned(flow, fleet_)
            # factory reset, policy reprovision: answered, same state, identity issued again
            again = flow.provision(vehicle, vehicle.devices[1])
            assert again.value["status"] == "SUCCESS", again.value
            assert again.value["body"] == envelope.device_response_body("PROVISIONED")

            _pause(procs["EU"], signal.SIGSTOP)  # the target holds the request back
            command = f"mv-{uuid.uuid4()}"
            code, out, _ = run_vprov(path, capsys, "vehicle", "move", vehicle.vin, "--to", "EU",
                                     "--command-id", command, "--timeout", "1")
            assert code == 4, out
            bus.wait(cat.rehome("EU"), lambda r: r.key == vehicle.vin
                     and r.value["action"] == "REGISTER", timeout=60)
            _pause(procs["global"], signal.SIGSTOP)  # it has not seen the target's answer
            _pause(procs["EU"], signal.SIGCONT)
            bus.wait(cat.rehome_result, lambda r: r.key == vehicle.vin
                     and r.value["outcome"] == "REGISTERED" and r.value["region"] == "EU"
                     , timeout=60)
            procs["global"].kill()  # SIGKILL before it switched the home and released NA
            assert regional(flow, "NA", vehicle.vin)[1]["frozen"]["direction"] == "out"
            procs["global"].start().wait_ready()
            done = bus.wait(cat.admin_outcome, lambda r: r.value["command_id"] == command
                            and r.value["outcome"] == "DONE", timeout=90)
            assert done[0].value["region"] == "EU"
            wait_until(lambda: regional(flow, "NA", vehicle.vin)[0] == 404, timeout=30)
            entry = committed(flow, "EU", vehicle.vin)
            assert {v["state"] for v in entry["devices"].values()} == {"PROVISIONED"}
            # nothing duplicated: every event once by id, one sequence without gaps
            history = flow.histories({vehicle.vin})[vehicle.vin]
            assert [e["sequence"] for e in history] == list(range(1, len(history) + 1))
            assert [e["state"] for e in history if e["device_id"] is None] == \
                ["REGIONAL", "MOVING", "REGIONAL"]
            audit_clean(path, capsys, vehicle.vin,
                        {"global": procs["global"].url, "NA": procs["NA"].url,
                         "EU": procs["EU"].url})
    finally:
        for proc in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                _pause(proc, signal.SIGCONT)
        bus.close()
