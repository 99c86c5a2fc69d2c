"""Simulated devices that speak MQTT (``vprov simulate --via mqtt``).

Each vehicle's primary device is an MQTT 5 client with its own credentials (user name and client
id: its device id; password: ``device_password`` of its certificate fingerprint, as the factory
would have written it). Its trip, as SPEC 8 tells it: it connects to the global broker, subscribes
to ``device/<id>/in`` and publishes its PROVISION_QUERY on ``device/<id>/out``; it reads the
regional endpoint from the answer and connects there (the identity the rehome created); it sends
the DEVICE_PROVISION of every device of the vehicle over that connection (secondary devices talk
through the primary's); once every answer is in, it tries the global broker again and must be
refused (provisioning deleted its identity there).

Hundreds of connections at once on one thread: paho clients on an external loop (a selector
over their sockets, paho's socket callbacks), so the simulator adds no thread per device.
"""

from __future__ import annotations

import contextlib
import selectors
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from vprov.config import Config
from vprov.core.outputs import GLOBAL_SCOPE
from vprov.edge.mqtt import (
    Endpoint,
    device_password,
    in_topic,
    out_topic,
    parse_endpoint,
    scope_endpoint,
    tls_context,
)

MISC_SECONDS = 1.0  # keepalive and retry housekeeping of every client


@dataclass(eq=False)
class Session:
    """One device connection to one broker."""

    device_id: str
    scope: str
    endpoint: Endpoint
    client: mqtt.Client
    on_message: Callable[[Session, bytes], None] | None
    on_state: Callable[[Session], None] | None
    subscribe: bool = True
    state: str = "connecting"  # connecting, ready, refused, lost, closed
    reason: str = ""
    queued: list[bytes] = field(default_factory=list)
    published: int = 0
    refused_publishes: list[str] = field(default_factory=list)

    def publish(self, payload: bytes) -> None:
        if self.state == "ready":
            self.client.publish(out_topic(self.device_id), payload, qos=1)
            self.published += 1
        elif self.state == "connecting":
            self.queued.append(payload)
        else:
            self.refused_publishes.append(self.state)


class DeviceNet:
    """Many device connections multiplexed on the caller's thread: ``poll`` runs them."""

    def __init__(self, ca_location: str) -> None:
        self.context = tls_context(ca_location)
        self.selector = selectors.DefaultSelector()
        self.sessions: set[Session] = set()
        self._last_misc = time.monotonic()

    def open(self, device_id: str, password: str, endpoint: Endpoint, scope: str, *,
             subscribe: bool = True,
             on_message: Callable[[Session, bytes], None] | None = None,
             on_state: Callable[[Session], None] | None = None) -> Session:
        """Connect (TCP and TLS now, the rest in ``poll``); ``on_state`` hears of ready, refused,
        lost. A broker that cannot be reached leaves the session ``lost`` at once."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(device_id, password)
        if endpoint.tls:
            client.tls_set_context(self.context)
        session = Session(device_id, scope, endpoint, client, on_message, on_state, subscribe)
        client.user_data_set(session)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        self.sessions.add(session)
        try:
            client.connect(endpoint.host, endpoint.port, keepalive=60, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            self._set(session, "lost", f"cannot connect to {endpoint}: {exc}")
        return session

    def close(self, session: Session) -> None:
        if session.state in ("connecting", "ready"):
            session.state = "closed"
            session.client.disconnect()
        else:
            session.state = "closed"
        self.sessions.discard(session)

    # --- paho callbacks (run inside poll) ----------------------------------------------------

    def _set(self, session: Session, state: str, reason: str = "") -> None:
        if session.state == "closed":
            return
        session.state, session.reason = state, reason
        if state in ("refused", "lost"):
            self.sessions.discard(session)
        if session.on_state is not None:
            session.on_state(session)

    def _on_connect(self, client: mqtt.Client, session: Session, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._set(session, "refused", str(reason))
            client.disconnect()
        elif session.subscribe:
            client.subscribe(in_topic(session.device_id), qos=1)
        else:
            self._set(session, "ready")

    def _on_subscribe(self, client: mqtt.Client, session: Session, mid: int, reasons: Any,
                      properties: Any) -> None:
        if reasons and not reasons[0].is_failure:
            self._set(session, "ready")
            queued, session.queued = session.queued, []
            for payload in queued:
                session.publish(payload)
        else:
            self._set(session, "refused", f"subscription refused: {reasons}")

    def _on_message(self, client: mqtt.Client, session: Session,
                    message: mqtt.MQTTMessage) -> None:
        if session.on_message is not None:
            session.on_message(session, bytes(message.payload))

    def _on_disconnect(self, client: mqtt.Client, session: Session, flags: Any, reason: Any,
                       properties: Any) -> None:
        if session.state in ("connecting", "ready"):
            self._set(session, "lost", str(reason))

    def _socket_open(self, client: mqtt.Client, session: Session, sock: Any) -> None:
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _socket_close(self, client: mqtt.Client, session: Session, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def _register_write(self, client: mqtt.Client, session: Session, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _unregister_write(self, client: mqtt.Client, session: Session, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(sock, selectors.EVENT_READ, client)

    # --- the loop ---------------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        if not self.selector.get_map():
            time.sleep(timeout)
        else:
            for key, mask in self.selector.select(timeout):
                client: mqtt.Client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                    sock = client.socket()
                    # TLS may hold decrypted bytes the selector cannot see
                    while isinstance(sock, ssl.SSLSocket) and sock.pending():
                        client.loop_read()
                        sock = client.socket()
                if mask & selectors.EVENT_WRITE and client.socket() is not None:
                    client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= MISC_SECONDS:
            self._last_misc = now
            for key in list(self.selector.get_map().values()):
                key.data.loop_misc()

    def close_all(self) -> None:
        for session in list(self.sessions):
            self.close(session)
        until = time.monotonic() + 2
        while self.selector.get_map() and time.monotonic() < until:
            self.poll(0.05)


class EdgeDevices:
    """The fleet driver's devices over MQTT: a vehicle's primary holds one connection per
    scope it talks to (the global broker, then its region's)."""

    def __init__(self, config: Config, on_answer: Callable[[Any, str, bytes], None],
                 on_refused: Callable[[Any, str], None],
                 on_lost: Callable[[Any, str, str], None]) -> None:
        from vprov.kafka.catalogue import Catalogue

        cat = Catalogue(config)
        self.config = config
        self.secret = config.edge.credential_secret
        self.net = DeviceNet(config.edge.ca_location)
        self.scope_of = {cat.query: GLOBAL_SCOPE,
                         **{cat.device(r): r for r in config.regions}}
        self.answer_topic = {GLOBAL_SCOPE: cat.query_response,
                             **{r: cat.device_response(r) for r in config.regions}}
        self.on_answer = on_answer  # (trip, answer topic, raw answer)
        self.on_refused = on_refused  # (trip, why)
        self.on_lost = on_lost  # (trip, request topic of the scope, why): connection lost
        self.sessions: dict[tuple[Any, str], Session] = {}

    def password(self, device: Any) -> str:
        return device_password(self.secret, device.device_id, device.fingerprint)

    def endpoint(self, trip: Any, scope: str) -> Endpoint:
        if scope != GLOBAL_SCOPE and getattr(trip, "endpoint", None):
            return parse_endpoint(trip.endpoint)  # where the answer sent it
        return scope_endpoint(self.config, scope)

    def send(self, trip: Any, topic: str, raw: bytes) -> None:
        scope = self.scope_of.get(topic)
        if scope is None:
            raise ValueError(f"{topic} is no device request topic")
        session = self.sessions.get((trip, scope))
        if session is None or session.state in ("refused", "lost", "closed"):
            primary = trip.vehicle.primary

            answer_topic = self.answer_topic[scope]

            def answered(session: Session, payload: bytes) -> None:
                self.on_answer(trip, answer_topic, payload)

            def changed(session: Session) -> None:
                if session.state == "refused":
                    self.on_refused(trip, f"the {session.scope} broker at {session.endpoint} "
                                          f"refused {session.device_id}: {session.reason}")
                elif session.state == "lost":
                    self.on_lost(trip, topic, f"the connection to the {session.scope} broker "
                                              f"at {session.endpoint} was lost: {session.reason}")

            session = self.net.open(primary.device_id, self.password(primary),
                                    self.endpoint(trip, scope), scope,
                                    on_message=answered, on_state=changed)
            self.sessions[(trip, scope)] = session
        session.publish(raw)

    def probe_refused(self, trip: Any, done: Callable[[str | None], None]) -> None:
        """Connect to the global broker as the trip's primary; ``done(None)`` when refused,
        ``done(problem)`` when the broker still takes the device."""
        primary = trip.vehicle.primary

        def changed(session: Session) -> None:
            if session.state == "ready":
                self.net.close(session)
                done("the global broker still accepts the device after its provisioning")
            elif session.state == "refused":
                done(None)
            elif session.state == "lost":
                done(f"probing the global broker: {session.reason}")

        self.net.open(primary.device_id, self.password(primary),
                      scope_endpoint(self.config, GLOBAL_SCOPE), GLOBAL_SCOPE,
                      subscribe=False, on_state=changed)

    def release(self, trip: Any, scope: str | None = None) -> None:
        """Close the trip's connections (to one scope's broker, or all)."""
        for (owner, where), session in list(self.sessions.items()):
            if owner is trip and (scope is None or where == scope):
                self.net.close(session)
                del self.sessions[(owner, where)]

    def poll(self, timeout: float) -> None:
        self.net.poll(timeout)

    def close(self) -> None:
        self.sessions.clear()
        self.net.close_all()
