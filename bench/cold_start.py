"""Cold start: the first ``make demo`` of a fresh checkout, timed as a newcomer meets it.

Each run is ``scripts/demo.sh`` on a run directory of its own that does not exist yet: a broker
formatted from nothing, no topics, no consumer offsets, workers on empty disks. While it runs,
every process of the deployment (broker, global worker, regional workers, simulator) is sampled
twice a second; the demo's own summary gives the query latencies, with the queries
of the first seconds apart. Variants compare the brokers' JVM options (``KAFKA_JVM_OPTS``).

    .venv/bin/python -m bench.cold_start --runs 2 --variant local --variant jvm-defaults=

``--variant NAME=OPTS``: ``OPTS`` is given to the stack as ``KAFKA_JVM_OPTS`` (``NAME=``: none,
the JVM's own defaults); ``NAME`` alone keeps the stack's default. Writes
``bench/out/cold-RUN_ID/results.json`` and a plot of CPU over time (``--plot``, default
``docs/img/cold-start.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.deploy import REPO

SAMPLE_SECONDS = 0.5
ROLES = ("broker", "global", "regional", "simulator")
LATENCY_ROW = re.compile(r"^\s+(query -> answer|first \d+ s|after \d+ s|device -> answer)\s+"
                         r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$")
MACHINE_ROW = re.compile(r"^\s+machine CPU meanwhile\s+([\d.]+) of \d+ cores busy")


def role_of(cmdline: str, run_dir: str) -> str | None:
    """Which part of the demo a process is, from its command line; None: not the demo's."""
    if "kafka.Kafka" in cmdline and run_dir in cmdline:
        return "broker"
    if " worker " in f"{cmdline} " and "--role global" in cmdline:
        return "global"
    if " worker " in f"{cmdline} " and "--role regional" in cmdline:
        return "regional"
    if " simulate " in f"{cmdline} ":
        return "simulator"
    return None


@dataclass
class Run:
    variant: str
    jvm_opts: str | None
    seconds: float = 0.0
    exit_code: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # seconds since the demo started -> CPU share of one core, by role
    timeline: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    machine_busy_cores: float | None = None  # the summary's: every process, while vehicles ran


class Sampler(threading.Thread):
    """CPU of the demo's processes by role, until stopped."""

    def __init__(self, run_dir: str, began: float) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.began = run_dir, began
        self.stopped = threading.Event()
        self.timeline: list[tuple[float, dict[str, float]]] = []
        self.totals: dict[str, float] = dict.fromkeys(ROLES, 0.0)
        self._last: dict[int, tuple[str, float]] = {}

    def _cpu(self) -> dict[int, tuple[str, float]]:
        """Each of the demo's processes: its role and its CPU seconds so far."""
        seen = {}
        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            role = role_of(" ".join(proc.info["cmdline"] or ()), self.run_dir)
            times = proc.info["cpu_times"]
            if role is not None and times is not None:  # None: gone meanwhile
                seen[proc.pid] = (role, times.user + times.system)
        return seen

    def run(self) -> None:
        last_at = time.monotonic()
        while not self.stopped.wait(SAMPLE_SECONDS):
            now, seen = time.monotonic(), self._cpu()
            shares = dict.fromkeys(ROLES, 0.0)
            for pid, (role, seconds) in seen.items():
                used = seconds - self._last.get(pid, (role, seconds))[1]
                shares[role] += used / (now - last_at)
                self.totals[role] += used
            self._last, last_at = seen, now
            self.timeline.append((round(now - self.began, 2),
                                  {k: round(v, 3) for k, v in shares.items()}))


def demo(variant: str, jvm_opts: str | None, vehicles: int, rate: float) -> Run:
    run = Run(variant, jvm_opts)
    with tempfile.TemporaryDirectory(prefix="vprov-cold-") as tmp:
        run_dir = str(Path(tmp) / "run")  # does not exist: everything starts from nothing
        env = {**os.environ, "VPROV_RUN_DIR": run_dir, "VEHICLES": str(vehicles),
               "RATE": f"{rate:g}"}
        if jvm_opts is not None:
            env["KAFKA_JVM_OPTS"] = jvm_opts
        began = time.monotonic()
        sampler = Sampler(run_dir, began)
        sampler.start()
        done = subprocess.run(["scripts/demo.sh"], cwd=REPO, env=env, capture_output=True,
                              text=True, check=False)
        sampler.stopped.set()
        sampler.join()
        run.seconds, run.exit_code = round(time.monotonic() - began, 1), done.returncode
        run.timeline, run.cpu_seconds = sampler.timeline, {
            k: round(v, 2) for k, v in sampler.totals.items()}
        for line in done.stdout.splitlines():
            match = LATENCY_ROW.match(line)
            if match:
                run.latency_ms[match[1]] = dict(zip(("p50", "p95", "p99", "max"),
                                                    map(float, match.groups()[1:5]),
                                                    strict=True))
            machine = MACHINE_ROW.match(line)
            if machine:
                run.machine_busy_cores = float(machine[1])
        if done.returncode != 0 or "query -> answer" not in run.latency_ms:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
    return run


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, role in zip(axes, ("broker", "workers"), strict=True):
        for run in runs:
            xs = [t for t, _ in run.timeline]
            ys = [s["broker"] if role == "broker" else s["global"] + s["regional"]
                  for _, s in run.timeline]
            p99 = run.latency_ms.get("query -> answer", {}).get("p99", float("nan"))
            ax.plot(xs, ys, label=f"{run.variant} (query p99 {p99:.0f} ms)", lw=1)
        ax.set_title(f"{role} CPU during a first `make demo`")
        ax.set_xlabel("seconds since the demo started")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cores")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2, help="runs of each variant, interleaved")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OPTS",
                   help="brokers' JVM options to try (KAFKA_JVM_OPTS); NAME alone: the stack's")
    p.add_argument("--vehicles", type=int, default=1000)
    p.add_argument("--rate", type=float, default=80.0)
    p.add_argument("--out", default=str(REPO / "bench" / "out"))
    p.add_argument("--plot", default=str(REPO / "docs" / "img" / "cold-start.png"))
    args = p.parse_args(argv)
    variants: list[tuple[str, str | None]] = []
    for spec in args.variant or ["default"]:
        name, given, opts = spec.partition("=")
        variants.append((name, opts if given else None))
    if shutil.which("java") is None:
        print("java not found: the demo's broker needs it (make prereqs)", file=sys.stderr)
        return 2
    run_id = time.strftime("%m%d%H%M%S")
    runs: list[Run] = []
    for i in range(args.runs):
        for name, opts in variants:
            print(f"[cold-start] run {i + 1}/{args.runs} of {name}: a demo from nothing ...",
                  file=sys.stderr, flush=True)
            run = demo(name, opts, args.vehicles, args.rate)
            runs.append(run)
            q = run.latency_ms.get("query -> answer", {})
            first = next((v for k, v in run.latency_ms.items() if k.startswith("first")), {})
            print(f"[cold-start]   exit {run.exit_code}, query p50 {q.get('p50')} ms, "
                  f"p99 {q.get('p99')} ms (first seconds: p99 {first.get('p99')} ms); "
                  f"machine {run.machine_busy_cores} cores busy while the fleet ran; CPU s "
                  f"{run.cpu_seconds}", file=sys.stderr, flush=True)
    out = Path(args.out) / f"cold-{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
    plot(runs, Path(args.plot))
    print(f"raw figures: {out / 'results.json'}\nplot: {args.plot}")
    return 0 if all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
