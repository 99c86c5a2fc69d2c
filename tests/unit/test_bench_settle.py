"""The benchmark's wait for a quiet machine after the large state's restore (bench/settle.py)."""

from __future__ import annotations

from bench.page import settle_line
from bench.settle import QUIET_SAMPLES, Sample, settled, writeback_mb

MEMINFO = """MemTotal:       24567892 kB
Dirty:            204800 kB
Writeback:         51200 kB
WritebackTmp:          0 kB
"""


def quiet(at: float) -> Sample:
    return Sample(at, 0.1, 0.02, 3.0)


def test_dirty_and_writeback_pages_count_and_nothing_else() -> None:
    assert writeback_mb(MEMINFO) == 250.0


def test_the_machine_settles_only_after_enough_quiet_seconds_in_a_row() -> None:
    busy = Sample(1, 1.4, 0.8, 10.0)
    writing = Sample(2, 0.1, 0.0, 300.0)
    quiet_run = [quiet(3 + n) for n in range(QUIET_SAMPLES)]
    assert not settled([busy, *quiet_run[:-1]])
    assert not settled([*quiet_run[:-1], writing])
    assert settled([busy, writing, *quiet_run])


def test_the_page_names_the_wait_and_what_kept_the_machine_busy() -> None:
    samples = [Sample(1, 1.62, 0.91, 480.0), *(quiet(2 + n) for n in range(QUIET_SAMPLES))]
    line = settle_line(samples)
    assert "settled after 6 s" in line
    assert "up to 1.62 cores busy (the broker 0.91 of them)" in line
    assert "up to 480 MB waiting to be written back" in line


def test_the_page_says_when_the_levels_began_unsettled() -> None:
    line = settle_line([Sample(180, 0.9, 0.5, 20.0)])
    assert "had not settled after 180 s; the levels began anyway" in line
