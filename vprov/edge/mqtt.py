"""What the edge's MQTT clients share: endpoints, TLS, device topics and credentials.

Topics (the platform's device architecture, SPEC 8): a device publishes on
``device/<client_id>/out`` and subscribes to ``device/<client_id>/in``. A device's MQTT user
name and client id are its device id, so the topic level between ``device/`` and ``/out`` names
the authenticated device: the broker lets a client publish only to its own ``out`` topic.

Credentials. A device's password stands for its X.509 certificate: it is derived from
``edge.credential_secret``, the device id and the certificate fingerprint of its registration
(``device_password``). The factory (here the simulator) writes it into the device; the identity
registry gives it to each IoT core that must know the device. docs/identity-seam.md says what a
core that authenticates by certificate does instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import ssl
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from vprov.config import Config
from vprov.core.outputs import GLOBAL_SCOPE

OUT_FILTER = "device/+/out"  # every device's messages to the cloud
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"  # Mosquitto's dynamic-security control API
CONTROL_RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
DEFAULT_PORTS = {"mqtts": 8883, "mqtt": 1883}


def out_topic(device_id: str) -> str:
    return f"device/{device_id}/out"


def in_topic(device_id: str) -> str:
    return f"device/{device_id}/in"


def device_of(topic: str) -> str | None:
    """The device of a ``device/<id>/out`` topic; None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "device" and parts[2] == "out" and parts[1]:
        return parts[1]
    return None


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    """``mqtts://host:port`` (TLS, default port 8883) or ``mqtt://host:port`` (1883)."""
    parts = urlsplit(url if "://" in url else f"mqtts://{url}")
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} is no MQTT endpoint (expected mqtts://host:port)")
    return Endpoint(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme],
                    parts.scheme == "mqtts")


def scope_endpoint(config: Config, scope: str) -> Endpoint:
    """The broker of a scope: the global IoT core, or a region's (its ``gateway_endpoint``,
    the endpoint the answers give devices)."""
    if scope == GLOBAL_SCOPE:
        return parse_endpoint(config.edge.global_endpoint)
    return parse_endpoint(config.region(scope).gateway_endpoint)


def tls_context(ca_location: str) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name against ``ca_location`` (PEM; empty:
    the system's CAs)."""
    return ssl.create_default_context(cafile=ca_location or None)


def device_password(secret: str, device_id: str, certificate_fingerprint: str) -> str:
    """A device's MQTT password: HMAC-SHA256 of its device id and certificate fingerprint under
    the edge's credential secret, in hex. Whoever holds the secret (the factory, the identity
    registry) can compute it; a registration alone does not give it."""
    message = f"{device_id}\n{certificate_fingerprint}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def service_client_id(username: str, scope: str, instance: str | None = None) -> str:
    """A unique client id for a service connection (the identity registry's, a bridge's)."""
    tail = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"{username}-{scope}-{tail}"


def new_client(client_id: str, username: str, password: str, endpoint: Endpoint,
               ca_location: str, *, manual_ack: bool = False) -> mqtt.Client:
    """An MQTT 5 client (v5: a refused publish or subscription comes back with its reason)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    client.username_pw_set(username, password)
    if endpoint.tls:
        client.tls_set_context(tls_context(ca_location))
    return client


def session_properties(expiry_seconds: int, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties: a session the broker keeps ``expiry_seconds`` after a disconnect
    (its subscriptions and the QoS 1 messages queued for it), and how many unacknowledged
    messages the broker may have in flight to the client."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_seconds
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props
