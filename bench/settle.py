"""Waiting for the machine to settle after the large state was written and restored.

The large-state levels follow a bulk write of a million vehicles' records into the changelogs
and the workers' bulk restore of them. For a minute or more after, the broker and the kernel are
still working for the load itself: the broker's log segments and the restored stores sit in the
page cache as dirty pages that the kernel writes back, and the broker rolls and indexes the
segments the load filled. None of that is the processor's cost at a million vehicles, and all of
it competes for the two cores the answers need. So the benchmark waits until the machine is
quiet before the levels, reports how long that took, and keeps what it sampled meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
SAMPLE_SECONDS = 1.0
QUIET_SAMPLES = 5  # in a row
QUIET_CORES = 0.3  # the whole machine busy for less than this many cores
QUIET_WRITEBACK_MB = 64.0  # dirty pages and pages being written back


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the wait began
    busy_cores: float  # the whole machine, over the last interval
    broker_cores: float
    writeback_mb: float  # Dirty + Writeback


def writeback_mb(meminfo: str) -> float:
    """Dirty and Writeback of ``/proc/meminfo``'s text, in MB."""
    kb = 0
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Dirty", "Writeback"):
            kb += int(rest.split()[0])
    return kb / 1024


def is_quiet(sample: Sample) -> bool:
    return sample.busy_cores < QUIET_CORES and sample.writeback_mb < QUIET_WRITEBACK_MB


def settled(samples: list[Sample]) -> bool:
    """The last ``QUIET_SAMPLES`` samples were all quiet."""
    recent = samples[-QUIET_SAMPLES:]
    return len(recent) == QUIET_SAMPLES and all(is_quiet(s) for s in recent)


def wait_settled(machine_busy: Callable[[], float], broker_busy: Callable[[], float],
                 timeout: float, tick: Callable[[], object] = lambda: None) -> list[Sample]:
    """Sample every second until the machine has been quiet for ``QUIET_SAMPLES`` seconds, or
    ``timeout``; the samples (the last one tells whether it settled). ``machine_busy`` and
    ``broker_busy`` are cumulative CPU seconds."""
    began = time.monotonic()
    last = (began, machine_busy(), broker_busy())
    samples: list[Sample] = []
    while not settled(samples) and time.monotonic() - began < timeout:
        time.sleep(SAMPLE_SECONDS)
        tick()
        now = (time.monotonic(), machine_busy(), broker_busy())
        wall = now[0] - last[0]
        samples.append(Sample(round(now[0] - began, 1), round((now[1] - last[1]) / wall, 2),
                              round((now[2] - last[2]) / wall, 2),
                              round(writeback_mb(MEMINFO.read_text()), 1)))
        last = now
    return samples
