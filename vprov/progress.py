"""A small progress display for long commands: a bar on a terminal, a line now and then in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 every_seconds: float = 0.2) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._every = every_seconds if self.tty else 5.0
        self._last = 0.0
        self._started = time.monotonic()
        self.extra = ""

    def advance(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        if extra:
            self.extra = extra
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._draw()

    def _draw(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            text = (f"{self.label} [{bar:<30}] {self.done}/{self.total} "
                    f"({rate:,.0f}/s) {self.extra}")
        else:
            text = f"{self.label} {self.done} ({rate:,.0f}/s) {self.extra}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._draw(final=True)
