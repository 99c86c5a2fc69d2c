"""The machine's cores while a fleet ran, from two psutil.cpu_times() samples."""

from __future__ import annotations

from collections import namedtuple

import pytest

from vprov.sim.machine import CpuWatch, MachineCpu, busy_between

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def times(user: float, system: float, idle: float, iowait: float = 0.0,
          guest: float = 0.0) -> Times:
    return Times(user, 0.0, system, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


def test_busy_cores_are_the_share_of_time_not_idle_times_the_cores() -> None:
    # 10 s on 2 cores: 20 core-seconds, 15 of them running something
    cpu = busy_between(times(100, 50, 1000), times(110, 55, 1005), cores=2)
    assert cpu.busy_cores == pytest.approx(1.5)
    assert cpu.share == pytest.approx(0.75)
    assert not cpu.full
    assert cpu.describe() == "1.50 of 2 cores busy (75%)"


def test_waiting_for_a_disk_is_not_busy_and_guest_time_is_not_counted_twice() -> None:
    # guest time is part of user time: 10 core-seconds elapsed, 4 idle, 2 waiting on a disk
    cpu = busy_between(times(0, 0, 0), times(4, 0, 4, iowait=2, guest=3), cores=1)
    assert cpu.busy_cores == pytest.approx(0.4)


def test_full_cores_say_the_latencies_include_waiting_for_one() -> None:
    cpu = busy_between(times(0, 0, 0), times(17, 2, 1), cores=2)
    assert cpu.full
    assert cpu.describe() == ("1.90 of 2 cores busy (95%): the cores were full, so the "
                              "latencies include waiting for one")
    assert cpu.to_dict() == {"busy_cores": 1.9, "cores": 2, "full": True}


def test_no_time_elapsed_is_no_load() -> None:
    assert busy_between(times(1, 1, 1), times(1, 1, 1), cores=4) == MachineCpu(0.0, 4)


def test_the_watch_reads_this_machine() -> None:
    watch = CpuWatch()
    sum(i * i for i in range(300_000))  # something to count
    cpu = watch.stop()
    assert cpu.cores >= 1
    assert 0.0 <= cpu.busy_cores <= cpu.cores
