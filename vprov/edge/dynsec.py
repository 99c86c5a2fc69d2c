"""The identity seam on Mosquitto's dynamic-security plugin (``edge.identity = "mosquitto"``).

One MQTT client per device in the broker of its scope (the global broker, or a region's), with a
role of its own whose ACLs let it publish only to ``device/<id>/out`` and subscribe only to
``device/<id>/in`` (Mosquitto 2.0 has no per-client pattern a dynsec role could use, so one role
per device). The client's user name and client id are the device id; its password is
``vprov.edge.mqtt.device_password`` of the identity's certificate fingerprint; its text
description holds the identity's attributes as JSON (what ``get`` returns).

Every call goes through the broker's control API (``$CONTROL/dynamic-security/v1``, commands
answered on ``.../response``, matched by ``correlationData``), and every write is read back:
``create`` checks the client's client id, role and attributes and the role's ACLs; ``delete``
checks the client is gone. Deleting a client disconnects its live sessions (the plugin kicks
them). A broker that does not answer (down, restarting, unreachable) is retried with capped
exponential backoff, as the Redis registry retries Redis: the partition waits, nothing is lost.
An answer that says the write did not hold raises ``IdentityNotVerified``; the worker's shell
retries the whole effect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import paho.mqtt.client as mqtt

from vprov.config import Config
from vprov.edge.mqtt import (
    CONTROL_RESPONSE_TOPIC,
    CONTROL_TOPIC,
    Endpoint,
    device_password,
    in_topic,
    new_client,
    out_topic,
    scope_endpoint,
    service_client_id,
)
from vprov.identity import Outage, retry_while_down

log = logging.getLogger(__name__)
T = TypeVar("T")
ROLE_PREFIX = "vprov-device-"
CALL_TIMEOUT_SECONDS = 5.0


class ControlUnavailable(ConnectionError):
    """The broker's control API did not answer in time (down, restarting, unreachable)."""


class IdentityError(RuntimeError):
    """The broker refused a command, or a write did not hold when read back."""


class IdentityNotVerified(IdentityError):
    pass


def role_name(device_id: str) -> str:
    return f"{ROLE_PREFIX}{device_id}"


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """Its own ``out`` topic to publish on, its own ``in`` topic to subscribe to; everything
    else falls to the broker's default (deny publishing and subscribing)."""
    return [
        {"acltype": "publishClientSend", "topic": out_topic(device_id), "priority": 0,
         "allow": True},
        {"acltype": "subscribeLiteral", "topic": in_topic(device_id), "priority": 0,
         "allow": True},
    ]


def _acl_set(acls: list[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    return {(a.get("acltype", ""), a.get("topic", ""), bool(a.get("allow"))) for a in acls}


def client_fields(device_id: str, password: str, attributes: dict[str, str]) -> dict[str, Any]:
    return {"username": device_id, "password": password, "clientid": device_id,
            "textdescription": describe(attributes),
            "roles": [{"rolename": role_name(device_id), "priority": 0}]}


def describe(attributes: dict[str, str]) -> str:
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"))


def error_of(response: dict[str, Any]) -> str | None:
    error = response.get("error")
    return str(error) if error else None


def check_created(device_id: str, attributes: dict[str, str], client: dict[str, Any],
                  role: dict[str, Any]) -> str | None:
    """Why the identity read back is not the one written (None: it is)."""
    if client.get("clientid") != device_id:
        return f"client id {client.get('clientid')!r}"
    if role_name(device_id) not in {r.get("rolename") for r in client.get("roles") or ()}:
        return "its role is not assigned"
    if client.get("disabled"):
        return "the client is disabled"
    if client.get("textdescription") != describe(attributes):
        return "its attributes differ"
    if _acl_set(role.get("acls") or []) != _acl_set(device_acls(device_id)):
        return "its role's ACLs differ"
    return None


class ControlChannel:
    """One connection to a broker's control API, on a paho network thread; ``call`` is a
    coroutine of the caller's event loop."""

    def __init__(self, scope: str, endpoint: Endpoint, username: str, password: str,
                 ca_location: str, timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self.scope = scope
        self.endpoint = endpoint
        self.timeout = timeout
        self._ready = threading.Event()  # connected and subscribed to the responses
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._started = False
        self._client = new_client(service_client_id(username, scope), username, password,
                                  endpoint, ca_location)
        self._client.reconnect_delay_set(1, 5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self.refused: str | None = None  # the broker's last refusal of the connection

    # --- paho's thread ------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        self.refused = None
        client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        if reasons and not reasons[0].is_failure:
            self._ready.set()
        else:
            self.refused = f"subscribing to {CONTROL_RESPONSE_TOPIC}: {reasons}"

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._ready.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
            key = str(responses[0].get("correlationData", "")).split(":")[0]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return
        with self._lock:
            waiting = self._pending.get(key)
        if waiting is not None:
            loop, future = waiting
            loop.call_soon_threadsafe(_resolve, future, responses)

    # --- the caller's loop -------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
            self._client.loop_start()

    async def call(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one control message; their responses, in order."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not self._ready.is_set():
            if loop.time() >= deadline:
                why = f"refused: {self.refused}" if self.refused else "no connection"
                raise ControlUnavailable(f"{self.scope} broker at {self.endpoint}: {why}")
            await asyncio.sleep(0.02)
        key = uuid.uuid4().hex
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending[key] = (loop, future)
        try:
            payload = {"commands": [{**c, "correlationData": f"{key}:{i}"}
                                    for i, c in enumerate(commands)]}
            info = self._client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ControlUnavailable(f"{self.scope} broker at {self.endpoint}: "
                                         f"{mqtt.error_string(info.rc)}")
            try:
                responses = await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise ControlUnavailable(f"{self.scope} broker at {self.endpoint}: no answer "
                                         f"within {self.timeout:g}s") from None
        finally:
            with self._lock:
                self._pending.pop(key, None)
        if len(responses) != len(commands):
            raise IdentityError(f"{self.scope} broker answered {len(responses)} of "
                                f"{len(commands)} commands")
        return list(responses)

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


class MosquittoIdentityRegistry:
    """``vprov.identity.IdentityRegistry`` on the brokers' dynamic-security plugin: one control
    connection per scope, opened when the scope is first used."""

    def __init__(self, config: Config, backoff_max_seconds: float | None = None,
                 timeout: float = CALL_TIMEOUT_SECONDS) -> None:
        self._config = config
        self._edge = config.edge
        self._backoff_max = backoff_max_seconds or config.identity_backoff_max_seconds
        self._timeout = timeout
        self._channels: dict[str, ControlChannel] = {}
        self._outages: dict[str, Outage] = {}
        self._reserved = {self._edge.admin_username, self._edge.bridge_username}

    def channel(self, scope: str) -> ControlChannel:
        if scope not in self._channels:
            self._channels[scope] = ControlChannel(
                scope, scope_endpoint(self._config, scope), self._edge.admin_username,
                self._edge.admin_password, self._edge.ca_location, self._timeout)
        return self._channels[scope]

    async def _retry(self, scope: str, what: str, call: Callable[[], Awaitable[T]]) -> T:
        if scope not in self._outages:  # one report per broker that is down
            self._outages[scope] = Outage(
                f"identity registry: the {scope} broker",
                "Check that the broker runs (EDGE=mqtt scripts/stack.sh status) and the edge "
                "settings (VPROV_EDGE_*).", (ControlUnavailable,))
        return await retry_while_down(self._outages[scope], what, call, self._backoff_max)

    async def _call(self, scope: str, what: str, commands: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        channel = self.channel(scope)
        return await self._retry(scope, what, lambda: channel.call(commands))

    def _refused(self, device_id: str) -> bool:
        if device_id in self._reserved:
            log.error("identity registry: device id %r is a service user's name; its identity "
                      "is left alone", device_id)
            return True
        return False

    async def create(self, scope: str, device_id: str, attributes: dict[str, str]) -> None:
        if self._refused(device_id):
            return
        what = f"create {scope}/{device_id}"
        attributes = {**attributes, "device_id": device_id}
        password = device_password(self._edge.credential_secret, device_id,
                                   attributes.get("certificate_fingerprint", ""))
        role = role_name(device_id)
        fields = client_fields(device_id, password, attributes)
        made = await self._call(scope, what, [
            {"command": "createRole", "rolename": role, "acls": device_acls(device_id)},
            {"command": "createClient", **fields},
        ])
        role_error, client_error = error_of(made[0]), error_of(made[1])
        if role_error not in (None, "Role already exists"):
            raise IdentityError(f"{what}: createRole: {role_error}")
        if client_error not in (None, "Client already exists"):
            raise IdentityError(f"{what}: createClient: {client_error}")
        fixes: list[dict[str, Any]] = []
        if role_error or client_error:
            # made before (the effect run again): changed only where it differs, since
            # modifying a client disconnects its live sessions. Equal attributes mean an equal
            # password: it derives from the device id and the certificate fingerprint.
            client, found_role = await self._read(scope, what, device_id)
            if client is None or check_created(device_id, attributes, client, found_role):
                fixes.append({"command": "modifyRole", "rolename": role,
                              "acls": device_acls(device_id)})
                fixes.append({"command": "modifyClient", **fields})
        if fixes:
            for response in await self._call(scope, what, fixes):
                if error_of(response):
                    raise IdentityError(f"{what}: {response.get('command')}: "
                                        f"{error_of(response)}")
        client, found_role = await self._read(scope, what, device_id)
        if client is None:
            raise IdentityNotVerified(f"{what}: read back: the client is not there")
        problem = check_created(device_id, attributes, client, found_role)
        if problem:
            raise IdentityNotVerified(f"{what}: read back: {problem}")

    async def _read(self, scope: str, what: str, device_id: str
                    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The client and its role as the broker has them (None: no such client)."""
        read = await self._call(scope, what, [
            {"command": "getClient", "username": device_id},
            {"command": "getRole", "rolename": role_name(device_id)}])
        if error_of(read[0]) == "Client not found":
            return None, {}
        if error_of(read[0]):
            raise IdentityError(f"{what}: getClient: {error_of(read[0])}")
        role = {} if error_of(read[1]) else (read[1].get("data") or {}).get("role") or {}
        return (read[0].get("data") or {}).get("client") or {}, role

    async def delete(self, scope: str, device_id: str) -> None:
        if self._refused(device_id):
            return
        what = f"delete {scope}/{device_id}"
        done = await self._call(scope, what, [
            {"command": "deleteClient", "username": device_id},  # kicks its live sessions
            {"command": "deleteRole", "rolename": role_name(device_id)},
            {"command": "getClient", "username": device_id},
        ])
        for response, gone in zip(done[:2], ("Client not found", "Role not found"), strict=True):
            if error_of(response) not in (None, gone):
                raise IdentityError(f"{what}: {response.get('command')}: {error_of(response)}")
        if error_of(done[2]) != "Client not found":
            raise IdentityNotVerified(f"{what}: the client is still there")

    async def get(self, scope: str, device_id: str) -> dict[str, str] | None:
        found = await self._call(scope, f"get {scope}/{device_id}",
                                 [{"command": "getClient", "username": device_id}])
        if error_of(found[0]) == "Client not found":
            return None
        if error_of(found[0]):
            raise IdentityError(f"get {scope}/{device_id}: {error_of(found[0])}")
        client = (found[0].get("data") or {}).get("client") or {}
        try:
            attributes = json.loads(client.get("textdescription") or "{}")
        except ValueError:
            attributes = {}
        return {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) \
            else {}

    async def ping(self) -> bool:
        try:
            await self.channel("global").call([{"command": "getDefaultACLAccess"}])
            return True
        except (ControlUnavailable, IdentityError):
            return False

    async def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
