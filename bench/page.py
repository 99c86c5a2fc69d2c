"""``docs/benchmarks.md`` from a run's figures.

The page's text lives in ``benchmarks.md.tmpl`` beside this module, one named section per piece;
the functions here pick the sections a run needs, format its figures into them and join them in
the page's order. Blocks are joined by one blank line.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path
from string import Template

from bench.client_floor import CLIENTS
from bench.edge_bench import (
    BRIDGE_HEADER,
    PATH_HEADER,
    PATH_NAME,
    bridge_rows,
    combined,
    differences,
    path_rows,
)
from bench.loadgen import summary_ms
from bench.profiles import markdown as profile_markdown
from bench.report import (
    COMPONENTS,
    INGRESS_HEADER,
    LEVEL_HEADER,
    SCALE_OUT_HEADER,
    RunReport,
    floor_rows,
    fmt_mb,
    fmt_ms,
    fmt_pct,
    headline,
    ingress_cost_line,
    ingress_rows,
    level_rows,
    scale_out_rows,
)
from bench.settle import QUIET_CORES, QUIET_SAMPLES, QUIET_WRITEBACK_MB, Sample, settled

TEMPLATE = Path(__file__).with_name("benchmarks.md.tmpl")
_SECTION = re.compile(r"^<!-- section: (\w+) -->\n", re.MULTILINE)


@cache
def sections(path: Path = TEMPLATE) -> dict[str, Template]:
    """The template's sections by name (the comment before the first one is left out)."""
    parts = _SECTION.split(path.read_text(encoding="utf-8"))
    return {name: Template(body.strip("\n"))
            for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def text(name: str, **values: str) -> str:
    """A section with its figures filled in; a figure it names and is not given raises."""
    return sections()[name].substitute(values)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pairs(rows: list[tuple[str, str]]) -> str:
    """Rows of a two-column table whose header is in the template."""
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def failures(counts: Counter[str]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in counts.most_common())


def markdown(report: RunReport, latency_png: str | None, rss_png: str | None,
             findings: str | None, ingress_png: str | None = None) -> str:
    blocks = [head(report), levels(report, latency_png), ingress(report, ingress_png),
              scale_out(report), large_state(report), floor(report), restore(report),
              standby(report), edge(report), baseline(report), memory(report, rss_png),
              client(report), profile(report), notes(report), findings.strip() if findings else ""]
    return "\n\n".join(block for block in blocks if block) + "\n"


# --- the head: run, targets, machine, deployment, method ----------------------------------------

def head(report: RunReport) -> str:
    s, t = report.settings, report.targets
    return text(
        "page", region=s["region"], run_id=report.run_id, started=report.started,
        minutes=f"{report.wall_seconds / 60:.1f}", command=report.command,
        make_command=report.make_command,
        headline=text("headline", lines="\n".join(
            f"- **{what}**: {figure}" for what, figure in headline(report))),
        verdicts="\n".join(f"| {v.name} | **{v.mark}** | {v.detail} |"
                           for v in report.verdicts()),
        machine=pairs(report.machine.rows()), deployment=pairs(report.deployment),
        registered_vehicles=f"{report.registered_vehicles:,}",
        registration_seconds=f"{report.registration_seconds:.0f}",
        state_vehicles=f"{s['state_vehicles']:,}", state_window=str(s["state_window"]),
        seconds=f"{s['seconds']:g}", min_completion=f"{s['min_completion'] * 100:.0f}",
        drain_limit=f"{s['drain_limit']:g}", max_unsustained=str(s["max_unsustained"]),
        level_timeout=f"{s['level_timeout']:g}", ingress_method=ingress_method(report),
        reference_rate=f"{t.reference_rate:g}", agent_ratio=f"{t.agent_ratio:g}",
        large_state=f"{t.state_vehicles:,}")


def ingress_method(report: RunReport) -> str:
    s = report.settings
    shares = s.get("misrouted")
    if not shares:
        return text("method_ingress", how=text("method_ingress_not_run"))
    rate = f"{report.ingress_rate:g} vehicles/s" if report.ingress_rate else "-"
    how = text("method_ingress_rate_given" if s.get("ingress_rate_given")
               else "method_ingress_rate_chosen",
               shares=", ".join(f"{x:g}" for x in shares), rate=rate)
    return text("method_ingress", how=how)


# --- load levels --------------------------------------------------------------------------------

def levels(report: RunReport, latency_png: str | None) -> str:
    lines = [text("latency_plot", path=latency_png), ""] if latency_png else []
    lines.append(table(LEVEL_HEADER, level_rows(report)))
    for rate in report.skipped_levels:
        lines += ["", text("level_skipped", rate=f"{rate:g}")]
    by_level = {f"{o.result.rate:g}": o.result.failures for o in report.levels
                if o.result.failures}
    if by_level:
        lines += ["", text("level_failures", failures="; ".join(
            f"{rate}/s: {failures(c)}" for rate, c in by_level.items()))]
    if report.levels:
        lines += ["", cpu_per_vehicle(report)]
    if any(o.result.send_lag for o in report.levels):
        lines += ["", sender_lag(report)]
    if report.levels:
        lines += ["", records_per_vehicle(report)]
    return "\n".join(lines)


def cpu_per_vehicle(report: RunReport) -> str:
    rows = []
    for o in report.levels:
        done = max(o.result.completed, 1)
        per = [1000 * o.usage.cpu.get(c, 0.0) / done for c in COMPONENTS]
        rows.append([f"{o.result.rate:g}", *(f"{v:.1f}" for v in per), f"{sum(per):.1f}",
                     f"{2000 / sum(per):.0f}" if sum(per) else "-"])
    return text("cpu_per_vehicle", table=table(
        ["offered v/s", "global", "NA", "broker", "Redis", "client", "total",
         "2,000 ms / total (v/s)"], rows))


def sender_lag(report: RunReport) -> str:
    send = ", ".join(f"{o.result.rate:g}/s {summary_ms(o.result.send_lag)['p99']:.1f}"
                     for o in report.levels if o.result.send_lag)
    device = ", ".join(f"{o.result.rate:g}/s {fmt_ms(summary_ms(o.result.device_latency)['p99'])}"
                       for o in report.levels)
    return text("sender_lag", send=send, device=device)


def records_per_vehicle(report: RunReport) -> str:
    first = report.levels[0]
    lines = [text("records_per_topic")]
    lines += [f"- `{topic}`: {first.per_vehicle(count):.2f}"
              for topic, count in sorted(first.records.items()) if count]
    lines += ["", text("records_moved", produced=f"{first.per_vehicle(first.produced):.1f}",
                       consumed=f"{first.per_vehicle(first.consumed):.1f}")]
    return "\n".join(lines)


# --- the other phases ---------------------------------------------------------------------------

def ingress(report: RunReport, ingress_png: str | None) -> str:
    if not report.ingress:
        return text("ingress", body=report.ingress_note or text("ingress_not_run"))
    lines = [text("ingress_intro", rate=f"{report.ingress_rate:g}",
                  seconds=f"{report.settings['seconds']:g}"), ""]
    if ingress_png:
        lines += [text("ingress_plot", path=ingress_png), ""]
    lines += [table(INGRESS_HEADER, ingress_rows(report)), "",
              text("ingress_cost", cost=ingress_cost_line(report))]
    mismatched = [p for p in report.ingress
                  if p.forwarded_total != p.outcome.result.misrouted_records]
    if mismatched:
        lines += ["", text("ingress_mismatch", shares=", ".join(
            f"{p.share:g} ({p.forwarded_total:,} forwarded, "
            f"{p.outcome.result.misrouted_records:,} sent)" for p in mismatched))]
    by_share = {f"{p.share:g}": p.outcome.result.failures for p in report.ingress
                if p.outcome.result.failures}
    if by_share:
        lines += ["", text("ingress_failures", failures="; ".join(
            f"{share}: {failures(c)}" for share, c in by_share.items()))]
    return text("ingress", body="\n".join(lines))


def scale_out(report: RunReport) -> str:
    if not report.scale_out:
        return ""
    best_one = max((o.result.achieved_rate for o in report.levels if o.sustained), default=0.0)
    best_two = max((o.result.achieved_rate for o in report.scale_out if o.sustained),
                   default=0.0)
    return text("scale_out", seconds=f"{report.scale_out_seconds:.0f}",
                table=table(SCALE_OUT_HEADER, scale_out_rows(report)),
                one=f"{best_one:.1f}", two=f"{best_two:.1f}")


def settle_line(samples: list[Sample]) -> str:
    """How long the machine took to settle after the large state's restore, and what kept it
    busy (the run's samples, bench/settle.py)."""
    if not samples:
        return "The levels began as soon as the workers were ready."
    busiest = max(samples, key=lambda s: s.busy_cores)
    most = max(s.writeback_mb for s in samples)
    outcome = (f"settled after {samples[-1].seconds:.0f} s" if settled(samples) else
               f"had not settled after {samples[-1].seconds:.0f} s; the levels began anyway")
    return (f"Before the levels the benchmark waited for the machine to be quiet (under "
            f"{QUIET_CORES} cores busy and {QUIET_WRITEBACK_MB:.0f} MB of dirty pages for "
            f"{QUIET_SAMPLES} s, `bench/settle.py`): it {outcome}. Meanwhile the machine was up "
            f"to {busiest.busy_cores:.2f} cores busy (the broker {busiest.broker_cores:.2f} of "
            f"them), with up to {most:.0f} MB waiting to be written back.")


def large_state(report: RunReport) -> str:
    if not report.large_state:
        return ""
    peaks = ", ".join(f"{name} {fmt_mb(rss)} MB" for name, rss in
                      sorted(report.large_state_rss_peak.items()))
    small = max((o.result.achieved_rate for o in report.levels if o.sustained), default=0.0)
    large = max((o.result.achieved_rate for o in report.large_state if o.sustained),
                default=0.0)
    return text("large_state", vehicles=f"{report.large_state_vehicles:,}",
                write_rate=f"{report.large_state_write_rate:,.0f}",
                ready=f"{report.large_state_ready_seconds:.0f}", peaks=peaks,
                settle=settle_line(report.large_state_settle),
                table=table(LEVEL_HEADER, level_rows(report, report.large_state)),
                small=f"{small:.1f}", large=f"{large:.1f}")


def floor(report: RunReport) -> str:
    if not report.floor:
        return ""
    header = ["records/s", *(f"{c}: µs per record" for c in CLIENTS), "relayed / sent"]
    return text("floor", table=table(header, floor_rows(report)),
                ratio=f"{report.targets.agent_ratio:g}")


def restore(report: RunReport) -> str:
    if report.restore is None or not report.restore.runs:
        return ""
    rows = [[r.mode, f"{r.vehicles:,}", f"{r.records:,}", f"{r.ready_seconds:g}",
             f"{r.records_per_second:,}",
             f"{r.bulk_seconds:g}" if r.bulk_seconds is not None else "—",
             f"{r.cpu_seconds:g}", fmt_mb(r.peak_rss) if r.peak_rss else "—"]
            for r in report.restore.runs]
    return text("restore", write_rate=f"{report.restore.write_records_per_second:,}",
                table=table(["restore", "vehicles", "changelog records", "ready after s",
                             "records/s", "bulk load s", "worker CPU s", "peak RSS MB"], rows))


def standby(report: RunReport) -> str:
    if not report.standby_cost:
        return ""
    rows = [[str(r.standbys), f"{r.completed:,}", f"{r.cpu_ms_per_vehicle:g}",
             f"{r.changelog_records_per_vehicle:g}"] for r in report.standby_cost]
    return text("standby", vehicles=f"{report.standby_cost[0].vehicles:,}",
                table=table(["standbys", "vehicles completed", "worker CPU ms/vehicle",
                             "changelog records applied/vehicle"], rows))


def edge(report: RunReport) -> str:
    e = report.edge
    if e is None or not e.paths:
        return ""
    lines = [text("edge", region=e.region, vehicles=f"{e.vehicles:,}", rate=f"{e.rate:g}",
                  seconds=f"{e.seconds:g}", source=e.settings_from or "the environment"),
             "", table(PATH_HEADER, path_rows(e)), ""]
    found = differences(e)
    if found is not None:
        lines += [text("edge_difference", **found), ""]
    mqtt = e.path("mqtt")
    if mqtt is not None and mqtt.connects:
        opened = summary_ms(mqtt.connects)
        lines += [text("edge_connects", count=f"{len(mqtt.connects):,}", region=e.region,
                       p50=f"{opened['p50']:.0f}", p99=f"{opened['p99']:.0f}",
                       total=f"{sum(mqtt.connects):.1f}", wall=f"{mqtt.wall:.0f}"), ""]
    lines.append(text("edge_load", cores=str(report.machine.logical_cpus), loads="; ".join(
        f"{PATH_NAME.get(p.via, p.via)} {p.load[0]:.1f} (machine busy "
        f"{p.machine_percent:.0f}% of a core, other work {p.other_percent:.0f}%)"
        for p in e.paths)))
    by_path = {PATH_NAME.get(p.via, p.via): p.result.failures for p in e.paths
               if p.result.failures}
    if by_path:
        lines += ["", text("edge_failures", failures="; ".join(
            f"{via}: {failures(c)}" for via, c in by_path.items()))]
    if e.bridges:
        both = combined(e.bridges)
        lines += ["", text("edge_bridges", table=table(BRIDGE_HEADER, bridge_rows(e)),
                           total=f"{both.us_per_message or 0:,.0f}",
                           busy=f"{both.us_per_message_above_idle or 0:,.0f}")]
    return "\n".join(lines)


# --- the relay baseline -------------------------------------------------------------------------

def baseline(report: RunReport) -> str:
    b = report.baseline
    if b is None:
        return text("baseline", body=text("baseline_not_run"))
    per_record = f"{1e6 * b.cpu_seconds / max(b.records, 1):.0f}"
    relay = table(["records moved in the window", "mean value size", "window s",
                   "records/s (median)", "records/s of the 3 runs", "start-up s",
                   "relay CPU s", "CPU µs per record"],
                  [[f"{b.records:,}", f"{b.mean_bytes:.0f} B", f"{b.seconds:.2f}",
                    f"{b.rate:,.0f}", ", ".join(f"{r:,.0f}" for r in b.rates),
                    f"{b.startup_seconds:.2f}", f"{b.cpu_seconds:.2f}", per_record]])
    ratio = report.ratio
    parts = [relay,
             text("baseline_ratio", ratio=f"{ratio:.3f}") if ratio is not None
             else text("baseline_no_ratio"),
             text("baseline_reference", reference=report.baseline_reference),
             vehicles_per_krecords(report)]
    if report.closed_loop_ratio is not None:
        parts.append(text("closed_loop_ratio", ratio=f"{report.closed_loop_ratio:.3f}"))
    pipeline = report.cpu_us_per_record
    if pipeline is not None:
        parts.append(text("cpu_per_record", pipeline=f"{pipeline:.0f}", relay=per_record))
    return text("baseline", body="\n\n".join(parts))


def vehicles_per_krecords(report: RunReport) -> str:
    value, best = report.vehicles_per_krecords, report.highest_sustained_level()
    if value is None or best is None or report.baseline is None:
        return text("vehicles_per_krecords_unknown")
    return text("vehicles_per_krecords", value=f"{value:.2f}", rate=f"{best.result.rate:g}",
                achieved=f"{best.result.achieved_rate:.1f}",
                relay=f"{report.baseline.rate:,.0f}")


# --- memory, the client, the profile, notes -----------------------------------------------------

def memory(report: RunReport, rss_png: str | None) -> str:
    st = report.state
    header = ["worker", "peak RSS (MB)"] + (["RSS after state load (MB)"] if st else [])
    rows = [[k, fmt_mb(v)] + ([fmt_mb(st.rss_after.get(k, 0))] if st else [])
            for k, v in report.rss_peak.items()]
    lines = [text("memory", table=table(header, rows))]
    if st is not None:
        lines += ["", *state_load(report, rss_png)]
    return "\n".join(lines)


def state_load(report: RunReport, rss_png: str | None) -> list[str]:
    assert report.state is not None
    st, t = report.state, report.targets
    r = st.outcome.result
    span = r.ended_at - r.started_at
    lines = [text("state_load", completed=f"{r.completed:,}", vehicles=f"{r.vehicles:,}",
                  seconds=f"{span:.0f}", rate=f"{r.completed / span if span else 0:.1f}",
                  p99=fmt_ms(summary_ms(r.query_latency)["p99"]),
                  window=str(report.settings["state_window"]))]
    if r.failures:
        lines.append(text("state_failures", failures=failures(r.failures)))
    if st.trend:
        lines += ["", rss_trend(report)]
    if rss_png:
        lines += ["", text("state_rss_plot", path=rss_png)]
    if r.completed < t.state_vehicles and report.large_state_vehicles < t.state_vehicles:
        lines += ["", text("state_target_hint", target=f"{t.state_vehicles:,}",
                           vehicles=str(t.state_vehicles))]
    return lines


def rss_trend(report: RunReport) -> str:
    """About ten points of the RSS trend, the last one always."""
    assert report.state is not None
    trend = report.state.trend
    picked = trend[::max(1, len(trend) // 10)]
    if picked[-1] is not trend[-1]:
        picked.append(trend[-1])
    workers = list(report.rss_peak)
    return text("state_rss", table=table(
        ["vehicles in state", *workers],
        [[f"{n:,}", *(fmt_mb(rss.get(w, 0)) for w in workers)] for n, rss in picked]))


def client(report: RunReport) -> str:
    return text("client", cpu=f"{report.client_cpu_seconds:.1f}",
                wall=f"{report.wall_seconds:.0f}")


def profile(report: RunReport) -> str:
    if not report.profiles:
        return text("profile", body=report.profile_note or text("profile_not_run"))
    lines = [profile_phase(report), ""] if report.profile_phase is not None else []
    for one in report.profiles:
        lines += profile_markdown(one)
    return text("profile", body="\n".join(lines))


def profile_phase(report: RunReport) -> str:
    ph = report.profile_phase
    assert ph is not None
    rows = []
    for name in ("global", "regional"):
        total = ph.usage.cpu.get(name, 0.0)
        system = ph.usage.system.get(name, 0.0)
        threads = report.thread_cpu.get(name, {})
        rows.append([name, fmt_pct(ph.usage.percent(name)),
                     f"{100 * system / total:.0f}%" if total else "-",
                     ", ".join(f"{t} {v:.0f}%" for t, v in list(threads.items())[:4])])
    return text(
        "profile_phase", rate=f"{ph.result.rate:g}", seconds=f"{ph.result.window:.0f}",
        achieved=f"{ph.result.achieved_rate:.1f}",
        p99=fmt_ms(summary_ms(ph.result.query_latency)["p99"]),
        **{name: fmt_pct(ph.usage.percent(name))
           for name in ("global", "regional", "broker", "client")},
        other=fmt_pct(ph.usage.other_percent),
        table=table(["worker", "CPU (% of a core)", "of which kernel",
                     "by thread (% of a core; main = event loop)"], rows))


def notes(report: RunReport) -> str:
    if not report.notes:
        return ""
    return text("notes", notes="\n".join(f"- {n}" for n in report.notes))
