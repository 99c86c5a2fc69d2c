"""What a decision is given besides its input and entry: the configuration, the topic catalogue
and the time (``Context``), and where its input came from (``Source``)."""

from __future__ import annotations

from dataclasses import dataclass

from vprov.config import Config
from vprov.kafka.catalogue import Catalogue


@dataclass(frozen=True)
class Context:
    config: Config
    topics: Catalogue
    now_ms: int

    @property
    def now_s(self) -> int:
        return self.now_ms // 1000


@dataclass(frozen=True)
class Source:
    """Where a record came from, and who the gateway says sent it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    authenticated: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"
