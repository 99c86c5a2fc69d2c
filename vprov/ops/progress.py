"""The progress display of long commands: a bar on a terminal, an update every 5 s in logs."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


def progress(label: str, total: int | None = None, stream: TextIO | None = None) -> tqdm:
    """A bar to ``update(n)`` and ``close()``; ``set_postfix_str`` adds a note."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    return tqdm(total=total, desc=label, file=stream, mininterval=0.2 if tty else 5.0,
                ascii=not tty, ncols=None if tty else 100, unit="", dynamic_ncols=tty)
