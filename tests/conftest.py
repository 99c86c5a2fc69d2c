"""Fixtures for every suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import client_guard, ports

# The schema registry of the local stack (`scripts/stack.sh up --registry` exports its URL).
# Taken out of the environment here: the workers and commands the suite starts keep the default
# single-object format, and only the tests that ask for the registry get it.
SCHEMA_REGISTRY_URL = os.environ.pop("SCHEMA_REGISTRY_URL", "")


# the suites whose tests open clients against the real stack
CLIENT_SUITES = ("integration", "reliability")


@pytest.fixture(autouse=True)
def clients_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test of the stack's suites (last among its fixtures' teardowns): no Kafka
    client it opened is left open for the garbage collector to tear down (tests/client_guard)."""
    yield
    if request.node.path.parent.name not in CLIENT_SUITES:
        return
    left = client_guard.open_clients_in_garbage()
    if left:
        pytest.fail(f"Kafka clients left open in a reference cycle: {', '.join(left)}; close "
                    "each where its work ends (vprov.kafka.clients)", pytrace=False)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with ports.silent_port() as port:
        yield port


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """The real schema registry's Confluent-compatible API."""
    if not SCHEMA_REGISTRY_URL:
        pytest.fail("no schema registry: run the suite with `make test`, or start one with "
                    "`scripts/stack.sh up --registry` and `eval \"$(scripts/stack.sh env)\"`",
                    pytrace=False)
    return SCHEMA_REGISTRY_URL
