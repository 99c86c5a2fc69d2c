"""The device edge's pieces that need no broker: topics, endpoints and credentials, the
bridge's ordering of acknowledgements and commits, the identity checks, the configuration, and
the answer's addressee (the authenticated sender of its request)."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import CONFIG, Flow, vehicle

from streams.shell import Shell
from vprov import config as config_module
from vprov.config import ConfigError
from vprov.core.outputs import Output
from vprov.edge.bridge import AnswerOffsets, InboundOrder, answer_target, shard_of, valid_device
from vprov.edge.dynsec import check_created, describe, device_acls, role_name
from vprov.edge.mqtt import (
    device_of,
    device_password,
    in_topic,
    out_topic,
    parse_endpoint,
    scope_endpoint,
)
from vprov.sim import fleet

HEADER = CONFIG.authenticated_header


def test_device_topics_name_the_device() -> None:
    assert (out_topic("d1"), in_topic("d1")) == ("device/d1/out", "device/d1/in")
    assert device_of("device/d1/out") == "d1"
    for other in ("device/d1/in", "device//out", "device/a/b/out", "x/d1/out", "device/d1"):
        assert device_of(other) is None
    assert valid_device("d1") and not any(valid_device(d) for d in ("", "a/b", "+", "#", "a\n"))


def test_endpoints() -> None:
    assert str(parse_endpoint("mqtts://127.0.0.1:8884")) == "mqtts://127.0.0.1:8884"
    assert parse_endpoint("mqtts://na.iot.example").port == 8883
    assert parse_endpoint("mqtt://broker").port == 1883 and not parse_endpoint("mqtt://b").tls
    with pytest.raises(ValueError, match="no MQTT endpoint"):
        parse_endpoint("https://na.iot.example")
    assert scope_endpoint(CONFIG, "NA") == parse_endpoint(CONFIG.region("NA").gateway_endpoint)
    assert scope_endpoint(CONFIG, "global") == parse_endpoint(CONFIG.edge.global_endpoint)


def test_a_device_password_needs_the_secret_and_follows_the_certificate() -> None:
    password = device_password("secret", "d1", "ab12")
    assert password == device_password("secret", "d1", "ab12") and len(password) == 64
    assert password not in {device_password("other", "d1", "ab12"),
                            device_password("secret", "d2", "ab12"),
                            device_password("secret", "d1", "ab13")}


def test_device_messages_are_acknowledged_in_the_order_they_came() -> None:
    order = InboundOrder()
    first, second, third = (order.add(mid, 1, generation=1) for mid in (11, 12, 13))
    assert order.complete(second, 1) == []  # the first is not in Kafka yet
    assert order.complete(third, 1) == []
    assert [e.mid for e in order.complete(first, 1)] == [11, 12, 13]
    assert len(order) == 0


def test_an_earlier_connections_messages_are_never_acknowledged_on_a_later_one() -> None:
    order = InboundOrder()
    old = order.add(5, 1, generation=1)
    new = order.add(5, 1, generation=2)  # the broker sent it again, on the new connection
    assert order.complete(new, 2) == []
    assert [(e.mid, e.generation) for e in order.complete(old, 2)] == [(5, 2)]


def test_an_answer_offset_is_committed_only_past_acknowledged_answers() -> None:
    offsets = AnswerOffsets()
    a, b, c = (offsets.add("answers", 3, offset) for offset in (7, 8, 9))
    other = offsets.add("answers", 4, 0)
    offsets.acknowledged("answers", 3, b)
    assert offsets.take_commits() == []
    offsets.acknowledged("answers", 3, a)
    [commit] = offsets.take_commits()
    assert (commit.topic, commit.partition, commit.offset) == ("answers", 3, 9)
    assert offsets.unanswered() == 2
    offsets.acknowledged("answers", 3, c)
    offsets.acknowledged("answers", 4, other)
    assert sorted((t.partition, t.offset) for t in offsets.take_commits()) == [(3, 10), (4, 1)]
    assert offsets.take_commits() == []


def test_an_answer_goes_to_the_connection_its_request_came_from() -> None:
    answer = b'{"device_id": "secondary-1"}'
    assert answer_target(answer, [(HEADER, b"primary-1")], HEADER) == "primary-1"
    assert answer_target(answer, {HEADER: b"primary-1"}, HEADER) == "primary-1"
    assert answer_target(answer, None, HEADER) == "secondary-1"  # no sender named: its device
    assert answer_target(b"not json", None, HEADER) is None


def test_shards_split_devices_the_same_way_every_time() -> None:
    devices = [f"d{i}" for i in range(200)]
    shards = [shard_of(d, 3) for d in devices]
    assert shards == [shard_of(d, 3) for d in devices] and set(shards) == {0, 1, 2}


def test_an_identity_read_back_must_match_what_was_written() -> None:
    attributes = {"device_id": "d1", "system_id": "s1"}
    client = {"username": "d1", "clientid": "d1", "textdescription": describe(attributes),
              "roles": [{"rolename": role_name("d1")}]}
    role = {"rolename": role_name("d1"), "acls": device_acls("d1")}
    assert check_created("d1", attributes, client, role) is None
    assert check_created("d1", attributes, {**client, "clientid": "x"}, role) is not None
    assert check_created("d1", attributes, {**client, "roles": []}, role) is not None
    assert check_created("d1", {**attributes, "vin": "V"}, client, role) is not None
    assert check_created("d1", attributes, {**client, "disabled": True}, role) is not None
    assert check_created("d1", attributes, client, {**role, "acls": device_acls("d2")}) \
        is not None
    # only its own topics: publish to its out topic, subscribe to its in topic
    assert {(a["acltype"], a["topic"]) for a in device_acls("d1")} == {
        ("publishClientSend", "device/d1/out"), ("subscribeLiteral", "device/d1/in")}


def test_the_edge_configuration() -> None:
    assert CONFIG.edge.identity == "redis"
    env = {"VPROV_IDENTITY": "mosquitto", "VPROV_EDGE_ADMIN_PASSWORD": "pw",
           "VPROV_EDGE_CREDENTIAL_SECRET": "s",
           "VPROV_GATEWAY_ENDPOINT_NA": "mqtts://127.0.0.1:18884",
           "VPROV_EDGE_GLOBAL_ENDPOINT": "mqtts://127.0.0.1:18883"}
    loaded = config_module.load(env=env)
    assert loaded.edge.identity == "mosquitto"
    assert loaded.region("NA").gateway_endpoint == "mqtts://127.0.0.1:18884"
    assert loaded.edge.global_endpoint == "mqtts://127.0.0.1:18883"
    with pytest.raises(ConfigError, match="edge.admin_password and edge.credential_secret"):
        config_module.load(env={"VPROV_IDENTITY": "mosquitto"})
    with pytest.raises(ConfigError, match="expected one of redis, mosquitto"):
        config_module.load(env={"VPROV_IDENTITY": "aws"})
    with pytest.raises(ConfigError, match=r"edge.ca_location='/nowhere.pem': no such file"):
        config_module.load(env={"VPROV_EDGE_CA_LOCATION": "/nowhere.pem"})


def answers_to(outputs: list[Output]) -> list[tuple[str, str | None]]:
    return [(o.value, o.to) for o in outputs if o.kind == "reply"]


def test_a_secondarys_answer_is_addressed_to_the_primary_that_sent_it() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    primary, secondary = sim.devices
    out = flow.provision(fleet.device_provision(sim, secondary, "s-1", flow.now_s), "NA",
                         authenticated=primary.device_id)  # held until the primary
    assert answers_to(out) == []
    out = flow.provision(fleet.device_provision(sim, primary, "p-1", flow.now_s), "NA",
                         authenticated=primary.device_id)
    assert [to for _, to in answers_to(out)] == [primary.device_id, primary.device_id]


def test_an_answer_without_an_authenticated_sender_names_no_one() -> None:
    flow, sim = Flow(), vehicle()
    flow.homed(sim)
    out = flow.provision(fleet.device_provision(sim, sim.primary, "p-1", flow.now_s), "NA")
    assert [to for _, to in answers_to(out)] == [None]


def test_the_query_answer_is_addressed_to_its_sender_through_the_hops() -> None:
    flow, sim = Flow(), vehicle()
    flow.register(sim)
    out = flow.query(fleet.query(sim, "q-1", flow.now_s), authenticated=sim.primary.device_id)
    assert [to for _, to in answers_to(out)] == [sim.primary.device_id]


class _Serde:
    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b""


def test_the_shell_sends_the_addressee_as_the_authenticated_header() -> None:
    shell = Shell.__new__(Shell)
    shell.config, shell.serde = CONFIG, _Serde()
    to = Output("reply", "answers", "V1", "{}", to="primary-1")
    assert shell.encode(to) == ("answers", b"V1", b"{}", [(HEADER, b"primary-1")])
    assert shell.encode(Output("reply", "answers", "V1", "{}"))[3] is None
