"""Where the workers spend their CPU: py-spy samples of the running worker processes.

py-spy attaches from outside, so the workers run unchanged and the profile covers every thread
(Faust's consumer runs in a thread of its own, which cProfile in the main thread would miss).
py-spy leaves idle threads out: shares are of the samples in which a thread was running or ready
to run (on a saturated machine, waiting for a core counts too).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
THREAD = re.compile(r"^thread \(\d+\): (?P<name>.*)$")

# Inclusive components: a sample counts for each component one of its frames belongs to, so the
# shares overlap (an agent step that writes a table counts for both).
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("decisions (vprov.flows, validation, envelope)",
     ("vprov/flows/", "vprov/flows/validation.py", "vprov/core/envelope.py")),
    ("Avro encode/decode", ("fastavro/", "vprov/kafka/avro.py")),
    ("JSON encode/decode", ("json/",)),
    ("table writes and reads (Faust tables, RocksDB store)", ("faust/tables/", "faust/stores/")),
    ("identity effects (Redis client)", ("redis/", "vprov/identity.py")),
    ("sending records (Faust + aiokafka producer)",
     ("aiokafka/producer/", "faust/transport/producer.py", "faust/topics.py")),
    ("fetching records (aiokafka consumer, Faust consumer thread)",
     ("aiokafka/consumer/", "faust/transport/consumer.py", "faust/transport/drivers/")),
    ("stream and agent machinery (Faust streams, agents, events)",
     ("faust/streams.py", "faust/agents/", "faust/events.py", "faust/channels.py")),
    ("logging", ("logging/",)),
    ("HTTP views (aiohttp)", ("aiohttp/",)),
]


# The project's own entry points, by function name.
FUNCTION_COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("one input end to end: step, table write, effects, sends (streams Shell.process)",
     ("Shell.process",)),
    ("rehome deadline scan, every second (streams expire_rehomes timer)", ("expire_rehomes",)),
]

# Self time only (the sampled frame itself): the event loop's own work and its system calls.
LEAF_COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("event loop (asyncio, selectors; self time)", ("asyncio/", "selectors.py")),
]


def find_py_spy(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [shutil.which("py-spy"),
                                              str(Path(sys.executable).parent / "py-spy")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def record(py_spy: str, pid: int, seconds: float, out: Path, rate: int
           ) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` in the background for ``seconds``; raw (collapsed) stacks."""
    args = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", str(rate), "--format", "raw", "--threads", "--output", str(out)]
    log = out.with_suffix(".log").open("wb")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def _package(file: str) -> str:
    head = file.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


@dataclass
class Profile:
    name: str
    seconds: float
    rate: int
    samples: int = 0
    waiting: int = 0  # samples inside the event loop's selector: waiting, or woken and queued
    threads: Counter[str] = field(default_factory=Counter)
    self_by_package: Counter[str] = field(default_factory=Counter)
    self_by_function: Counter[str] = field(default_factory=Counter)
    components: Counter[str] = field(default_factory=Counter)

    def share(self, count: int) -> float:
        return 100.0 * count / self.samples if self.samples else 0.0

    def working_share(self, count: int) -> float:
        """Share of the samples outside the selector wait, for components that exclude it."""
        working = self.samples - self.waiting
        return 100.0 * count / working if working > 0 else 0.0


def parse(path: Path, name: str, seconds: float, rate: int) -> Profile:
    profile = Profile(name=name, seconds=seconds, rate=rate)
    if not path.exists():
        return profile
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack_text.split(";")
        thread = "?"
        match = THREAD.match(parts[0])
        if match:
            thread = match.group("name")
            parts = parts[1:]
        frames = [m.groups() for m in map(FRAME.match, parts) if m]
        profile.samples += count
        profile.threads[thread] += count
        if not frames:
            continue
        func, file = frames[-1]
        if file == "selectors.py":
            profile.waiting += count
        profile.self_by_package[_package(file)] += count
        profile.self_by_function[f"{func} ({file})"] += count
        files = {file for _, file in frames}
        funcs = {func for func, _ in frames}
        for label, prefixes in COMPONENTS:
            if any(f.startswith(prefixes) for f in files):
                profile.components[label] += count
        for label, names in FUNCTION_COMPONENTS:
            # nested functions are named "outer.<locals>.inner"
            if any(f == n or f.endswith("." + n) for f in funcs for n in names):
                profile.components[label] += count
        for label, prefixes in LEAF_COMPONENTS:
            if file.startswith(prefixes):
                profile.components[label] += count
    return profile


def markdown(profile: Profile, top: int = 12) -> list[str]:
    lines = [f"#### {profile.name} worker: {profile.samples} busy samples in "
             f"{profile.seconds:.0f} s at {profile.rate} Hz", ""]
    if not profile.samples:
        return [*lines, "No samples (py-spy failed; see its log next to the raw output).", ""]
    lines += ["| thread | share of busy samples |", "|---|---:|"]
    lines += [f"| {t} | {profile.share(n):.1f}% |" for t, n in profile.threads.most_common(6)]
    lines += ["", f"In the event loop's selector (`select`: waiting, or woken and waiting for a "
              f"core): {profile.share(profile.waiting):.1f}% of the busy samples. Shares of the "
              "other samples:", "",
              "| component (inclusive; overlapping) | share of working samples |", "|---|---:|"]
    lines += [f"| {label} | {profile.working_share(profile.components[label]):.1f}% |"
              for label, _ in FUNCTION_COMPONENTS + COMPONENTS]
    leaf = profile.components[LEAF_COMPONENTS[0][0]] - profile.waiting
    lines.append(f"| asyncio event loop itself (self time, selector excluded) | "
                 f"{profile.working_share(leaf):.1f}% |")
    lines += ["", "| package (self time) | share |", "|---|---:|"]
    lines += [f"| {pkg} | {profile.share(n):.1f}% |"
              for pkg, n in profile.self_by_package.most_common(top)]
    lines += ["", "| function (self time) | share |", "|---|---:|"]
    lines += [f"| `{fn}` | {profile.share(n):.1f}% |"
              for fn, n in profile.self_by_function.most_common(top)]
    return [*lines, ""]
