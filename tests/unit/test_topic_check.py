"""The start-up check of existing topics against the catalogue, without a broker."""

from __future__ import annotations

import pytest

from vprov.kafka.catalogue import TopicSpec
from vprov.kafka.topic_admin import (
    Listing,
    Mismatch,
    ObservedTopic,
    compare_topics,
    mismatch_message,
    too_few_brokers_message,
    wait_for_brokers,
)

BOOTSTRAP = "kafka.example:9092"
QUERY = TopicSpec("provisioning.query", 8, 1)
REGISTRATIONS = TopicSpec("registration.devices", 8, 1, compacted=True)
CHANGELOG = TopicSpec("vprov-global-vehicles-changelog", 8, 1, compacted=True, internal=True)
SPECS = [QUERY, REGISTRATIONS, CHANGELOG]


def observed(**overrides: ObservedTopic) -> dict[str, ObservedTopic]:
    """Every spec as it should be, except the overrides (by spec attribute name)."""
    topics = {s.name: ObservedTopic(s.partitions, "compact" if s.compacted else "delete")
              for s in SPECS}
    names = {"query": QUERY.name, "registrations": REGISTRATIONS.name,
             "changelog": CHANGELOG.name}
    topics.update({names[key]: topic for key, topic in overrides.items()})
    return topics


def check(**overrides: ObservedTopic) -> tuple[list[Mismatch], str]:
    found = observed(**overrides)
    mismatches = compare_topics(SPECS, found)
    return mismatches, mismatch_message(mismatches, found, BOOTSTRAP) if mismatches else ""


def test_topics_as_specified_pass() -> None:
    assert compare_topics(SPECS, observed()) == []


def test_missing_topics_are_not_mismatches() -> None:
    assert compare_topics(SPECS, {}) == []


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete,compact"])
def test_any_policy_with_compaction_passes_for_a_compacted_topic(policy: str) -> None:
    assert compare_topics(SPECS, observed(changelog=ObservedTopic(8, policy))) == []


def test_fewer_partitions_on_a_stateless_topic_suggests_adding_partitions() -> None:
    mismatches, message = check(query=ObservedTopic(3, "delete"))
    assert [m.spec for m in mismatches] == [QUERY]
    assert mismatches[0].partitions_differ and not mismatches[0].compaction_differs
    assert message.startswith("1 topic of this deployment does not match its configuration")
    assert "provisioning.query: found 3 partitions, expected 8 partitions" in message
    assert (f"`kafka-topics.sh --bootstrap-server {BOOTSTRAP} --alter --topic "
            "provisioning.query --partitions 8`") in message
    assert "moves keys" in message
    assert "--delete --topic provisioning.query" in message  # the alternative


def test_fewer_partitions_on_a_state_topic_asks_for_re_creation_not_alter() -> None:
    mismatches, message = check(registrations=ObservedTopic(4, "compact"))
    assert [m.spec for m in mismatches] == [REGISTRATIONS]
    assert "registration.devices: found 4 partitions, expected 8 partitions" in message
    assert "--alter" not in message
    assert (f"`kafka-topics.sh --bootstrap-server {BOOTSTRAP} --delete --topic "
            "registration.devices`") in message
    assert "`vprov topics create`" in message
    assert "clear their --data-dir" in message and "`vprov register`" in message


def test_more_partitions_than_configured_is_never_shrunk() -> None:
    _, message = check(query=ObservedTopic(12, "delete"))
    assert "found 12 partitions, expected 8 partitions" in message
    assert "Kafka cannot remove partitions" in message
    assert "--alter" not in message
    assert "--delete --topic provisioning.query" in message


@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_a_compacted_input_topic_that_should_not_be(policy: str) -> None:
    mismatches, message = check(query=ObservedTopic(8, policy))
    assert [m.spec for m in mismatches] == [QUERY]
    assert mismatches[0].compaction_differs and not mismatches[0].partitions_differ
    assert (f"provisioning.query: found cleanup.policy={policy}, expected cleanup.policy=delete"
            in message)
    assert "--delete --topic provisioning.query" in message
    assert "offset guard" in message


def test_a_state_topic_that_is_not_compacted_gets_compaction_set() -> None:
    _, message = check(changelog=ObservedTopic(8, "delete"))
    assert (f"{CHANGELOG.name}: found cleanup.policy=delete, expected cleanup.policy=compact"
            in message)
    assert (f"`kafka-configs.sh --bootstrap-server {BOOTSTRAP} --alter --entity-type topics "
            f"--entity-name {CHANGELOG.name} --add-config cleanup.policy=compact`") in message
    assert "--delete --topic" not in message


def test_both_differences_on_one_topic_are_named_together() -> None:
    _, message = check(registrations=ObservedTopic(1, "delete"))
    assert ("registration.devices: found 1 partition and cleanup.policy=delete, expected 8 "
            "partitions and cleanup.policy=compact") in message


def test_every_mismatched_topic_is_named() -> None:
    mismatches, message = check(query=ObservedTopic(3, "delete"),
                                changelog=ObservedTopic(8, "delete"))
    assert [m.spec for m in mismatches] == [QUERY, CHANGELOG]
    assert message.startswith("2 topics of this deployment do not match its configuration")
    assert "kafka.partitions = 8" in message
    assert QUERY.name in message and CHANGELOG.name in message
    assert REGISTRATIONS.name not in message
    assert message.count("fix: ") == 2


def test_changing_the_configuration_is_offered_when_every_topic_agrees() -> None:
    found = {s.name: ObservedTopic(4, "compact" if s.compacted else "delete") for s in SPECS}
    mismatches = compare_topics(SPECS, found)
    assert len(mismatches) == 3
    message = mismatch_message(mismatches, found, BOOTSTRAP)
    assert "kafka.partitions = 4 (or VPROV_PARTITIONS=4)" in message
    assert "all 3 existing topics of this deployment have 4 partitions" in message


def test_changing_the_configuration_is_not_offered_when_counts_differ() -> None:
    _, message = check(query=ObservedTopic(4, "delete"))
    assert "VPROV_PARTITIONS" not in message


# --- replication --------------------------------------------------------------------------------

REPLICATED = TopicSpec("provisioning.query", 8, 3, min_insync_replicas=2)


def replication_message(found: ObservedTopic) -> tuple[list[Mismatch], str]:
    mismatches = compare_topics([REPLICATED], {REPLICATED.name: found})
    observed = {REPLICATED.name: found}
    return mismatches, mismatch_message(mismatches, observed, BOOTSTRAP) if mismatches else ""


def test_a_spec_sets_min_insync_replicas_on_the_topic_itself() -> None:
    assert REPLICATED.config == {"min.insync.replicas": "2"}
    assert CHANGELOG.config == {"min.insync.replicas": "1", "cleanup.policy": "compact"}


@pytest.mark.parametrize(("replicas", "insync"), [(3, 2), (5, 3), (None, None)])
def test_replication_at_or_above_the_setting_passes(replicas: int | None,
                                                    insync: int | None) -> None:
    assert compare_topics([REPLICATED], {REPLICATED.name: ObservedTopic(
        8, "delete", replicas, insync)}) == []


def test_a_topic_with_fewer_replicas_names_the_topic_and_the_reassignment() -> None:
    mismatches, message = replication_message(ObservedTopic(8, "delete", 1, 2))
    assert [m.spec for m in mismatches] == [REPLICATED]
    assert mismatches[0].replication_low and not mismatches[0].layout_differs
    assert message.startswith(
        "1 topic of this deployment does not match its configuration. Every topic needs at "
        "least kafka.replication_factor = 3 replicas and min.insync.replicas = 2 "
        "(kafka.min_insync_replicas), so that a write the brokers acknowledged survives the "
        "loss of a broker:")
    assert "Faust co-partitions" not in message  # the partitions are right
    assert "provisioning.query: found 1 replica, expected at least 3 replicas" in message
    assert (f"fix: give each of its 8 partitions 3 replicas with `kafka-reassign-partitions.sh "
            f"--bootstrap-server {BOOTSTRAP} --reassignment-json-file FILE --execute`, FILE "
            "listing 3 broker ids for each partition") in message
    assert "--delete" not in message  # no state to lose: nothing is re-created


def test_a_topic_with_min_insync_replicas_below_the_setting_gets_it_altered() -> None:
    _, message = replication_message(ObservedTopic(8, "delete", 3, 1))
    assert ("provisioning.query: found min.insync.replicas=1, expected at least "
            "min.insync.replicas=2") in message
    assert (f"fix: `kafka-configs.sh --bootstrap-server {BOOTSTRAP} --alter --entity-type topics "
            "--entity-name provisioning.query --add-config min.insync.replicas=2`") in message


def test_layout_and_replication_differences_are_named_together_with_a_fix_each() -> None:
    _, message = replication_message(ObservedTopic(3, "delete", 1, 1))
    assert ("provisioning.query: found 3 partitions and 1 replica and min.insync.replicas=1, "
            "expected 8 partitions and at least 3 replicas and at least "
            "min.insync.replicas=2") in message
    assert "Faust co-partitions" in message and "survives the loss of a broker" in message
    assert message.count("fix: ") == 3
    assert "give each of its 3 partitions 3 replicas" in message


def test_too_few_brokers_for_the_replication_factor_names_both_settings() -> None:
    message = too_few_brokers_message([REPLICATED], 1, BOOTSTRAP)
    assert message == (
        f"kafka.replication_factor = 3, but the Kafka cluster at {BOOTSTRAP} has 1 broker up, "
        "and a topic cannot have more replicas than there are brokers: set "
        "kafka.replication_factor (VPROV_REPLICATION_FACTOR) to at most 1 and "
        "kafka.min_insync_replicas (VPROV_MIN_INSYNC_REPLICAS) to at most that, or start the "
        "missing brokers")


def listing(brokers: int) -> Listing:
    return Listing({}, {}, brokers)


def test_topic_creation_waits_for_a_broker_that_registers_late() -> None:
    seen = iter([listing(2), listing(3)])
    slept: list[float] = []
    found = wait_for_brokers(lambda: next(seen), listing(2), 3, wait=20, sleep=slept.append,
                             clock=lambda: 0.0)
    assert found.brokers == 3
    assert slept == [0.5, 0.5]


def test_topic_creation_gives_up_on_missing_brokers_after_the_wait() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    asked = []

    def list_topics() -> Listing:
        asked.append(now[0])
        return listing(1)

    found = wait_for_brokers(list_topics, listing(1), 3, wait=20, sleep=sleep,
                             clock=lambda: now[0])
    assert found.brokers == 1
    assert len(asked) == 40 and asked[-1] == 20.0
