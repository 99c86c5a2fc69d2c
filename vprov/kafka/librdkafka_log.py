"""librdkafka's log lines, routed through Python logging.

Without a ``logger`` setting, librdkafka writes its log lines to stderr itself, from its own
threads: a broker that is down gives a ``Connect to ipv4#... failed`` line several times a second
per client. Every confluent-kafka client of vprov passes ``logger=librdkafka_logger()`` instead;
that logger lets each distinct line through once per ``RepeatFilter.interval`` and, from the
command line, is quiet unless ``vprov -v`` (see ``configure``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

LOGGER_NAME = "vprov.librdkafka"
QUIET = logging.CRITICAL + 1  # above every level librdkafka logs at

# Parts of a librdkafka line that change between repeats of the same event.
_VARYING = (
    (re.compile(r"rdkafka#(\w+)-\d+"), r"rdkafka#\1"),  # the client's name: producer-3
    (re.compile(r"\d+ identical error\(s\) suppressed"), "identical errors suppressed"),
    (re.compile(r"\b\d+(?:\.\d+)?ms\b"), "Nms"),  # "(after 0ms in state CONNECT)"
)


def repeat_key(text: str) -> str:
    """``text`` without the parts that differ between repeats of one librdkafka event."""
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text


class RepeatFilter(logging.Filter):
    """Lets each distinct message through once per ``interval`` seconds (once for good with
    ``interval=None``); a message let through again says how many repeats were held back."""

    def __init__(self, interval: float | None = 60.0, max_keys: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (shown, held)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = f"{record.levelno}:{repeat_key(text)}"
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                shown_at, held = seen
                if self.interval is None or now - shown_at < self.interval:
                    self._seen[key] = (shown_at, held + 1)
                    return False
                if held:
                    record.msg, record.args = f"{text} ({held} repeats held back)", None
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        return True


class ClientRepeatFilter(logging.Filter):
    """Lets each distinct message of some loggers (those named by ``prefixes`` and their
    children) through once per ``interval`` seconds; others pass. For handlers that also carry
    everything else: a worker's Kafka client logs each failed connection attempt while a broker
    is away, several a second. Records are never changed (other handlers format them too)."""

    def __init__(self, prefixes: tuple[str, ...], interval: float = 30.0,
                 max_keys: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._shown: OrderedDict[str, float] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the formatter's to report
            return True
        key = f"{record.name}:{record.levelno}:{repeat_key(text)}"
        now = self._clock()
        with self._lock:
            shown = self._shown.get(key)
            if shown is not None and now - shown < self.interval:
                return False
            self._shown[key] = now
            self._shown.move_to_end(key)
            while len(self._shown) > self.max_keys:
                self._shown.popitem(last=False)
        return True


def librdkafka_logger() -> logging.Logger:
    """The logger every confluent-kafka client gets as its ``logger`` setting."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger


def routed() -> dict[str, Any]:
    """The settings that send a client's errors (not its retried warnings) through
    ``librdkafka_logger``: without them, an idle client of a worker writes every failed
    reconnection to stderr for as long as a broker is down."""
    return {"log_level": 3, "logger": librdkafka_logger()}


def configure(verbose: bool) -> None:
    """From the command line: librdkafka's lines go to the log only with ``-v``."""
    librdkafka_logger().setLevel(logging.DEBUG if verbose else QUIET)
