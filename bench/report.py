"""What a benchmark run found, and how it is shown: the console summary, the tables' rows and
the plots in ``docs/img/`` (``docs/benchmarks.md`` itself: ``bench.page``)."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.client_floor import CLIENTS, FloorResult
from bench.deploy import Machine
from bench.edge_bench import EdgeReport
from bench.edge_bench import console_lines as edge_console
from bench.loadgen import PhaseResult, summary_ms
from bench.profiles import Profile
from bench.relay import BaselineResult
from bench.restore import RestoreReport
from bench.settle import Sample
from bench.standby_cost import StandbyRun

MB = 1_000_000
COMPONENTS = ("global", "regional", "broker", "redis", "client")
WORKERS = ("global", "regional")
BARE_AGENT = "faust"  # the client floor's Faust agent (client_floor.CLIENTS), the workers' stack


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
    # group joins in the workers' logs during the phase: none unless a worker was evicted
    # (a session timeout too short for the load) or the group changed
    rejoins: int = 0
    # records each worker consumed (worker name -> records); empty: not counted per worker
    consumed_by: dict[str, int] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A phase pickled before a field existed gets the field's default: fields with a plain
        # default fall back to the class attribute, those with a factory need a value here.
        for f in fields(self):
            if f.name not in state and f.default_factory is not MISSING:
                state[f.name] = f.default_factory()
        self.__dict__.update(state)

    @property
    def seconds(self) -> float:
        """The sending window and the drain: the span the record counts cover."""
        return self.result.window + self.result.drain_seconds

    @property
    def consumed_rate(self) -> float:
        """Worker-consumed records per second over the sending window and the drain."""
        return self.consumed / self.seconds

    def per_vehicle(self, count: int) -> float:
        return count / self.result.vehicles if self.result.vehicles else 0.0

    def cpu_ms_per_vehicle(self, name: str) -> float:
        """CPU milliseconds of ``name`` per completed vehicle, over the whole phase."""
        return 1000 * self.usage.cpu.get(name, 0.0) / max(self.result.completed, 1)

    @property
    def worker_cpu_ms_per_vehicle(self) -> float:
        """Both workers' CPU milliseconds per completed vehicle."""
        return sum(self.cpu_ms_per_vehicle(w) for w in WORKERS)

    def worker_records(self) -> dict[str, float]:
        """Records each worker consumed; half of ``consumed`` each when the phase did not count
        them per worker (``consumed_by`` empty)."""
        if self.consumed_by:
            return {w: float(self.consumed_by.get(w, 0)) for w in WORKERS}
        return {w: self.consumed / len(WORKERS) for w in WORKERS}


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
        return self.outcome.worker_cpu_ms_per_vehicle


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
    """What a run is judged by. A run pickled before a target existed finds its default as the
    class attribute; targets since dropped stay in such a run's ``__dict__``, unread."""

    rate: float = 200.0  # vehicles/s, the highest sustained level
    p99_ms: float = 150.0  # query -> answer, at the reference rate
    rss_mb: float = 500.0  # peak RSS per worker ...
    state_vehicles: int = 1_000_000  # ... with this many vehicles of state
    reference_rate: float = 100.0  # offered vehicles/s of the level CPU and p99 are judged at
    cpu_ms: float = 9.0  # both workers' CPU per completed vehicle, at the reference rate
    agent_ratio: float = 1.25  # a worker's CPU per consumed record / a bare Faust agent's


@dataclass
class AgentRatio:
    """One worker's CPU per consumed record against the bare Faust agent's at the same rate."""

    worker: str
    rate: float  # records/s the worker consumed
    us_per_record: float  # the worker's CPU per consumed record
    agent_us_per_record: float  # the bare agent's at ``rate``
    nearest: bool  # ``rate`` outside the floor's rates: the nearest one's figure

    @property
    def ratio(self) -> float:
        return self.us_per_record / self.agent_us_per_record


def bare_agent_us(floor: list[FloorResult], rate: float) -> tuple[float, bool] | None:
    """The bare Faust agent's CPU µs per record at ``rate`` records/s, and whether ``rate`` lay
    outside the measured rates (then the nearest one's figure is taken). Between two measured
    rates the figure is linear in log(rate): the floor's rates are spaced by factors (300 and
    2,400 records/s by default), not by steps. None without a measured point."""
    points = sorted((r.rate, r.us_per_record) for r in floor
                    if r.client == BARE_AGENT and r.rate > 0 and not math.isnan(r.us_per_record))
    if not points:
        return None
    if rate <= points[0][0]:
        return points[0][1], rate < points[0][0]
    if rate >= points[-1][0]:
        return points[-1][1], rate > points[-1][0]
    for (low, low_us), (high, high_us) in pairwise(points):
        if low < rate <= high:
            share = math.log(rate / low) / math.log(high / low)
            return low_us + share * (high_us - low_us), False
    raise AssertionError("unreachable: rate lies between the first and last point")


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
    edge: EdgeReport | None = None  # the fleet over MQTT and Kafka-direct (--edge)
    rss_peak: dict[str, int] = field(default_factory=dict)
    # the large-state phase: vehicles of state it built and each worker's peak RSS meanwhile
    large_state_vehicles: int = 0
    large_state_rss_peak: dict[str, int] = field(default_factory=dict)
    large_state: list[Outcome] = field(default_factory=list)  # the levels again on it
    large_state_ready_seconds: float = 0.0  # workers restarted -> ready (bulk restore)
    large_state_write_rate: float = 0.0  # changelog records/s the state was written at
    # ready -> the machine quiet again (bench/settle.py), sampled every second
    large_state_settle: list[Sample] = field(default_factory=list)
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

    def reference_rate_level(self) -> Outcome | None:
        """The level offered at the targets' reference rate: CPU per vehicle, the query p99
        and the guard rail against the bare agent are judged there."""
        return next((o for o in self.levels
                     if math.isclose(o.result.rate or 0.0, self.targets.reference_rate)), None)

    def half_sustained_level(self) -> Outcome | None:
        """The level at half the highest sustained rate, or the nearest one below it."""
        best = self.sustained_rate
        if best is None:
            return None
        below = [o for o in self.levels if (o.result.rate or 0.0) <= best / 2]
        return max(below, key=lambda o: o.result.rate or 0.0, default=None)

    def agent_ratios(self) -> list[AgentRatio]:
        """Each worker at the reference level against the bare Faust agent at the records/s
        that worker consumed; empty without that level or the agent's floor figures. A worker
        that consumed nothing has no cost per record and is left out."""
        level = self.reference_rate_level()
        if level is None:
            return []
        out = []
        for worker, records in level.worker_records().items():
            rate = records / level.seconds
            agent = bare_agent_us(self.floor, rate)
            if agent is None or records <= 0:
                continue
            us = 1e6 * level.usage.cpu.get(worker, 0.0) / records
            out.append(AgentRatio(worker, rate, us, agent[0], agent[1]))
        return out

    def verdicts(self) -> list[Verdict]:
        return [self.rate_verdict(), self.cpu_verdict(), self.p99_verdict(),
                self.rss_verdict(), self.large_state_verdict(), self.agent_verdict()]

    def large_state_verdict(self) -> Verdict:
        """The large state's sustained level and reference-rate p99 within 10% of the small
        state's, in the same run."""
        t = self.targets
        name = (f"with {t.state_vehicles:,} vehicles of state: sustained level and p99 at "
                f"{t.reference_rate:g}/s within 10% of the small state's")
        if self.large_state_vehicles < t.state_vehicles or not self.large_state:
            return Verdict(name, None, f"{self.large_state_vehicles:,} vehicles of state "
                                       "(--large-state-vehicles)")
        small_best = sustained_of(self.levels)
        large_best = sustained_of(self.large_state)
        small = reference_p99(self.levels, t.reference_rate)
        large = reference_p99(self.large_state, t.reference_rate)
        if small_best is None or small is None or large is None:
            return Verdict(name, None, "no sustained level at the reference rate to compare")
        met = ((large_best or 0.0) >= 0.9 * small_best and large <= 1.1 * small)
        return Verdict(name, met, f"highest sustained {large_best or 0:g} vs {small_best:g} "
                                  f"vehicles/s; p99 {large:.0f} vs {small:.0f} ms at "
                                  f"{t.reference_rate:g}/s")

    def rate_verdict(self) -> Verdict:
        t = self.targets
        name = f">= {t.rate:g} vehicles/s sustained"
        best = self.sustained_rate
        tried = max((o.result.rate or 0.0 for o in self.levels), default=0.0)
        if best is not None and best >= t.rate:
            return Verdict(name, True, f"highest sustained level {best:g} vehicles/s")
        if tried < t.rate and best == tried:
            return Verdict(name, None, f"every level was sustained but none reached "
                                       f"{t.rate:g}/s; add higher --levels")
        return Verdict(name, False, f"highest sustained level {best:g} vehicles/s" if best
                       else "no level was sustained")

    def cpu_verdict(self) -> Verdict:
        t = self.targets
        name = f"worker CPU per vehicle <= {t.cpu_ms:g} ms at {t.reference_rate:g} vehicles/s"
        level = self.reference_rate_level()
        if level is None:
            return Verdict(name, None, f"no level at {t.reference_rate:g} vehicles/s (--levels)")
        ms = level.worker_cpu_ms_per_vehicle
        return Verdict(name, ms <= t.cpu_ms, f"{ms:.1f} ms per completed vehicle ("
                       + ", ".join(f"{w} {level.cpu_ms_per_vehicle(w):.1f}" for w in WORKERS)
                       + ")" + ("" if level.sustained else ", level not sustained"))

    def p99_verdict(self) -> Verdict:
        t = self.targets
        name = f"query p99 <= {t.p99_ms:g} ms at {t.reference_rate:g} vehicles/s"
        level = self.reference_rate_level()
        if level is None:
            return Verdict(name, None, f"no level at {t.reference_rate:g} vehicles/s (--levels)")
        p99 = summary_ms(level.result.query_latency)["p99"]
        met = not math.isnan(p99) and p99 <= t.p99_ms and level.sustained
        return Verdict(name, met, f"p99 {fmt_ms(p99)} ms"
                       + ("" if level.sustained else ", level not sustained"))

    def rss_verdict(self) -> Verdict:
        t = self.targets
        name = (f"peak RSS per worker <= {t.rss_mb:g} MB with {t.state_vehicles:,} vehicles "
                "of state")
        if self.large_state_vehicles >= t.state_vehicles and self.large_state_rss_peak:
            peak = self.large_state_rss_peak
            worst = max(peak, key=lambda k: peak[k])
            return Verdict(name, peak[worst] / MB <= t.rss_mb,
                           f"peak {peak[worst] / MB:.0f} MB ({worst}) with "
                           f"{self.large_state_vehicles:,} vehicles of state")
        peak_mb = max(self.rss_peak.values(), default=0) / MB
        worst = max(self.rss_peak, key=lambda k: self.rss_peak[k], default="-")
        loaded = self.state.outcome.result.completed if self.state else 0
        if loaded >= t.state_vehicles:
            return Verdict(name, peak_mb <= t.rss_mb,
                           f"peak {peak_mb:.0f} MB ({worst}) with {loaded:,} vehicles loaded")
        guesses = []
        for worker in self.rss_peak if self.state is not None else ():
            value = self.state.extrapolate(worker, t.state_vehicles)  # type: ignore[union-attr]
            if value is not None:
                guesses.append(f"{worker} ~{value / MB:.0f} MB")
        guess = (f"; a straight line through the RSS trend gives {', '.join(guesses)} at "
                 f"{t.state_vehicles:,} (extrapolated, not measured)") if guesses else ""
        return Verdict(name, None, f"only {loaded:,} vehicles loaded (--state-vehicles); "
                                   f"peak {peak_mb:.0f} MB ({worst}){guess}")

    def agent_verdict(self) -> Verdict:
        t = self.targets
        name = f"pipeline ÷ bare agent <= {t.agent_ratio:g}, each worker at its own rate"
        level = self.reference_rate_level()
        if level is None:
            return Verdict(name, None, f"no level at {t.reference_rate:g} vehicles/s (--levels)")
        if bare_agent_us(self.floor, t.reference_rate) is None:
            return Verdict(name, None, f"no {BARE_AGENT} figures in the client floor "
                                       "(--floor-rates)")
        ratios = self.agent_ratios()
        parts = [agent_ratio_text(r) for r in ratios]
        parts += [f"{w}: no records consumed" for w in WORKERS
                  if w not in {r.worker for r in ratios}]
        if not level.consumed_by:
            parts.append("records not counted per worker: half the consumed records each")
        met = all(r.ratio <= t.agent_ratio for r in ratios)
        # with a worker unmeasured a failure still counts, a pass does not
        return Verdict(name, met if len(ratios) == len(WORKERS) or not met else None,
                       f"at the {level.result.rate:g} vehicles/s level: " + "; ".join(parts))


def agent_ratio_text(r: AgentRatio) -> str:
    return (f"{r.worker} {r.ratio:.2f} at {r.rate:,.0f} records/s ({r.us_per_record:,.0f} µs "
            f"per record against the agent's {r.agent_us_per_record:,.0f} µs"
            + (", at the floor's nearest rate)" if r.nearest else ")"))


# --- the headline: the figures the targets judge, one line each -------------------------------

def headline(report: RunReport) -> list[tuple[str, str]]:
    """(what, figure) for the page's top and the console, before the targets."""
    return [("Sustained", sustained_headline(report)),
            (f"Worker CPU per vehicle at {report.targets.reference_rate:g} vehicles/s",
             cpu_headline(report)),
            ("Pipeline ÷ bare agent", agent_headline(report)),
            ("Query p99 at half the sustained rate", half_p99_headline(report))]


def sustained_headline(report: RunReport) -> str:
    best = report.highest_sustained_level()
    if best is None:
        return "none of the levels was sustained" if report.levels else "not measured (no level)"
    return (f"{best.result.rate:g} vehicles/s, the highest sustained level (achieved "
            f"{best.result.achieved_rate:.1f} vehicles/s)")


def cpu_headline(report: RunReport) -> str:
    level = report.reference_rate_level()
    if level is None:
        return f"not measured (no level at {report.targets.reference_rate:g} vehicles/s)"
    return (f"{level.worker_cpu_ms_per_vehicle:.1f} ms ("
            + ", ".join(f"{w} {level.cpu_ms_per_vehicle(w):.1f} ms" for w in WORKERS) + ")")


def agent_headline(report: RunReport) -> str:
    level, ratios = report.reference_rate_level(), report.agent_ratios()
    if level is None:
        return f"not measured (no level at {report.targets.reference_rate:g} vehicles/s)"
    if bare_agent_us(report.floor, report.targets.reference_rate) is None:
        return "not measured (no client floor)"
    if not ratios:
        return "not measured (the workers consumed no records)"
    line = ", ".join(f"{r.worker} {r.ratio:.2f} at {r.rate:,.0f} records/s" for r in ratios)
    line += f" (the {level.result.rate:g} vehicles/s level)"
    if not level.consumed_by:
        line += "; records not counted per worker: half each"
    return line


def half_p99_headline(report: RunReport) -> str:
    best, level = report.sustained_rate, report.half_sustained_level()
    if best is None:
        return "not measured (no level sustained)"
    if level is None:
        return f"not measured (no level at or below {best / 2:g} vehicles/s)"
    where = ("" if math.isclose(level.result.rate or 0.0, best / 2)
             else f"the nearest below {best / 2:g}, ")
    p99 = summary_ms(level.result.query_latency)["p99"]
    return (f"{fmt_ms(p99)} ms at the {level.result.rate:g} vehicles/s level ({where}half the "
            f"highest sustained rate, {best:g})" + ("" if level.sustained else "; not sustained"))


# --- formatting helpers -------------------------------------------------------------------------

def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def fmt_mb(value: int | float) -> str:
    return f"{value / MB:,.0f}"


def fmt_pct(value: float) -> str:
    return f"{value:.0f}%"


def sustained_of(outcomes: list[Outcome]) -> float | None:
    rates = [o.result.rate or 0.0 for o in outcomes if o.sustained]
    return max(rates) if rates else None


def reference_p99(outcomes: list[Outcome], rate: float) -> float | None:
    """The query p99 of the sustained level offered at ``rate``; None without one."""
    found = [o for o in outcomes if o.result.rate == rate and o.sustained]
    if not found:
        return None
    p99 = summary_ms(found[0].result.query_latency)["p99"]
    return None if math.isnan(p99) else p99


def level_rows(report: RunReport, outcomes: list[Outcome] | None = None) -> list[list[str]]:
    rows = []
    for o in report.levels if outcomes is None else outcomes:
        r = o.result
        q = summary_ms(r.query_latency)
        v = summary_ms(r.vehicle_latency)
        rows.append([
            f"{r.rate:g}", f"{r.vehicles:,}", f"{r.completed:,}", f"{r.failed + r.unanswered:,}",
            f"{r.achieved_rate:.1f}", f"{r.drain_seconds:.1f}",
            "yes" if o.sustained else f"no ({o.verdict})",
            fmt_ms(q["p50"]), fmt_ms(q["p95"]), fmt_ms(q["p99"]),
            fmt_ms(v["p50"]), fmt_ms(v["p95"]), fmt_ms(v["p99"]),
            f"{o.per_vehicle(o.consumed):.1f}", f"{o.consumed_rate:,.0f}",
            fmt_pct(o.usage.percent("global")), fmt_pct(o.usage.percent("regional")),
            fmt_pct(o.usage.percent("broker")), fmt_pct(o.usage.percent("redis")),
            fmt_pct(o.usage.percent("client")), fmt_pct(o.usage.other_percent),
        ])
    return rows


LEVEL_HEADER = [
    "offered v/s", "vehicles", "completed", "failed", "achieved v/s", "drain s", "sustained",
    "query p50 ms", "query p95 ms", "query p99 ms", "vehicle p50 ms", "vehicle p95 ms",
    "vehicle p99 ms", "worker-consumed records/vehicle", "worker-consumed records/s",
    "CPU global", "CPU NA", "CPU broker", "CPU Redis", "CPU client", "CPU other",
]


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
                "loop); RSS after: " + ", ".join(f"{k} {fmt_mb(v)} MB"
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
    if report.edge is not None:
        out += ["", *edge_console(report.edge)]
    if report.floor:
        out += ["", f"client floor, µs of CPU per relayed record ({', '.join(CLIENTS)}):", *(
                    f"  {row[0]} records/s: " + " | ".join(row[1:-1])
                    for row in floor_rows(report))]
    out.append("")
    out.append("peak RSS: " + ", ".join(f"{k} {fmt_mb(v)} MB" for k, v in report.rss_peak.items()))
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
    out += [f"{what}: {figure}" for what, figure in headline(report)]
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
            row += [f"{o.result.achieved_rate:.1f}", "yes" if o.sustained else "no",
                    fmt_ms(q["p99"]), f"{o.worker_cpu_ms_per_vehicle:.1f}",
                    fmt_pct(o.usage.machine_percent)]
        rows.append(row)
    return rows


SCALE_OUT_HEADER = [
    "offered v/s", "1 per role: achieved v/s", "sustained", "query p99 ms",
    "worker CPU ms/vehicle", "machine CPU", "2 per role: achieved v/s", "sustained",
    "query p99 ms", "worker CPU ms/vehicle", "machine CPU",
]


def floor_rows(report: RunReport) -> list[list[str]]:
    by_rate: dict[float, dict[str, FloorResult]] = {}
    for r in report.floor:
        by_rate.setdefault(r.rate, {})[r.client] = r
    return [[f"{rate:,.0f}", *(f"{row[c].us_per_record:,.0f}" if c in row else "—"
                               for c in CLIENTS),
             ", ".join(f"{c} {row[c].relayed:,}/{row[c].sent:,}" for c in CLIENTS if c in row)]
            for rate, row in sorted(by_rate.items())]


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
            fmt_ms(q["p50"]), fmt_ms(q["p99"]), fmt_ms(v["p99"]),
            f"{o.cpu_ms_per_vehicle('global'):.2f}", f"{o.cpu_ms_per_vehicle('regional'):.2f}",
            f"{p.worker_cpu_ms_per_vehicle:.2f}",
            f"{o.per_vehicle(o.consumed):.2f}", f"{p.forwarded_per_vehicle:.2f}", forwarded,
            fmt_pct(o.usage.other_percent),
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
    left.axvline(report.targets.reference_rate, color="grey", ls=":", lw=1,
                 label=f"the p99 target's rate ({report.targets.reference_rate:g}/s)")
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
