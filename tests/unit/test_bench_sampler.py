"""The benchmark counts the CPU of every broker of a cluster, not only the first one's."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from bench.deploy import ProcessSampler

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n" \
       "time.sleep(30)"


def test_the_cpu_of_several_processes_is_summed_and_a_missing_one_is_left_out() -> None:
    children = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        procs = [psutil.Process(c.pid) for c in children]
        while any(sum(p.cpu_times()[:2]) < 0.3 for p in procs):
            time.sleep(0.05)
        each = [sum(p.cpu_times()[:2]) for p in procs]
        both = ProcessSampler(children[0].pid, None, children[1].pid).cpu_seconds()
        one = ProcessSampler(children[0].pid).cpu_seconds()
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert both >= sum(each) - 0.01
    assert one < both
    assert ProcessSampler(None).cpu_seconds() == 0.0
