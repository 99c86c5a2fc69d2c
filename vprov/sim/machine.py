"""How busy the machine's cores were while a fleet ran: a latency read on a machine whose cores
were all busy is mostly time spent waiting for one, whatever the pipeline's own cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psutil

FULL_SHARE = 0.9  # at or above this share of every core busy, answers wait for a core


@dataclass(frozen=True)
class MachineCpu:
    busy_cores: float  # cores' worth of time spent running anything, on average
    cores: int

    @property
    def share(self) -> float:
        return self.busy_cores / self.cores if self.cores else 0.0

    @property
    def full(self) -> bool:
        return self.share >= FULL_SHARE

    def describe(self) -> str:
        text = f"{self.busy_cores:.2f} of {self.cores} cores busy ({self.share:.0%})"
        if self.full:
            text += ": the cores were full, so the latencies include waiting for one"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"busy_cores": round(self.busy_cores, 3), "cores": self.cores,
                "full": self.full}


def busy_between(before: Any, after: Any, cores: int) -> MachineCpu:
    """The cores' load between two ``psutil.cpu_times()`` samples: every second not idle (nor
    waiting for a disk) counts as busy, whichever process had it."""
    def idle(sample: Any) -> float:
        return float(sample.idle + getattr(sample, "iowait", 0.0))

    def total(sample: Any) -> float:
        # guest time is already counted in user time on Linux
        return float(sum(sample)) - getattr(sample, "guest", 0.0) - getattr(
            sample, "guest_nice", 0.0)

    elapsed = total(after) - total(before)
    if elapsed <= 0 or cores <= 0:
        return MachineCpu(0.0, cores)
    busy = elapsed - (idle(after) - idle(before))
    return MachineCpu(cores * busy / elapsed, cores)


class CpuWatch:
    """``busy_between`` from the moment it is made to ``stop()``."""

    def __init__(self) -> None:
        self.cores = psutil.cpu_count() or 1
        self._before = psutil.cpu_times()

    def stop(self) -> MachineCpu:
        return busy_between(self._before, psutil.cpu_times(), self.cores)
