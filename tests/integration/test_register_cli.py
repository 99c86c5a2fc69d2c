"""`vprov register FILE` publishes registrations that the global worker indexes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from tests.integration.conftest import Flow
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    REPO,
    Fleet,
    kafka_security_env,
    wait_until,
)
from vprov.identity import identity_key
from vprov.sim import fleet


def test_register_publishes_good_lines_and_reports_bad_ones(
    flow: Flow, fleet_: Fleet, config_path: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:
    vehicle = fleet_.vehicle("NA")
    lines = [json.dumps(r) for r in fleet.registrations(vehicle)]
    lines.insert(1, '{"system_id": "sys-x", "device_id": "d;rop", "ecu_type": "TCU"}')
    lines.append("not json")
    path = tmp_path / "devices.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "vprov.cli", "--config", str(config_path), "register", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
             "REDIS_URL": REDIS_URL, **kafka_security_env()},
    )
    assert done.returncode == 1, done.stdout + done.stderr  # lines were skipped
    assert f"{path}:line 2:" in done.stderr
    assert f"{path}:line 4: not valid JSON" in done.stderr
    assert "published 2 registrations" in done.stdout

    glob = flow.workers["global"]
    wait_until(lambda: glob.get(f"/systems/{vehicle.system_id}/")[0] == 200
               and len(glob.get(f"/systems/{vehicle.system_id}/")[1]["devices"]) == 2,
               what="system indexed")
    status, reg = glob.get(f"/registrations/{vehicle.primary.device_id}/")
    assert (status, reg["system_id"], reg["primary"]) == (200, vehicle.system_id, True)
    assert redis_client.hget(identity_key("global", vehicle.primary.device_id),
                             "certificate_fingerprint") == vehicle.primary.fingerprint.encode()
    # and the vehicle can now be provisioned
    assert flow.query(vehicle).value["status"] == "SUCCESS"
