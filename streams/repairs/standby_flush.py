"""Standby tables apply what they have read within a second (Faust defect 5,
docs/faust-defects.md).

After recovery, Faust's recovery service keeps tailing the changelogs of the standby partitions,
but buffers what it reads per table and applies a buffer only once it holds
``standby_buffer_size`` records (1000 by default). At a quiet hour a standby may then hold up to
999 records per table that it has read and not applied; a takeover replays them. A timer
applies the buffers every second, between two reads of the recovery loop (both run on the
event loop), so a standby is behind by at most a second's records.
"""

from __future__ import annotations

from typing import cast

import faust
from faust.tables.manager import TableManager

FLUSH_SECONDS = 1.0


def install(app: faust.App) -> None:
    @app.timer(interval=FLUSH_SECONDS)
    async def apply_standby_buffers() -> None:
        recovery = cast(TableManager, app.tables).recovery  # not in the interface
        # during a recovery Faust flushes itself, and its buffers may hold active partitions
        if recovery.in_recovery or app.rebalancing:
            return
        if any(recovery.buffers.values()):
            recovery.flush_buffers()
