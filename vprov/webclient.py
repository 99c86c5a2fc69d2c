"""GET JSON from a worker's web port: the one HTTP client of the tools and the tests."""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

import httpx

RETRY_STATUSES = (502, 503, 504)  # a worker rebalancing or forwarding to a restarting peer
NoAnswer = httpx.TransportError  # no HTTP answer at all: refused, timed out, cut off
STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
# httpx logs every request at INFO and httpcore every socket step: not what a log is read for
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class WebClient:
    """Requests to one ``http://host:port`` over kept-alive connections (thousands of lookups
    in a row would otherwise spend their time opening sockets)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url!r}: expected http://host:port")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  headers={"Accept": "application/json"})

    def get(self, path: str, timeout: float | None = None) -> tuple[int, Any]:
        """(HTTP status, parsed JSON or None); ``NoAnswer`` when there is no answer."""
        timeout = timeout or self.timeout
        try:
            response = self._http.get(path, timeout=timeout)
        except STALE:  # a kept-alive connection the server had closed: once more, on a new one
            response = self._http.get(path, timeout=timeout)
        try:
            return response.status_code, response.json() if response.content else None
        except ValueError:
            return response.status_code, None

    def get_settled(self, path: str, timeout: float = 15.0) -> tuple[int, Any]:
        """Like ``get``, retrying while the worker answers 502/503/504 (rebalancing)."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get(path)
            if status not in RETRY_STATUSES or time.monotonic() >= deadline:
                return status, body
            time.sleep(0.3)

    def health(self) -> dict[str, Any] | None:
        """The worker's ``/health`` document, None unless it answers 200 with one."""
        try:
            status, body = self.get("/health", timeout=2.0)
        except NoAnswer:
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def close(self) -> None:
        self._http.close()
