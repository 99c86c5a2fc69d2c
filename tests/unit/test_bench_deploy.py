"""The benchmark's deployment on the stack it is given: every broker's CPU counted, the stack's
replication applied."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.deploy import FIRST_TIER, ProcessSampler, jvm_options, write_config

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


def test_the_stack_s_replication_reaches_the_benchmark_s_topics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPROV_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("VPROV_MIN_INSYNC_REPLICAS", "2")
    config = write_config(tmp_path / "a.toml", "rtest", "127.0.0.1:19592",
                          "redis://127.0.0.1:19579/0", ("NA",))
    assert (config.replication_factor, config.min_insync_replicas) == (3, 2)
    tried = write_config(tmp_path / "b.toml", "rtest", "127.0.0.1:19592",
                         "redis://127.0.0.1:19579/0", ("NA",), kafka={"min_insync_replicas": 1})
    assert (tried.replication_factor, tried.min_insync_replicas) == (3, 1)  # --kafka wins
    monkeypatch.delenv("VPROV_REPLICATION_FACTOR")
    monkeypatch.delenv("VPROV_MIN_INSYNC_REPLICAS")
    single = write_config(tmp_path / "c.toml", "rtest", "127.0.0.1:19592",
                          "redis://127.0.0.1:19579/0", ("NA",))
    assert (single.replication_factor, single.min_insync_replicas) == (1, 1)


def test_the_page_names_the_broker_s_jit_and_collector_options_and_leaves_the_heap_out() -> None:
    local = ["java", "-Xms256m", "-Xmx768m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             "-cp", "libs/*", "kafka.Kafka", "server.properties"]
    assert jvm_options(local) == "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    assert FIRST_TIER in jvm_options(local)
    dedicated = ["java", "-Xmx1g", "-cp", "libs/*", "kafka.Kafka", "server.properties"]
    assert jvm_options(dedicated) == "the JVM's defaults"
