"""Fixtures for every suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import ports


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with ports.silent_port() as port:
        yield port
