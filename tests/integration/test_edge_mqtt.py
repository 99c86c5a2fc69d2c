"""The device edge on real IoT brokers (SPEC 8; docs/architecture.md, "The device edge").

The module starts a global and an NA Mosquitto broker with the project's script
(``scripts/stack.sh mqtt start``, TLS with the stack's CA, the dynamic-security plugin), unless
the suite's stack runs them already (``make test EDGE=mqtt``); a deployment of its own whose
identity registry is the brokers' (``edge.identity = "mosquitto"``) and which requires the
authenticated-device header; a global and an NA worker; and an edge bridge per broker. Devices
are MQTT clients with their own credentials.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.conftest import PORT_BASE
from tests.integration.harness import (
    BOOTSTRAP,
    REDIS_URL,
    REPO,
    Bus,
    Fleet,
    WorkerProcess,
    kafka_security_env,
    wait_until,
)
from vprov import config as config_module
from vprov.config import Config
from vprov.core import envelope
from vprov.edge.mqtt import device_password, in_topic, out_topic, parse_endpoint, tls_context
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.topic_admin import ensure_topics
from vprov.ops.lifecycle_events import dedupe
from vprov.ops.workers import running
from vprov.sim import fleet
from vprov.sim.fleet_driver import wait_indexed

# after the web ports: the brokers of this module (docs/development.md, "Tests beside ...")
MQTT_GLOBAL_PORT, MQTT_NA_PORT = PORT_BASE + 317, PORT_BASE + 318
GLOBAL_WEB, NA_WEB = PORT_BASE + 192, PORT_BASE + 193
BURST = 24  # vehicles in the bridge and broker scenarios
EDGE_VARIABLES = ("VPROV_IDENTITY", "VPROV_EDGE_", "VPROV_GATEWAY_ENDPOINT_")


def stack(*args: str) -> str:
    env = {**os.environ, "EDGE_REGIONS": "NA", "MQTT_PORT": str(MQTT_GLOBAL_PORT),
           "MQTT_PORT_NA": str(MQTT_NA_PORT)}
    done = subprocess.run([str(REPO / "scripts" / "stack.sh"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"scripts/stack.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}",
                    pytrace=False)
    return done.stdout


def edge_env() -> dict[str, str]:
    """The edge settings of the running brokers, as the stack script prints them."""
    found = {}
    for line in stack("env").splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name.startswith(EDGE_VARIABLES):
            found[name] = value
    return found


@pytest.fixture(scope="module")
def brokers() -> Iterator[dict[str, str]]:
    started = "starting mqtt" in stack("mqtt", "start")
    env = edge_env()
    if "VPROV_GATEWAY_ENDPOINT_NA" not in env:
        pytest.fail("the running brokers have no NA broker (EDGE_REGIONS)", pytrace=False)
    yield env
    if started:
        stack("mqtt", "stop")


class BridgeProcess:
    """``vprov edge --scope SCOPE`` of the module's deployment."""

    def __init__(self, scope: str, config_path: Path, workdir: Path) -> None:
        self.scope = scope
        self.config_path = config_path
        self.log = workdir / f"edge-{scope}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = {k: v for k, v in os.environ.items() if not k.startswith(EDGE_VARIABLES)}
        env.update(KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, REDIS_URL=REDIS_URL)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "vprov"), "--config", str(self.config_path),
                 "edge", "--scope", self.scope], stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=REPO)
        wait_until(lambda: f"edge bridge {self.scope}: device/+/out" in
                   self.log.read_text(errors="replace")[offset:], timeout=60,
                   what=f"bridge {self.scope} subscribed")
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Edge:
    config: Config
    config_path: Path
    workers: dict[str, WorkerProcess]
    bridges: dict[str, BridgeProcess]
    bus: Bus
    env: dict[str, str]

    def register(self, *vehicles: fleet.SimVehicle) -> None:
        self.bus.register(vehicles)
        until = time.monotonic() + 60
        assert wait_indexed(self.workers["global"].web, list(vehicles), until)

    def password(self, device: fleet.SimDevice) -> str:
        return device_password(self.config.edge.credential_secret, device.device_id,
                               device.fingerprint)

    def device(self, device: fleet.SimDevice, scope: str = "global",
               password: str | None = None) -> Device:
        endpoint = self.env["VPROV_EDGE_GLOBAL_ENDPOINT"] if scope == "global" \
            else self.env[f"VPROV_GATEWAY_ENDPOINT_{scope}"]
        return Device(device.device_id, self.password(device) if password is None
                      else password, endpoint, self.config.edge.ca_location)


@pytest.fixture(scope="module")
def edge(brokers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    workdir = tmp_path_factory.mktemp("edge")
    prefix = f"e{uuid.uuid4().hex[:6]}"
    doc = config_module.isolate(config_module.defaults_document(), prefix)
    doc["edge"] = {
        "identity": "mosquitto",
        "global_endpoint": brokers["VPROV_EDGE_GLOBAL_ENDPOINT"],
        "ca_location": brokers["VPROV_EDGE_CA_LOCATION"],
        "admin_username": brokers["VPROV_EDGE_ADMIN_USERNAME"],
        "admin_password": brokers["VPROV_EDGE_ADMIN_PASSWORD"],
        "bridge_username": brokers["VPROV_EDGE_BRIDGE_USERNAME"],
        "bridge_password": brokers["VPROV_EDGE_BRIDGE_PASSWORD"],
        "credential_secret": brokers["VPROV_EDGE_CREDENTIAL_SECRET"],
    }
    doc["regions"]["NA"]["gateway_endpoint"] = brokers["VPROV_GATEWAY_ENDPOINT_NA"]
    doc["messages"]["require_authenticated_header"] = True  # the sender must be stamped
    path = workdir / f"{prefix}.toml"
    path.write_text(config_module.dumps(doc))
    config = config_module.load(path, env={**kafka_security_env(),
                                           "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                                           "REDIS_URL": REDIS_URL})
    cat = Catalogue(config)
    ensure_topics(BOOTSTRAP, cat.all())
    procs = {"global": WorkerProcess("global", GLOBAL_WEB, workdir, path),
             "NA": WorkerProcess("regional", NA_WEB, workdir, path, region="NA")}
    bridges = {scope: BridgeProcess(scope, path, workdir) for scope in ("global", "NA")}
    bus = Bus(config, [cat.query_response, cat.device_response("NA"), cat.lifecycle,
                       cat.deadletter])
    with running(procs):
        try:
            for bridge in bridges.values():
                bridge.start()
            yield Edge(config, path, procs, bridges, bus, brokers)
        finally:
            for bridge in bridges.values():
                bridge.stop()
            bus.close()


class Device:
    """One MQTT 5 client, as a device's edge software would hold it (paho's own thread)."""

    def __init__(self, device_id: str, password: str, endpoint: str, ca: str) -> None:
        self.device_id = device_id
        self.endpoint = parse_endpoint(endpoint)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device_id, password)
        self.client.tls_set_context(tls_context(ca))
        self.connack: queue.Queue[Any] = queue.Queue()
        self.acks: dict[int, Any] = {}
        self.received: list[bytes] = []
        self.disconnects: list[str] = []
        self._cond = threading.Condition()
        self.client.on_connect = lambda c, u, f, reason, p: self.connack.put(reason)
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self._on_ack(
            c, u, mid, reasons[0], p)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._cond:
            self.disconnects.append(str(reason))
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.received.append(bytes(message.payload))
            self._cond.notify_all()

    def _on_ack(self, client: Any, userdata: Any, mid: int, reason: Any,
                properties: Any) -> None:
        with self._cond:
            self.acks[mid] = reason
            self._cond.notify_all()

    def connect(self, subscribe: bool = True) -> Any:
        """The broker's CONNACK reason (success, or why it refused), after the SUBACK."""
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()
        reason = self.connack.get(timeout=15)
        if reason.is_failure:
            self.close()
        elif subscribe:
            assert not self.wait_ack(self.client.subscribe(in_topic(self.device_id), qos=1)[1]
                                     ).is_failure
        return reason

    def wait_ack(self, mid: int, timeout: float = 15) -> Any:
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self.acks, timeout), "no acknowledgement"
            return self.acks[mid]

    def send(self, raw: bytes, topic: str | None = None) -> int:
        return self.client.publish(topic or out_topic(self.device_id), raw, qos=1).mid

    def answers(self, message_id: str) -> list[bytes]:
        with self._cond:
            return [r for r in self.received
                    if json.loads(r).get("correlation_id") == message_id]

    def answer(self, message_id: str, timeout: float = 45) -> dict[str, Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: self.answers(message_id), timeout), \
                f"{self.device_id}: no answer to {message_id}"
        return envelope.parse_response(self.answers(message_id)[0])

    def wait_disconnected(self, timeout: float = 15) -> str:
        with self._cond:
            assert self._cond.wait_for(lambda: self.disconnects, timeout), "still connected"
            return self.disconnects[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refused(reason: Any) -> bool:
    return bool(reason.is_failure) and str(reason) in ("Not authorized",
                                                       "Bad user name or password")


def query(vehicle: fleet.SimVehicle, message_id: str) -> bytes:
    return fleet.query(vehicle, message_id, int(time.time()))


def provision(vehicle: fleet.SimVehicle, device: fleet.SimDevice, message_id: str) -> bytes:
    return fleet.device_provision(vehicle, device, message_id, int(time.time()))


@pytest.fixture
def fleet_(request: pytest.FixtureRequest) -> Fleet:
    return Fleet(tag=fleet.run_tag(f"{request.node.nodeid}-{uuid.uuid4()}"))


def test_a_wrong_password_or_no_user_is_refused(edge: Edge, fleet_: Fleet) -> None:
    vehicle = fleet_.vehicle("NA")
    edge.register(vehicle)
    assert refused(edge.device(vehicle.primary, password="not-its-password").connect())
    anonymous = Device("", "", edge.env["VPROV_EDGE_GLOBAL_ENDPOINT"],
                       edge.config.edge.ca_location)
    anonymous.client.username_pw_set(None)
    assert anonymous.connect(subscribe=False).is_failure
    # a secondary device has no identity of its own: it talks through the primary
    assert refused(edge.device(vehicle.devices[1]).connect())
    device = edge.device(vehicle.primary)
    assert not device.connect().is_failure
    device.close()


def test_a_device_may_use_only_its_own_topics(edge: Edge, fleet_: Fleet) -> None:
    mine, other = fleet_.vehicle("NA"), fleet_.vehicle("NA")
    edge.register(mine, other)
    device = edge.device(mine.primary)
    assert not device.connect().is_failure
    theirs = other.primary.device_id
    assert str(device.wait_ack(device.client.subscribe(in_topic(theirs), qos=1)[1])) == \
        "Not authorized"
    assert str(device.wait_ack(device.client.subscribe("device/+/in", qos=1)[1])) == \
        "Not authorized"
    # speaking as the other device: refused, and the broker closes the connection
    assert str(device.wait_ack(device.send(query(other, str(uuid.uuid4())),
                                           out_topic(theirs)))) == "Not authorized"
    device.wait_disconnected()
    device.close()


def test_a_vehicle_over_mqtt_region_then_global_refusal(edge: Edge, fleet_: Fleet) -> None:
    vehicle = fleet_.vehicle("NA")
    edge.register(vehicle)
    primary, secondary = vehicle.devices
    assert refused(edge.device(primary, "NA").connect())  # no regional identity before rehome
    on_global = edge.device(primary)
    assert not on_global.connect().is_failure
    message_id = str(uuid.uuid4())
    on_global.send(query(vehicle, message_id))
    answer = on_global.answer(message_id)
    assert answer["status"] == envelope.STATUS_SUCCESS, answer
    endpoint = answer["body"]["iot_gateway_endpoint"]
    assert endpoint == edge.env["VPROV_GATEWAY_ENDPOINT_NA"]  # the local NA broker
    in_region = Device(primary.device_id, edge.password(primary), endpoint,
                       edge.config.edge.ca_location)
    assert not in_region.connect().is_failure  # the rehome created its regional identity
    # every device of the vehicle provisions over the primary's connection
    ids = {d.device_id: str(uuid.uuid4()) for d in vehicle.devices}
    for device in (primary, secondary):
        in_region.send(provision(vehicle, device, ids[device.device_id]))
    for device in (primary, secondary):
        done = in_region.answer(ids[device.device_id])
        assert done["status"] == envelope.STATUS_SUCCESS and \
            done["device_id"] == device.device_id, done
    # provisioning deleted the global identity: its live session was closed, and it is refused
    assert on_global.wait_disconnected() == "Administrative action"
    on_global.close()
    assert refused(edge.device(primary).connect())
    in_region.close()


def test_the_simulator_provisions_vehicles_over_mqtt(edge: Edge, broker_env: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tests.integration.conftest import run_vprov

    code, out, err = run_vprov(edge.config_path, capsys, "simulate", "--vehicles", "8",
                               "--regions", "NA", "--rate", "8", "--via", "mqtt",
                               "--duplicates", "0.2", "--global-url",
                               f"http://127.0.0.1:{GLOBAL_WEB}", "--timeout", "90")
    assert code == 0, out + err
    assert "over MQTT" in out and "result: OK" in out, out


@dataclass
class Burst:
    """Vehicles whose primaries are connected to a broker, and what they were answered."""

    edge: Edge
    vehicles: list[fleet.SimVehicle]
    devices: dict[str, Device] = field(default_factory=dict)  # by primary device id
    sent: dict[str, str] = field(default_factory=dict)  # message id -> primary device id

    def connect(self, scope: str) -> None:
        for device in self.devices.values():
            device.close()
        self.devices = {v.primary.device_id: self.edge.device(v.primary, scope)
                        for v in self.vehicles}
        for device in self.devices.values():
            assert not device.connect().is_failure

    def answers(self) -> dict[str, set[bytes]]:
        found: dict[str, set[bytes]] = defaultdict(set)
        for message_id, device_id in self.sent.items():
            found[message_id] |= set(self.devices[device_id].answers(message_id))
        return found

    def wait_all(self, timeout: float = 90) -> dict[str, set[bytes]]:
        wait_until(lambda: all(self.answers().values()) and len(self.answers()) ==
                   len(self.sent), timeout=timeout, what="every request answered")
        return self.answers()

    def close(self) -> None:
        for device in self.devices.values():
            device.close()


def lifecycle_states(edge: Edge, vins: set[str]) -> dict[tuple[str, str | None], list[str]]:
    events = dedupe(r.value for r in edge.bus.records(
        Catalogue(edge.config).lifecycle, lambda r: r.key in vins))[0]
    states: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for event in events:
        states[(event["vin"], event["device_id"])].append(event["state"])
    return states


def test_bridges_killed_mid_burst_lose_nothing(edge: Edge, fleet_: Fleet) -> None:
    vehicles = [fleet_.vehicle("NA") for _ in range(BURST)]
    edge.register(*vehicles)
    burst = Burst(edge, vehicles)
    try:
        burst.connect("global")
        for vehicle in vehicles:
            message_id = str(uuid.uuid4())
            burst.sent[message_id] = vehicle.primary.device_id
            burst.devices[vehicle.primary.device_id].send(query(vehicle, message_id))
        edge.bridges["global"].kill()  # mid-burst: some sent to Kafka, some not acknowledged
        edge.bridges["global"].start()
        answers = burst.wait_all()
        assert all(len(a) == 1 for a in answers.values()), "conflicting answers"
        assert all(envelope.parse_response(next(iter(a)))["status"] == envelope.STATUS_SUCCESS
                   for a in answers.values())

        burst.connect("NA")
        burst.sent.clear()
        for vehicle in vehicles:
            for device in vehicle.devices:
                message_id = str(uuid.uuid4())
                burst.sent[message_id] = vehicle.primary.device_id
                burst.devices[vehicle.primary.device_id].send(
                    provision(vehicle, device, message_id))
        edge.bridges["NA"].kill()
        edge.bridges["NA"].start()
        answers = burst.wait_all()
        assert all(len(a) == 1 for a in answers.values()), "conflicting answers"
        assert all(envelope.parse_response(next(iter(a)))["status"] == envelope.STATUS_SUCCESS
                   for a in answers.values())
    finally:
        burst.close()
    # each decided once: one REGIONAL per vehicle, one PROVISIONED per device
    vins = {v.vin for v in vehicles}
    wait_until(lambda: sum(len(s) for s in lifecycle_states(edge, vins).values())
               >= len(vehicles) * 3, timeout=30, what="lifecycle events")
    states = lifecycle_states(edge, vins)
    for vehicle in vehicles:
        assert states[(vehicle.vin, None)] == ["REGIONAL"], vehicle.vin
        for device in vehicle.devices:
            assert states[(vehicle.vin, device.device_id)] == ["PROVISIONED"], device.device_id


def test_a_broker_restart_loses_no_message_and_keeps_the_identities(edge: Edge,
                                                                    fleet_: Fleet) -> None:
    vehicles = [fleet_.vehicle("NA") for _ in range(BURST // 2)]
    edge.register(*vehicles)
    burst = Burst(edge, vehicles)
    try:
        burst.connect("global")
        for vehicle in vehicles:
            message_id = str(uuid.uuid4())
            burst.sent[message_id] = vehicle.primary.device_id
            burst.devices[vehicle.primary.device_id].send(query(vehicle, message_id))
        burst.wait_all()
        burst.connect("NA")
        # the NA bridge away: the broker keeps the requests in its session, then restarts
        edge.bridges["NA"].stop()
        burst.sent.clear()
        for vehicle in vehicles:
            for device in vehicle.devices:
                message_id = str(uuid.uuid4())
                burst.sent[message_id] = vehicle.primary.device_id
                sender = burst.devices[vehicle.primary.device_id]
                ack = sender.wait_ack(sender.send(provision(vehicle, device, message_id)))
                assert not ack.is_failure  # the broker has it
        stack("mqtt", "restart", "NA")
        # the regional identities survived the restart: every device connects again
        burst.connect("NA")
        edge.bridges["NA"].start()
        answers = burst.wait_all()
        assert all(envelope.parse_response(next(iter(a)))["status"] == envelope.STATUS_SUCCESS
                   for a in answers.values())
    finally:
        burst.close()
