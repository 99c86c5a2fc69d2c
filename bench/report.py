"""What a benchmark run found, and how it is shown: the console summary, ``docs/benchmarks.md``
and the plots in ``docs/img/``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client_floor import CLIENTS, FloorResult
from deploy import Machine
from loadgen import PhaseResult, summary_ms
from profiles import Profile
from profiles import markdown as profile_markdown
from relay import BaselineResult
from restore import RestoreReport
from standby_cost import StandbyRun

MB = 1_000_000
COMPONENTS = ("global", "regional", "broker", "redis", "client")
WORKERS = ("global", "regional")


@dataclass
class Usage:
    """CPU seconds per component over ``wall`` seconds; ``machine`` is every process's."""

    wall: float
    cpu: dict[str, float]
    machine: float
    system: dict[str, float] = field(default_factory=dict)  # kernel share of ``cpu``

    def percent(self, name: str) -> float:
        return 100.0 * self.cpu.get(name, 0.0) / self.wall if self.wall > 0 else 0.0

    @property
    def other_percent(self) -> float:
        """Busy time of processes that are not part of the benchmark (other test runs)."""
        known = sum(self.cpu.values())
        return max(0.0, 100.0 * (self.machine - known) / self.wall) if self.wall > 0 else 0.0

    @property
    def machine_percent(self) -> float:
        return 100.0 * self.machine / self.wall if self.wall > 0 else 0.0


@dataclass
class Outcome:
    """One measured phase with everything observed around it."""

    result: PhaseResult
    usage: Usage
    records: dict[str, int]  # records appended per topic during the phase
    consumed: int  # records the workers consumed (their input topics)
    produced: int  # records the workers wrote (all topics but the client's inputs)
    rss_peak: dict[str, int]
    sustained: bool = False
    verdict: str = ""
    # the workers' ``forwarded`` counters (/health) after minus before; None: no answer
    forwarded: dict[str, int | None] = field(default_factory=dict)

    @property
    def consumed_rate(self) -> float:
        """Worker-consumed records per second over the sending window and the drain."""
        return self.consumed / (self.result.window + self.result.drain_seconds)

    def per_vehicle(self, count: int) -> float:
        return count / self.result.vehicles if self.result.vehicles else 0.0

    def cpu_ms_per_vehicle(self, name: str) -> float:
        """CPU milliseconds of ``name`` per completed vehicle, over the whole phase."""
        return 1000 * self.usage.cpu.get(name, 0.0) / max(self.result.completed, 1)


@dataclass
class IngressPhase:
    """A paced phase with a share of misrouted device-facing records."""

    share: float
    outcome: Outcome
    rerouted_topics: list[str]

    @property
    def forwarded(self) -> dict[str, int | None]:
        return self.outcome.forwarded

    @property
    def forwarded_total(self) -> int:
        """Records the ingress forwarded: the /health counters, or, when a worker did not
        answer, the records appended to the rerouted topics (one per forward)."""
        if self.forwarded and all(v is not None for v in self.forwarded.values()):
            return sum(v or 0 for v in self.forwarded.values())
        return self.rerouted_records

    @property
    def rerouted_records(self) -> int:
        return sum(self.outcome.records.get(t, 0) for t in self.rerouted_topics)

    @property
    def forwarded_per_vehicle(self) -> float:
        return self.forwarded_total / max(self.outcome.result.completed, 1)

    @property
    def worker_cpu_ms_per_vehicle(self) -> float:
        return sum(self.outcome.cpu_ms_per_vehicle(w) for w in WORKERS)


@dataclass
class StateLoad:
    outcome: Outcome
    rss_after: dict[str, int]
    trend: list[tuple[int, dict[str, int]]]  # (vehicles in state, RSS per worker)

    def extrapolate(self, worker: str, vehicles: int) -> float | None:
        """RSS at ``vehicles`` from a least-squares line through the second half of the trend
        (the first half includes start-up growth that does not repeat)."""
        points = [(n, rss[worker]) for n, rss in self.trend if worker in rss]
        if not points or points[-1][0] < vehicles / 10:
            return None  # a line through a small start says little about the far end
        points = points[len(points) // 2:]
        if len(points) < 3:
            return None
        xs = [float(n) for n, _ in points]
        ys = [float(r) for _, r in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return None
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        return my + slope * (vehicles - mx)


@dataclass
class Targets:
    rate: float = 400.0
    p99_ms: float = 150.0
    rss_mb: float = 500.0
    state_vehicles: int = 100_000
    ratio: float = 0.035  # pipeline records/s over relay records/s, at the reference level
    cpu_us_per_record: float = 400.0  # both workers' CPU per worker-consumed record


@dataclass
class Verdict:
    name: str
    met: bool | None  # None: not measured
    detail: str

    @property
    def mark(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


@dataclass
class RunReport:
    run_id: str
    started: str
    command: str
    make_command: str
    machine: Machine
    deployment: list[tuple[str, str]]
    settings: dict[str, Any]
    targets: Targets
    registration_seconds: float = 0.0
    registered_vehicles: int = 0
    state: StateLoad | None = None
    levels: list[Outcome] = field(default_factory=list)
    skipped_levels: list[float] = field(default_factory=list)
    baseline: BaselineResult | None = None
    baseline_reference: str = ""
    floor: list[FloorResult] = field(default_factory=list)  # a bare relay per client and rate
    profile_phase: Outcome | None = None
    profiles: list[Profile] = field(default_factory=list)
    thread_cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # % of a core
    profile_note: str = ""
    ingress: list[IngressPhase] = field(default_factory=list)
    ingress_rate: float | None = None
    ingress_note: str = ""
    scale_out: list[Outcome] = field(default_factory=list)  # the levels, two workers per role
    scale_out_seconds: float = 0.0  # second workers started -> ready and idle
    restore: RestoreReport | None = None  # empty-disk starts on a synthetic state
    standby_cost: list[StandbyRun] = field(default_factory=list)  # with and without standbys
    rss_peak: dict[str, int] = field(default_factory=dict)
    client_cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    # --- derived figures -------------------------------------------------------------------

    @property
    def sustained_rate(self) -> float | None:
        rates = [o.result.rate or 0.0 for o in self.levels if o.sustained]
        return max(rates) if rates else None

    def reference_level(self) -> Outcome | None:
        """The level the baseline is compared with: the sustained level that moved the most
        records per second, or the busiest level when none was sustained."""
        pool = [o for o in self.levels if o.sustained] or self.levels
        return max(pool, key=lambda o: o.consumed_rate, default=None)

    @property
    def ratio(self) -> float | None:
        ref = self.reference_level()
        if ref is None or self.baseline is None or self.baseline.rate <= 0:
            return None
        return ref.consumed_rate / self.baseline.rate

    def highest_sustained_level(self) -> Outcome | None:
        return max((o for o in self.levels if o.sustained),
                   key=lambda o: o.result.rate or 0.0, default=None)

    @property
    def vehicles_per_krecords(self) -> float | None:
        """Sustained vehicles/s per 1,000 relay records/s: the highest sustained level's
        achieved rate against what the broker relays on the same machine."""
        best = self.highest_sustained_level()
        if best is None or self.baseline is None or self.baseline.rate <= 0:
            return None
        return 1000 * best.result.achieved_rate / self.baseline.rate

    @property
    def cpu_us_per_record(self) -> float | None:
        """Both workers' CPU per record they consumed, at the reference level (µs)."""
        ref = self.reference_level()
        if ref is None or not ref.consumed:
            return None
        worker_cpu = ref.usage.cpu.get("global", 0) + ref.usage.cpu.get("regional", 0)
        return 1e6 * worker_cpu / ref.consumed

    def ingress_cost(self) -> tuple[IngressPhase, IngressPhase, float, dict[str, float]] | None:
        """(lowest-share phase, highest-share phase, extra worker CPU ms per forwarded record,
        the same per worker): the difference in worker CPU per vehicle between the two phases
        over the difference in forwarded records per vehicle. None without two phases that
        forwarded different amounts."""
        if len(self.ingress) < 2:
            return None
        low = min(self.ingress, key=lambda p: p.share)
        high = max(self.ingress, key=lambda p: p.share)
        extra_forwards = high.forwarded_per_vehicle - low.forwarded_per_vehicle
        if extra_forwards <= 0:
            return None
        per_worker = {w: (high.outcome.cpu_ms_per_vehicle(w) - low.outcome.cpu_ms_per_vehicle(w))
                      / extra_forwards for w in WORKERS}
        return low, high, sum(per_worker.values()), per_worker

    @property
    def closed_loop_ratio(self) -> float | None:
        if self.state is None or self.baseline is None or self.baseline.rate <= 0:
            return None
        out = self.state.outcome
        span = out.result.ended_at - out.result.started_at
        return (out.consumed / span) / self.baseline.rate if span > 0 else None

    def half_rate_level(self) -> Outcome | None:
        half = self.targets.rate / 2
        exact = [o for o in self.levels if o.result.rate == half]
        if exact:
            return exact[0]
        below = [o for o in self.levels if (o.result.rate or 0) <= half]
        return max(below, key=lambda o: o.result.rate or 0.0, default=None)

    def verdicts(self) -> list[Verdict]:
        t = self.targets
        out = []
        best = self.sustained_rate
        tried = max((o.result.rate or 0.0 for o in self.levels), default=0.0)
        if best is not None and best >= t.rate:
            out.append(Verdict(f">= {t.rate:g} vehicles/s sustained", True,
                               f"highest sustained level {best:g} vehicles/s"))
        elif tried < t.rate and best == tried:
            out.append(Verdict(f">= {t.rate:g} vehicles/s sustained", None,
                               f"every level was sustained but none reached {t.rate:g}/s; "
                               "add higher --levels"))
        else:
            out.append(Verdict(f">= {t.rate:g} vehicles/s sustained", False,
                               f"highest sustained level {best:g} vehicles/s" if best
                               else "no level was sustained"))
        half = self.half_rate_level()
        if half is None:
            out.append(Verdict(f"p99 query -> answer <= {t.p99_ms:g} ms at {t.rate / 2:g}/s",
                               None, "no level at or below half the target rate"))
        else:
            p99 = summary_ms(half.result.query_latency)["p99"]
            where = f"{half.result.rate:g} vehicles/s"
            if half.result.rate != t.rate / 2:
                where += f" (nearest level below {t.rate / 2:g})"
            met: bool | None = (not math.isnan(p99)) and p99 <= t.p99_ms and half.sustained
            if met and half.result.rate != t.rate / 2:
                met = None  # a lower level within the target says nothing of the target rate
            out.append(Verdict(f"p99 query -> answer <= {t.p99_ms:g} ms at {t.rate / 2:g}/s",
                               met, f"p99 {p99:.0f} ms at {where}"
                               + ("" if half.sustained else ", level not sustained")))
        ratio, per_record = self.ratio, self.cpu_us_per_record
        out.append(Verdict(f"pipeline/relay ratio >= {t.ratio:g}",
                           None if ratio is None else ratio >= t.ratio,
                           "no baseline" if ratio is None else f"ratio {ratio:.3f}"))
        out.append(Verdict(f"worker CPU per consumed record <= {t.cpu_us_per_record:g} µs",
                           None if per_record is None else per_record <= t.cpu_us_per_record,
                           "no level" if per_record is None
                           else f"{per_record:.0f} µs at the reference level"))
        peak = max(self.rss_peak.values(), default=0) / MB
        loaded = self.state.outcome.result.completed if self.state else 0
        name = f"peak RSS per worker <= {t.rss_mb:g} MB with {t.state_vehicles:,} vehicles"
        worst = max(self.rss_peak, key=lambda k: self.rss_peak[k], default="-")
        if loaded >= t.state_vehicles:
            out.append(Verdict(name, peak <= t.rss_mb,
                               f"peak {peak:.0f} MB ({worst}) with {loaded:,} vehicles loaded"))
        else:
            guesses = []
            for worker in self.rss_peak if self.state is not None else ():
                value = self.state.extrapolate(worker, t.state_vehicles)  # type: ignore[union-attr]
                if value is not None:
                    guesses.append(f"{worker} ~{value / MB:.0f} MB")
            guess = (f"; a straight line through the RSS trend gives {', '.join(guesses)} at "
                     f"{t.state_vehicles:,} (extrapolated, not measured)") if guesses else ""
            out.append(Verdict(name, None, f"only {loaded:,} vehicles loaded (--state-vehicles);"
                               f" peak {peak:.0f} MB ({worst}){guess}"))
        return out


# --- formatting helpers -------------------------------------------------------------------------

def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _mb(value: int | float) -> str:
    return f"{value / MB:,.0f}"


def _pct(value: float) -> str:
    return f"{value:.0f}%"


def level_rows(report: RunReport) -> list[list[str]]:
    rows = []
    for o in report.levels:
        r = o.result
        q = summary_ms(r.query_latency)
        v = summary_ms(r.vehicle_latency)
        rows.append([
            f"{r.rate:g}", f"{r.vehicles:,}", f"{r.completed:,}", f"{r.failed + r.unanswered:,}",
            f"{r.achieved_rate:.1f}", f"{r.drain_seconds:.1f}",
            "yes" if o.sustained else f"no ({o.verdict})",
            _ms(q["p50"]), _ms(q["p95"]), _ms(q["p99"]),
            _ms(v["p50"]), _ms(v["p95"]), _ms(v["p99"]),
            f"{o.per_vehicle(o.consumed):.1f}", f"{o.consumed_rate:,.0f}",
            _pct(o.usage.percent("global")), _pct(o.usage.percent("regional")),
            _pct(o.usage.percent("broker")), _pct(o.usage.percent("redis")),
            _pct(o.usage.percent("client")), _pct(o.usage.other_percent),
        ])
    return rows


LEVEL_HEADER = [
    "offered v/s", "vehicles", "completed", "failed", "achieved v/s", "drain s", "sustained",
    "query p50 ms", "query p95 ms", "query p99 ms", "vehicle p50 ms", "vehicle p95 ms",
    "vehicle p99 ms", "worker-consumed records/vehicle", "worker-consumed records/s",
    "CPU global", "CPU NA", "CPU broker", "CPU Redis", "CPU client", "CPU other",
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def console(report: RunReport) -> str:
    out = ["", f"pipeline benchmark {report.run_id}: global + {report.settings['region']} "
           "workers", ""]
    short = ["offered", "done", "failed", "achieved", "drain s", "sustained", "q p50", "q p95",
             "q p99", "veh p99", "rec/veh", "CPU g/NA/broker/client/other"]
    out.append("  ".join(f"{h:>9}" for h in short))
    for o, row in zip(report.levels, level_rows(report), strict=True):
        cpu = "/".join(row[i].rstrip("%") for i in (15, 16, 17, 19, 20))
        sustained = "yes" if o.sustained else "no"
        cells = [row[0], row[2], row[3], row[4], row[5], sustained, row[7], row[8], row[9],
                 row[12], row[13], cpu]
        out.append("  ".join(f"{c:>9}" for c in cells))
    for rate in report.skipped_levels:
        out.append(f"{rate:>9g}  skipped (lower levels not sustained)")
    if report.state is not None:
        s = report.state
        r = s.outcome.result
        out += ["", f"state load: {r.completed:,}/{r.vehicles:,} vehicles in "
                f"{r.ended_at - r.started_at:.0f} s ({r.achieved_rate:.1f} vehicles/s closed "
                "loop); RSS after: " + ", ".join(f"{k} {_mb(v)} MB"
                                                  for k, v in s.rss_after.items())]
    out += ingress_console(report)
    if report.scale_out:
        out += ["", "scale-out (one worker per role | two):", *(
            f"  {row[0]}/s: {row[1]} v/s, p99 {row[3]} ms | {row[6]} v/s, p99 {row[8]} ms"
            for row in scale_out_rows(report))]
    if report.restore is not None:
        out += ["", "empty-disk restore (global worker):", *(
            f"  {r.mode}: {r.vehicles:,} vehicles ({r.records:,} records), ready after "
            f"{r.ready_seconds:g} s, {r.records_per_second:,} records/s"
            for r in report.restore.runs)]
    if report.standby_cost:
        out += ["", "standby tables, two workers per role:", *(
            f"  {r.standbys} standby: {r.cpu_ms_per_vehicle} ms worker CPU and "
            f"{r.changelog_records_per_vehicle} changelog records applied per vehicle"
            for r in report.standby_cost)]
    if report.floor:
        out += ["", f"client floor, µs of CPU per relayed record ({', '.join(CLIENTS)}):", *(
                    f"  {row[0]} records/s: " + " | ".join(row[1:-1])
                    for row in floor_rows(report))]
    out.append("")
    out.append("peak RSS: " + ", ".join(f"{k} {_mb(v)} MB" for k, v in report.rss_peak.items()))
    if report.baseline is not None:
        b = report.baseline
        out.append(f"baseline relay: {b.records:,} records of ~{b.mean_bytes:.0f} B in "
                   f"{b.seconds:.2f} s = {b.rate:,.0f} records/s "
                   f"({b.cpu_seconds:.1f} CPU s)")
        if report.ratio is not None:
            out.append(f"pipeline / baseline = {report.ratio:.3f} "
                       f"({report.baseline_reference})")
        out.append(vehicles_per_krecords_line(report))
        if report.closed_loop_ratio is not None:
            out.append(f"pipeline / baseline, closed-loop state load = "
                       f"{report.closed_loop_ratio:.3f}")
    out.append(f"benchmark client CPU: {report.client_cpu_seconds:.1f} s over "
               f"{report.wall_seconds:.0f} s")
    out.append("")
    for v in report.verdicts():
        out.append(f"target {v.name}: {v.mark} - {v.detail}")
    return "\n".join(out)


def vehicles_per_krecords_line(report: RunReport) -> str:
    value = report.vehicles_per_krecords
    best = report.highest_sustained_level()
    if value is None or best is None or report.baseline is None:
        return ("sustained vehicles/s per 1,000 relay records/s: not available (no level "
                "sustained)" if report.baseline is not None else
                "sustained vehicles/s per 1,000 relay records/s: not available (no baseline)")
    return (f"sustained vehicles/s per 1,000 relay records/s = {value:.2f} (the "
            f"{best.result.rate:g} vehicles/s level achieved {best.result.achieved_rate:.1f} "
            f"vehicles/s; the relay moved {report.baseline.rate:,.0f} records/s)")


def scale_out_rows(report: RunReport) -> list[list[str]]:
    """Each level with one worker per role beside the same level with two."""
    two = {o.result.rate: o for o in report.scale_out}
    rows = []
    for one in report.levels:
        other = two.get(one.result.rate)
        if other is None:
            continue
        row = [f"{one.result.rate:g}"]
        for o in (one, other):
            q = summary_ms(o.result.query_latency)
            cpu = o.cpu_ms_per_vehicle("global") + o.cpu_ms_per_vehicle("regional")
            row += [f"{o.result.achieved_rate:.1f}", "yes" if o.sustained else "no",
                    _ms(q["p99"]), f"{cpu:.1f}", _pct(o.usage.machine_percent)]
        rows.append(row)
    return rows


SCALE_OUT_HEADER = [
    "offered v/s", "1 per role: achieved v/s", "sustained", "query p99 ms",
    "worker CPU ms/vehicle", "machine CPU", "2 per role: achieved v/s", "sustained",
    "query p99 ms", "worker CPU ms/vehicle", "machine CPU",
]


def scale_out_markdown(report: RunReport) -> list[str]:
    if not report.scale_out:
        return []
    lines = ["", "## Scale-out: two workers per role", "",
             f"After the other phases a second global and a second regional worker joined the "
             f"two consumer groups (ready, state restored and idle after "
             f"{report.scale_out_seconds:.0f} s); then the same levels ran again. Worker CPU is "
             "the sum of both workers of a role.", ""]
    lines += _table(SCALE_OUT_HEADER, scale_out_rows(report))
    best_one = max((o.result.achieved_rate for o in report.levels if o.sustained), default=0.0)
    best_two = max((o.result.achieved_rate for o in report.scale_out if o.sustained),
                   default=0.0)
    lines += ["", f"Highest sustained level: {best_one:.1f} vehicles/s with one worker per "
              f"role, {best_two:.1f} with two."]
    return lines


def floor_rows(report: RunReport) -> list[list[str]]:
    by_rate: dict[float, dict[str, FloorResult]] = {}
    for r in report.floor:
        by_rate.setdefault(r.rate, {})[r.client] = r
    return [[f"{rate:,.0f}", *(f"{row[c].us_per_record:,.0f}" if c in row else "—"
                               for c in CLIENTS),
             ", ".join(f"{c} {row[c].relayed:,}/{row[c].sent:,}" for c in CLIENTS if c in row)]
            for rate, row in sorted(by_rate.items())]


def restore_markdown(report: RunReport) -> list[str]:
    if report.restore is None or not report.restore.runs:
        return []
    lines = ["", "## Restore: a global worker on an empty disk", "",
             "A synthetic state written straight into a deployment's changelogs (two "
             "registrations, a system and a REGIONAL vehicle with its remembered answer: four "
             f"records a vehicle, written at {report.restore.write_records_per_second:,} "
             "records/s; `bench/restore.py`), then a global worker started with an empty data "
             "directory: once with the bulk restore (`streams/repairs/bulk_restore.py`), once with "
             "Faust's own recovery on a smaller state. Ready: from process start until the "
             "worker reports ready (tables recovered, partitions assigned); records/s: the "
             "state's records over that time, start-up included.", ""]
    lines += _table(["restore", "vehicles", "changelog records", "ready after s",
                     "records/s", "bulk load s", "worker CPU s"],
                    [[r.mode, f"{r.vehicles:,}", f"{r.records:,}", f"{r.ready_seconds:g}",
                      f"{r.records_per_second:,}",
                      f"{r.bulk_seconds:g}" if r.bulk_seconds is not None else "—",
                      f"{r.cpu_seconds:g}"] for r in report.restore.runs])
    return lines


def standby_markdown(report: RunReport) -> list[str]:
    if not report.standby_cost:
        return []
    first = report.standby_cost[0]
    lines = ["", "## Standby tables: what they cost", "",
             f"Two workers per role, {first.vehicles:,} vehicles at a paced rate through both "
             "flows, once with one standby per table partition (`kafka.table_standby_replicas "
             "= 1`, the default) and once with none (`bench/standby_cost.py`, a deployment of "
             "its own each). Worker CPU: the four workers' user and system time while the fleet "
             "ran; changelog records: what Faust's recovery applied meanwhile (a standby reads "
             "every write of the partitions it keeps warm).", ""]
    lines += _table(["standbys", "vehicles completed", "worker CPU ms/vehicle",
                     "changelog records applied/vehicle"],
                    [[str(r.standbys), f"{r.completed:,}", f"{r.cpu_ms_per_vehicle:g}",
                      f"{r.changelog_records_per_vehicle:g}"] for r in report.standby_cost])
    return lines


def floor_markdown(report: RunReport) -> list[str]:
    if not report.floor:
        return []
    lines = ["", "## Client floor: a bare relay on each Kafka client", "",
             "A relay that forwards each record and does nothing else, one process per client, "
             "fed at a fixed rate by a paced producer (fresh topics, the workers' partition "
             "count and 5 ms linger; `bench/client_floor.py`). CPU of the relay process, all "
             "threads, per relayed record. `faust` is a Faust agent on the workers' stack "
             "(aiokafka, uvloop): no worker's cost per consumed record can be lower at its "
             "rate.", ""]
    lines += _table(["records/s", *(f"{c}: µs per record" for c in CLIENTS),
                     "relayed / sent"], floor_rows(report))
    target = report.targets.cpu_us_per_record
    lines += ["", f"Target for the pipeline: {target:g} µs of worker CPU per consumed record."]
    return lines


def ingress_rows(report: RunReport) -> list[list[str]]:
    rows = []
    for p in report.ingress:
        o = p.outcome
        r = o.result
        q = summary_ms(r.query_latency)
        v = summary_ms(r.vehicle_latency)
        forwarded = "/".join("?" if p.forwarded.get(w) is None else f"{p.forwarded[w]:,}"
                             for w in WORKERS)
        rows.append([
            f"{p.share:g}", f"{r.rate:g}", f"{r.vehicles:,}",
            f"{o.per_vehicle(r.misrouted_records):.2f}",
            f"{r.achieved_rate:.1f}", "yes" if o.sustained else f"no ({o.verdict})",
            _ms(q["p50"]), _ms(q["p99"]), _ms(v["p99"]),
            f"{o.cpu_ms_per_vehicle('global'):.2f}", f"{o.cpu_ms_per_vehicle('regional'):.2f}",
            f"{p.worker_cpu_ms_per_vehicle:.2f}",
            f"{o.per_vehicle(o.consumed):.2f}", f"{p.forwarded_per_vehicle:.2f}", forwarded,
            _pct(o.usage.other_percent),
        ])
    return rows


INGRESS_HEADER = [
    "misrouted share", "offered v/s", "vehicles", "misrouted records sent/vehicle",
    "achieved v/s", "sustained", "query p50 ms", "query p99 ms", "vehicle p99 ms",
    "CPU global ms/vehicle", "CPU NA ms/vehicle", "CPU workers ms/vehicle",
    "worker-consumed records/vehicle", "forwarded/vehicle", "forwarded (global/NA)",
    "CPU other",
]


def ingress_cost_line(report: RunReport) -> str:
    cost = report.ingress_cost()
    if cost is None:
        return ("Extra worker CPU per misrouted record: not available (it needs two shares "
                "that forwarded different numbers of records).")
    low, high, total, per_worker = cost
    return (f"Extra worker CPU per misrouted record: {1000 * total:,.0f} µs "
            f"(global {1000 * per_worker['global']:,.0f} µs, NA "
            f"{1000 * per_worker['regional']:,.0f} µs): worker CPU per vehicle "
            f"{high.worker_cpu_ms_per_vehicle:.2f} ms at share {high.share:g} against "
            f"{low.worker_cpu_ms_per_vehicle:.2f} ms at share {low.share:g}, over "
            f"{high.forwarded_per_vehicle - low.forwarded_per_vehicle:.2f} more records "
            "forwarded per vehicle")


def ingress_console(report: RunReport) -> list[str]:
    if not report.ingress:
        return [f"ingress: {report.ingress_note}"] if report.ingress_note else []
    out = ["", f"ingress: misrouted share at {report.ingress_rate:g} vehicles/s offered"]
    short = ["share", "achieved", "sustained", "q p50", "q p99", "veh p99", "CPU g ms",
             "CPU NA ms", "rec/veh", "fwd/veh", "other"]
    out.append("  ".join(f"{h:>9}" for h in short))
    for p, row in zip(report.ingress, ingress_rows(report), strict=True):
        cells = [row[0], row[4], "yes" if p.outcome.sustained else "no", row[6], row[7], row[8],
                 row[9], row[10], row[12], row[13], row[15]]
        out.append("  ".join(f"{c:>9}" for c in cells))
    out.append(ingress_cost_line(report))
    return out


# --- plots --------------------------------------------------------------------------------------

def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(report: RunReport, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report.levels
    rates = [o.result.rate or 0.0 for o in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        values = [summary_ms(o.result.query_latency)[q] for o in levels]
        left.plot(rates, values, style, label=f"{q} query → answer")
    for rate, o in zip(rates, levels, strict=True):
        if not o.sustained:
            left.axvspan(rate - 4, rate + 4, color="tab:red", alpha=0.12, lw=0)
    left.axhline(report.targets.p99_ms, color="grey", ls="--", lw=1,
                 label=f"target p99 {report.targets.p99_ms:g} ms")
    left.axvline(report.targets.rate / 2, color="grey", ls=":", lw=1,
                 label=f"half the target rate ({report.targets.rate / 2:g}/s)")
    left.set_yscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    left.yaxis.set_major_formatter(plain)
    left.yaxis.set_minor_formatter(plain)
    left.set_xlabel("offered load (vehicles/s)")
    left.set_ylabel("latency (ms, log scale)")
    left.set_title("Query → answer latency (red: level not sustained)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    achieved = [o.result.achieved_rate for o in levels]
    top = max(rates + achieved + [report.targets.rate]) * 1.1
    right.plot([0, top], [0, top], color="grey", lw=1, label="achieved = offered")
    right.plot([0, top], [0, 0.95 * top], color="grey", lw=1, ls=":", label="95% of offered")
    right.plot(rates, achieved, "o-", color="tab:green", label="achieved (completed vehicles)")
    right.axvline(report.targets.rate, color="tab:red", ls="--", lw=1,
                  label=f"target {report.targets.rate:g}/s")
    right.set_xlim(0, top)
    right.set_ylim(0, top)
    right.set_xlabel("offered load (vehicles/s)")
    right.set_ylabel("vehicles/s")
    right.set_title("Throughput")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(f"Pipeline benchmark {report.run_id} ({report.machine.logical_cpus} cores, "
                 f"{report.settings['seconds']:g} s per level)", fontsize=10)
    _save(fig, path)


def plot_rss(report: RunReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert report.state is not None
    fig, ax = plt.subplots(figsize=(7, 4))
    for worker in report.rss_peak:
        points = [(n, rss[worker] / MB) for n, rss in report.state.trend if worker in rss]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{worker} worker")
    ax.axhline(report.targets.rss_mb, color="grey", ls="--", lw=1,
               label=f"target {report.targets.rss_mb:g} MB")
    ax.set_xlabel("vehicles provisioned (in state)")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("Worker RSS while loading state")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_ingress(report: RunReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = sorted(report.ingress, key=lambda p: p.share)
    shares = [p.share for p in phases]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4))
    left.plot(shares, [p.outcome.result.achieved_rate for p in phases], "o-", color="tab:green",
              label="achieved")
    left.axhline(report.ingress_rate or 0, color="grey", lw=1, label="offered")
    left.set_ylim(0, (report.ingress_rate or 1) * 1.15)
    left.set_ylabel("vehicles/s")
    left.set_title("Throughput")
    for q, style in (("p50", "o-"), ("p99", "^-")):
        middle.plot(shares, [summary_ms(p.outcome.result.query_latency)[q] for p in phases],
                    style, label=f"query {q}")
    middle.plot(shares, [summary_ms(p.outcome.result.vehicle_latency)["p99"] for p in phases],
                "s--", label="vehicle p99")
    middle.set_ylim(bottom=0)
    middle.set_ylabel("ms")
    middle.set_title("Latency")
    for name, label in (("global", "global"), ("regional", "NA")):
        right.plot(shares, [p.outcome.cpu_ms_per_vehicle(name) for p in phases], "o-",
                   label=label)
    right.plot(shares, [p.worker_cpu_ms_per_vehicle for p in phases], "s-", color="black",
               label="both workers")
    right.set_ylim(bottom=0)
    right.set_ylabel("CPU ms per completed vehicle")
    right.set_title("Worker CPU")
    for ax in (left, middle, right):
        ax.set_xlabel("misrouted share of device-facing records")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Ingress forwarding, run {report.run_id} ({report.ingress_rate:g} vehicles/s "
                 f"offered, {report.settings['seconds']:g} s per share)", fontsize=10)
    _save(fig, path)


# --- docs/benchmarks.md -------------------------------------------------------------------------

def ingress_markdown(report: RunReport, ingress_png: str | None) -> list[str]:
    lines = ["", "## Ingress: misrouted share", ""]
    if not report.ingress:
        return lines + [report.ingress_note or "Not run (`--misrouted ''`)."]
    seconds = report.settings["seconds"]
    lines += [f"One open-loop phase per share at {report.ingress_rate:g} vehicles/s offered, "
              f"{seconds:g} s each, after the load levels (Method, step 5). The share is of the "
              "vehicles whose `PROVISION_QUERY` and `DEVICE_PROVISION` records the client "
              "sends to a partition that does not own their key; registrations stay on their "
              "owner partitions in this benchmark. CPU is per completed vehicle over the whole "
              "phase, drain included.", ""]
    if ingress_png:
        lines += [f"![throughput, latency and worker CPU against the misrouted share]"
                  f"({ingress_png})", ""]
    lines += _table(INGRESS_HEADER, ingress_rows(report))
    lines += ["", ingress_cost_line(report) + "."]
    mismatched = [p for p in report.ingress
                  if p.forwarded_total != p.outcome.result.misrouted_records]
    if mismatched:
        lines += ["", "Forwarded records differ from the misrouted records the client sent at "
                  "share " + ", ".join(
                      f"{p.share:g} ({p.forwarded_total:,} forwarded, "
                      f"{p.outcome.result.misrouted_records:,} sent)" for p in mismatched)
                  + ": a vehicle that failed or was not answered sends no device requests, a "
                  "redelivered record is forwarded again."]
    failures = {f"{p.share:g}": p.outcome.result.failures for p in report.ingress
                if p.outcome.result.failures}
    if failures:
        lines += ["", "Failures by share: " + "; ".join(
            f"{share}: " + ", ".join(f"{k} x{n}" for k, n in c.most_common())
            for share, c in failures.items())]
    return lines

def ingress_method(report: RunReport) -> str:
    s = report.settings
    shares = s.get("misrouted")
    if not shares:
        how = "not run in this run"
    else:
        rate = (f"{report.ingress_rate:g} vehicles/s" if report.ingress_rate else "-")
        how = (f"here {', '.join(f'{x:g}' for x in shares)}; `--ingress-rate`, here {rate}"
               + ("" if s.get("ingress_rate_given") else
                  ": the highest sustained level, else the lowest level"))
    return (
        f"5. **Ingress: misrouted share** (`--misrouted`, {how}): after the load levels and "
        "before the baseline, one open-loop phase per share at that rate, as long as a level "
        "(`--seconds`) and judged like one. For "
        "that share of the vehicles (picked by a seeded hash of the vehicle's index: runs "
        "repeat, and a vehicle misrouted at one share is misrouted at every higher one) the "
        "client produces the `PROVISION_QUERY` and both `DEVICE_PROVISION` records with an "
        "explicit partition that does not own the VIN under murmur2, as a producer with another "
        "partitioner would; the other vehicles' records go through the murmur2 producer. "
        "Registrations stay on their owner partitions (all are produced by the murmur2 "
        "producer before the first phase). The workers' ingress forwards each misrouted record "
        "once, through a rerouted "
        "topic, to the partition owning its key; *forwarded* is the difference of the workers' "
        "`forwarded` counters (`/health`) over the phase. **Extra CPU per misrouted record** = "
        "(both workers' CPU per completed vehicle at the highest share − at the lowest) / "
        "(records forwarded per vehicle at the highest share − at the lowest).")


def markdown(report: RunReport, latency_png: str | None, rss_png: str | None,
             findings: str | None, ingress_png: str | None = None) -> str:
    s = report.settings
    t = report.targets
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/pipeline_bench.py` (run it again to replace this page). The pipeline "
        f"runs end to end on one broker: the global worker and one regional worker "
        f"({s['region']}), started by the benchmark as `vprov worker` processes with the "
        "packaged defaults and a deployment of their own (own app prefix, topics and state).",
        "",
        f"Run `{report.run_id}`, started {report.started}, took {report.wall_seconds / 60:.1f} "
        "minutes.",
        "",
        "```",
        report.command,
        "```",
        "",
        f"With the local stack (`make up`): `{report.make_command}`",
        "",
        "## Targets",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {v.name} | **{v.mark}** | {v.detail} |" for v in report.verdicts()]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.machine.rows()]
    lines += ["", "## Deployment and settings", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.deployment]
    lines += [
        "",
        "## Method",
        "",
        f"1. **Registration** (not timed): every vehicle the run will use "
        f"({report.registered_vehicles:,}, two devices each: TCU primary + IVI) is registered on "
        "the registration topic. The benchmark waits until the global worker has written one "
        "record per device to its internal system-registrations topic (every registration "
        "ingested) and the workers are idle (next step), then reads a sample of systems back "
        "over `GET /systems/{system_id}/`. "
        f"Took {report.registration_seconds:.0f} s.",
        f"2. **State load** (`--state-vehicles`, here {s['state_vehicles']:,}): vehicles are "
        f"provisioned as fast as the pipeline answers (closed loop, at most {s['state_window']} "
        "vehicles in flight); the workers' RSS is sampled during the load and after it.",
        f"3. **Load levels** (`--levels`, `--seconds`): for each offered rate an open-loop sender "
        f"starts vehicles at that rate for {s['seconds']:g} s. A vehicle's primary sends "
        "`PROVISION_QUERY`; on a successful answer both devices send `DEVICE_PROVISION` to the "
        "region (primary first). Latencies are taken in the benchmark process: *query* from "
        "the vehicle's intended start to the query answer, *vehicle* from the intended start to "
        "the last device answer. Measuring from the intended start (not the actual send) keeps "
        "a late sender from hiding latency.",
        f"4. A level is **sustained** when every vehicle completed without failure, the "
        f"completion rate while vehicles were offered was at least "
        f"{s['min_completion'] * 100:.0f}% of the offered rate, and the backlog drained within "
        f"{s['drain_limit']:g} s after the last vehicle started. The series ends after "
        f"{s['max_unsustained']} unsustained levels, or after a level whose backlog has not "
        f"drained {s['level_timeout']:g} s after sending stops (higher levels would only "
        "confirm the saturation). Before every phase the benchmark waits until the workers are "
        "idle, so no phase inherits another's backlog: their consumer groups have committed "
        "the end of every input topic, or, if a commit stays behind, neither worker's processed "
        "count (`/health`) moved for 5 s (noted below when it happens).",
        ingress_method(report),
        "6. **Records moved**: during each phase the end offsets of every topic of the "
        "deployment are read before and after. *Worker-consumed records* are the records "
        "appended to the topics the workers consume (registrations and the query, the global "
        "worker's internal topics: system registrations, query by system, query by device, "
        "vehicle commands; rehome request and result, device requests; the rerouted topics that "
        "carry misrouted registrations, queries and device requests to their owner partition): "
        "each is one consume → process → produce step of a worker. Records the workers only "
        "write (answers, lifecycle events, onboarding requests, table changelogs) are counted "
        "separately.",
        "7. **Baseline**, in the same run and on the same broker: a minimal confluent-kafka "
        "relay (a separate process, consumer group + the project's producer settings: acks=all, "
        "idempotence) consumes records and produces each back to the topic it reads, so the "
        "20,000 seeded records (the pipeline's own query and device messages: similar sizes) "
        "circulate and it never runs dry. After a second of warm-up it counts what it moves "
        "in a fixed window (`--baseline-seconds`, default 5 s), three times (a new consumer "
        "group each time; the median counts). A fixed window keeps the figure independent of "
        "how many records a run seeds: a count moved in a fraction of a second is mostly "
        "start-up and scheduling noise (an earlier count-based relay measured 25,000 and "
        "251,000 records/s on the same machine). Its start-up, from partition assignment "
        "to the first record, is shown apart. "
        "**Ratio** = worker-consumed records per second of the reference level (the sustained "
        "level that moved the most records) / relay records per second: both count one "
        "consume-and-produce step per record. The levels are paced, so the pipeline figure is "
        "what it sustained, not an unpaced maximum; the closed-loop state load gives the "
        "unpaced figure. **Sustained vehicles/s per 1,000 relay records/s** = achieved "
        "vehicles/s of the highest sustained level / relay records/s × 1,000: the pipeline's "
        "throughput in units of what the same broker and machine relay.",
        "8. **CPU** per phase: CPU seconds of each worker process, the broker, Redis and the "
        "benchmark client (all its threads), as a share of one core over the phase; *other* "
        "is every other process on the machine (on a shared machine: other people's work). "
        "The broker and Redis may also be serving other clients.",
        "9. **Peak RSS**: each worker process (and its children) sampled every 0.5 s for the "
        "whole run.",
        "",
        "## Results by load level",
        "",
    ]
    if latency_png:
        lines += [f"![latency and throughput against offered load]({latency_png})", ""]
    lines += _table(LEVEL_HEADER, level_rows(report))
    for rate in report.skipped_levels:
        lines.append(f"\nLevel {rate:g} vehicles/s skipped: lower levels were not sustained "
                     "(`--max-unsustained`) or one's backlog did not drain.")
    failures = {f"{o.result.rate:g}": o.result.failures for o in report.levels
                if o.result.failures}
    if failures:
        lines += ["", "Failures by level: " + "; ".join(
            f"{rate}/s: " + ", ".join(f"{k} x{n}" for k, n in c.most_common())
            for rate, c in failures.items())]
    if report.levels:
        lines += ["", "CPU per completed vehicle (ms of CPU time over the whole phase, drain "
                  "included). Two cores give 2,000 ms per second, so near saturation the total "
                  "bounds the rate this machine can sustain; at low load fixed costs (polling, "
                  "timers, the broker's other clients) inflate it:", ""]
        rows = []
        for o in report.levels:
            done = max(o.result.completed, 1)
            per = [1000 * o.usage.cpu.get(c, 0.0) / done for c in COMPONENTS]
            rows.append([f"{o.result.rate:g}", *(f"{v:.1f}" for v in per), f"{sum(per):.1f}",
                         f"{2000 / sum(per):.0f}" if sum(per) else "-"])
        lines += _table(["offered v/s", "global", "NA", "broker", "Redis", "client", "total",
                         "2,000 ms / total (v/s)"], rows)
    lag = [o for o in report.levels if o.result.send_lag]
    if lag:
        lines += ["", "Sender lag (actual − intended start, p99 per level, ms): " + ", ".join(
            f"{o.result.rate:g}/s {summary_ms(o.result.send_lag)['p99']:.1f}" for o in lag)
            + ". Device → answer p99 per level (ms): " + ", ".join(
            f"{o.result.rate:g}/s {_ms(summary_ms(o.result.device_latency)['p99'])}"
            for o in report.levels) + "."]
    if report.levels:
        lines += ["", "Records per vehicle, by topic (first level): "]
        first = report.levels[0]
        for topic, count in sorted(first.records.items()):
            if count:
                lines.append(f"- `{topic}`: {first.per_vehicle(count):.2f}")
        lines += ["", f"Workers wrote {first.per_vehicle(first.produced):.1f} records and "
                  f"consumed {first.per_vehicle(first.consumed):.1f} per vehicle."]
    lines += ingress_markdown(report, ingress_png)
    lines += scale_out_markdown(report)
    lines += floor_markdown(report)
    lines += restore_markdown(report)
    lines += standby_markdown(report)
    lines += ["", "## Baseline: consume → produce relay", ""]
    if report.baseline is not None:
        b = report.baseline
        lines += _table(["records moved in the window", "mean value size", "window s",
                         "records/s (median)", "records/s of the 3 runs", "start-up s",
                         "relay CPU s",
                         "CPU µs per record"],
                        [[f"{b.records:,}", f"{b.mean_bytes:.0f} B", f"{b.seconds:.2f}",
                          f"{b.rate:,.0f}", ", ".join(f"{r:,.0f}" for r in b.rates),
                          f"{b.startup_seconds:.2f}",
                          f"{b.cpu_seconds:.2f}",
                          f"{1e6 * b.cpu_seconds / max(b.records, 1):.0f}"]])
        ratio = report.ratio
        lines += ["", f"**Pipeline / baseline = {ratio:.3f}**" if ratio is not None else
                  "Ratio not available.", "", report.baseline_reference + "."]
        per_k = report.vehicles_per_krecords
        best = report.highest_sustained_level()
        if per_k is not None and best is not None:
            lines += ["", f"**Sustained vehicles/s per 1,000 relay records/s = {per_k:.2f}**",
                      "", f"The highest sustained level ({best.result.rate:g} vehicles/s) "
                      f"achieved {best.result.achieved_rate:.1f} vehicles/s; the relay moved "
                      f"{b.rate:,.0f} records/s."]
        else:
            lines += ["", "Sustained vehicles/s per 1,000 relay records/s: not available (no "
                      "level sustained)."]
        if report.closed_loop_ratio is not None:
            lines += ["", f"Closed-loop state load against the same baseline: "
                      f"{report.closed_loop_ratio:.3f}."]
        ref = report.reference_level()
        if ref is not None and ref.consumed:
            worker_cpu = ref.usage.cpu.get("global", 0) + ref.usage.cpu.get("regional", 0)
            lines += ["", f"CPU per worker-consumed record at the reference level: "
                      f"{1e6 * worker_cpu / ref.consumed:.0f} µs (both workers), against "
                      f"{1e6 * b.cpu_seconds / max(b.records, 1):.0f} µs per record for the "
                      "relay."]
    else:
        lines.append("Not run.")
    lines += ["", "## Memory", ""]
    lines += _table(["worker", "peak RSS (MB)"] + (["RSS after state load (MB)"]
                                                  if report.state else []),
                    [[k, _mb(v)] + ([_mb(report.state.rss_after.get(k, 0))]
                                    if report.state else [])
                     for k, v in report.rss_peak.items()])
    if report.state is not None:
        st = report.state
        r = st.outcome.result
        span = r.ended_at - r.started_at
        lines += ["", f"State load: {r.completed:,} of {r.vehicles:,} vehicles provisioned in "
                  f"{span:.0f} s ({r.completed / span if span else 0:.1f} vehicles/s closed loop, "
                  f"query p99 {_ms(summary_ms(r.query_latency)['p99'])} ms with up to "
                  f"{s['state_window']} vehicles in flight)."]
        if r.failures:
            lines.append("Failures: " + ", ".join(f"{k} x{n}" for k, n in
                                                  r.failures.most_common()) + ".")
        if st.trend:
            step = max(1, len(st.trend) // 10)
            picked = st.trend[::step]
            if picked[-1] is not st.trend[-1]:
                picked.append(st.trend[-1])
            workers = list(report.rss_peak)
            lines += ["", "RSS while loading (MB):", ""]
            lines += _table(["vehicles in state", *workers],
                            [[f"{n:,}", *(_mb(rss.get(w, 0)) for w in workers)]
                             for n, rss in picked])
        if rss_png:
            lines += ["", f"![worker RSS while loading state]({rss_png})"]
        if r.completed < t.state_vehicles:
            lines += ["", f"For the {t.state_vehicles:,}-vehicle figure run with "
                      f"`--state-vehicles {t.state_vehicles}` (registration and load take "
                      "several minutes at the closed-loop rate above)."]
    lines += ["", "## Benchmark client", "",
              f"The benchmark process used {report.client_cpu_seconds:.1f} CPU seconds over "
              f"{report.wall_seconds:.0f} s (one producer, one consumer, one thread); per level "
              "its share is in the CPU client column above."]
    lines += ["", "## Profile", ""]
    if report.profiles:
        ph = report.profile_phase
        if ph is not None:
            q = summary_ms(ph.result.query_latency)
            lines += [f"py-spy sampled both workers during an extra, unscored open-loop phase at "
                      f"{ph.result.rate:g} vehicles/s for {ph.result.window:.0f} s (achieved "
                      f"{ph.result.achieved_rate:.1f}/s, query p99 {_ms(q['p99'])} ms; CPU "
                      f"global {_pct(ph.usage.percent('global'))}, NA "
                      f"{_pct(ph.usage.percent('regional'))}, broker "
                      f"{_pct(ph.usage.percent('broker'))}, client "
                      f"{_pct(ph.usage.percent('client'))}, other "
                      f"{_pct(ph.usage.other_percent)} of one core).", ""]
            rows = []
            for name in ("global", "regional"):
                total = ph.usage.cpu.get(name, 0.0)
                system = ph.usage.system.get(name, 0.0)
                threads = report.thread_cpu.get(name, {})
                rows.append([name, _pct(ph.usage.percent(name)),
                             f"{100 * system / total:.0f}%" if total else "-",
                             ", ".join(f"{t} {v:.0f}%" for t, v in list(threads.items())[:4])])
            lines += _table(["worker", "CPU (% of a core)", "of which kernel",
                             "by thread (% of a core; main = event loop)"], rows)
            lines += ["", "py-spy counts a sample for every thread that is not idle, which "
                      "includes waiting for a core on a saturated machine: the shares below "
                      "say where the threads were, the CPU figures above how much they used.",
                      ""]
        for profile in report.profiles:
            lines += profile_markdown(profile)
    else:
        lines += [report.profile_note or "Not run (`--profile`)."]
    if report.notes:
        lines += ["", "## Notes on this run", ""] + [f"- {n}" for n in report.notes]
    if findings:
        lines += ["", findings.strip()]
    return "\n".join(lines) + "\n"
