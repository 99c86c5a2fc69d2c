"""The gateway identity registry: the store an IoT gateway authenticates devices against.

One registry per scope: ``global`` for the global gateway and one per region code. The port is
``IdentityRegistry``; ``RedisIdentityRegistry`` is the default implementation, and
``vprov.edge.dynsec.MosquittoIdentityRegistry`` keeps the identities in real IoT brokers
(``edge.identity``; ``streams.app.open_registry`` picks one). docs/identity-seam.md says what
each call must guarantee, for an implementation on another IoT core.

Redis key layout (documented in docs/architecture.md):
  ``vprov:identity:<scope>:<device_id>`` -> hash {device_id, system_id, vin,
  certificate_fingerprint, ecu_type, updated_at}. Create writes the whole hash (HSET), delete
  removes the key (DEL): both idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from vprov.core.outputs import Effect

log = logging.getLogger(__name__)
T = TypeVar("T")
KEY_PREFIX = "vprov:identity"


def identity_key(scope: str, device_id: str) -> str:
    return f"{KEY_PREFIX}:{scope}:{device_id}"


class Outage:
    """One report per outage of a service that several calls retry at once (an agent carries
    out several inputs at a time, streams/in_flight.py): the first failure, one line every
    ``report_seconds`` while it lasts, and one when a call gets through again."""

    def __init__(self, service: str, fix: str, transient: tuple[type[BaseException], ...],
                 report_seconds: float = 30.0) -> None:
        self.service = service
        self.fix = fix  # what to check, in the first line
        self.transient = transient  # the errors that mean "unreachable": retried
        self.report_seconds = report_seconds
        self.began: float | None = None
        self.failures = 0
        self._reported = 0.0

    def failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        if self.began is None:
            self.began = self._reported = now
            log.warning("%s unreachable during %s: %s; retrying (reported again every %d s "
                        "while it lasts). %s", self.service, what, exc, self.report_seconds,
                        self.fix)
        elif now - self._reported >= self.report_seconds:
            self._reported = now
            log.warning("%s still unreachable after %.0f s (%d failed attempts): %s. %s",
                        self.service, now - self.began, self.failures, exc, self.fix)

    def succeeded(self) -> None:
        if self.began is not None:
            log.warning("%s reachable again after %.1f s (%d failed attempts)", self.service,
                        time.monotonic() - self.began, self.failures)
            self.began, self.failures = None, 0


async def retry_while_down(outage: Outage, what: str, call: Callable[[], Awaitable[T]],
                           backoff_max: float) -> T:
    """``call`` until it gets through, with capped exponential backoff while it fails with one
    of ``outage.transient``: the caller's partition waits and nothing is lost."""
    delay = 0.05
    while True:
        try:
            result = await call()
        except outage.transient as exc:
            outage.failed(what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max)
        else:
            outage.succeeded()
            return result


class IdentityRegistry(Protocol):
    async def create(self, scope: str, device_id: str, attributes: dict[str, str]) -> None: ...

    async def delete(self, scope: str, device_id: str) -> None: ...

    async def get(self, scope: str, device_id: str) -> dict[str, str] | None: ...


class RedisIdentityRegistry:
    """Identities in Redis; every call retries with capped exponential backoff while Redis is
    unreachable, so an outage pauses the partition's processing instead of losing an effect."""

    def __init__(self, url: str, backoff_max_seconds: float = 5.0) -> None:
        self._url = url
        self._client = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._backoff_max = backoff_max_seconds
        self._outage = Outage(f"identity registry at {url}",
                              "Check that Redis runs (make up) and REDIS_URL.",
                              (RedisConnectionError, RedisTimeoutError, OSError))

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await retry_while_down(self._outage, what, call, self._backoff_max)

    async def create(self, scope: str, device_id: str, attributes: dict[str, str]) -> None:
        mapping: dict[EncodableT, EncodableT] = {}
        mapping.update(attributes)
        mapping.update(device_id=device_id, updated_at=str(int(time.time())))
        await self._retry(
            f"create {scope}/{device_id}",
            lambda: self._client.hset(identity_key(scope, device_id), mapping=mapping),
        )

    async def delete(self, scope: str, device_id: str) -> None:
        await self._retry(
            f"delete {scope}/{device_id}",
            lambda: self._client.delete(identity_key(scope, device_id)),
        )

    async def get(self, scope: str, device_id: str) -> dict[str, str] | None:
        raw = await self._retry(
            f"get {scope}/{device_id}",
            lambda: self._client.hgetall(identity_key(scope, device_id)),
        )
        if not raw:
            return None
        # the client does not decode responses: keys and values arrive as bytes
        return {k.decode(): v.decode() for k, v in cast(dict[bytes, bytes], raw).items()}

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()


async def apply_effect(registry: IdentityRegistry, effect: Effect) -> None:
    if effect.op == "create_identity":
        await registry.create(effect.scope, effect.device_id, effect.attributes)
    elif effect.op == "delete_identity":
        await registry.delete(effect.scope, effect.device_id)
    else:  # pragma: no cover - Effect.op is a closed set
        raise ValueError(f"unknown effect {effect.op!r}")
