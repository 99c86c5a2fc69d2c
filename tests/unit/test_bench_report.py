"""The benchmark page: its text comes from bench/benchmarks.md.tmpl, its figures from the run.

Renders docs/benchmarks.md from small fixed runs (no broker) and checks the lines a reader goes
by: headings, the method, each phase's sentence with its figures, the tables' first rows.
"""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench import page, pipeline_bench
from bench import report as report_module
from bench.client_floor import FloorResult
from bench.deploy import Machine
from bench.loadgen import PhaseResult
from bench.profiles import Profile
from bench.relay import BaselineResult
from bench.report import (
    MB,
    IngressPhase,
    Outcome,
    RunReport,
    StateLoad,
    Targets,
    Usage,
    bare_agent_us,
    console,
    headline,
)
from bench.restore import RestoreReport, RestoreRun
from bench.standby_cost import StandbyRun

T0 = 1000.0


def phase(name: str, rate: float | None, vehicles: int, *, done: int | None = None,
          spread: float = 1.0, misrouted: int = 0) -> PhaseResult:
    """A phase whose vehicles completed evenly over ``spread`` times the sending window."""
    done = vehicles if done is None else done
    window = vehicles / rate if rate else 10.0
    result = PhaseResult(name, rate, vehicles, started_at=T0, send_end=T0 + window,
                         ended_at=T0 + window * spread, completed=done,
                         failed=vehicles - done, misrouted_records=misrouted)
    result.completion_times = [T0 + window * spread * (i + 1) / done for i in range(done)]
    result.query_latency = [0.01 * (i % 50 + 1) for i in range(done)]
    result.vehicle_latency = [0.02 * (i % 50 + 1) for i in range(done)]
    result.device_latency = [0.005 * (i % 50 + 1) for i in range(done)]
    result.send_lag = [0.0005 * (i % 10) for i in range(done)] if rate else []
    if vehicles > done:
        result.failures = Counter({"timeout": vehicles - done})
    return result


def outcome(result: PhaseResult, *, sustained: bool = True, cpu: float = 2.0,
            forwarded: dict[str, int | None] | None = None) -> Outcome:
    wall = result.window + result.drain_seconds
    usage = Usage(wall=wall, cpu={"global": cpu, "regional": cpu * 0.8, "broker": cpu * 0.6,
                                  "redis": 0.05, "client": 0.3},
                  machine=cpu * 2.6 + 1.0, system={"global": cpu / 10, "regional": cpu / 20})
    return Outcome(result=result, usage=usage,
                   records={"p.query": result.vehicles, "p.device.NA": 2 * result.vehicles,
                            "p.unused": 0},
                   consumed=6 * result.vehicles, produced=17 * result.vehicles,
                   rss_peak={"global": 150_000_000, "regional": 120_000_000},
                   sustained=sustained, verdict="" if sustained else "completion 87% of offered",
                   forwarded=forwarded or {})


def machine() -> Machine:
    return Machine(cpu_model="Test CPU", logical_cpus=2, physical_cores=2, memory_gib=8.0,
                   os="Linux 6", python="CPython 3.11.7", packages={"faust-streaming": "0.15.3"},
                   kafka="3.9.1 (pid 1)", redis="7.0.15", load_before=(0.5, 0.25, 0.125))


def bare_report(**settings: object) -> RunReport:
    return RunReport(
        run_id="0101000000", started="2026-01-01 00:00 UTC",
        command="python -m bench.pipeline_bench --levels 50,100",
        make_command="make bench BENCH_ARGS='--levels 50,100'", machine=machine(),
        deployment=[("broker", "127.0.0.1:9092"), ("levels", "50,100 vehicles/s, 10 s each")],
        settings={"region": "NA", "seconds": 10.0, "state_vehicles": 0, "state_window": 500,
                  "drain_limit": 5.0, "min_completion": 0.95, "level_timeout": 60.0,
                  "max_unsustained": 2, "misrouted": [], "ingress_rate_given": False,
                  **settings},
        targets=Targets(), registration_seconds=18.4, registered_vehicles=8000,
        wall_seconds=456.0, client_cpu_seconds=69.04)


def full_report() -> RunReport:
    """Every phase run, with the odd cases: a skipped level, failures, a mismatch."""
    report = bare_report(state_vehicles=2000, misrouted=[0.0, 1.0])
    report.levels = [outcome(phase("50/s", 50, 500)),
                     outcome(phase("100/s", 100, 1000, done=990, spread=1.3), sustained=False)]
    report.skipped_levels = [150.0]
    state = outcome(phase("state", None, 2000, done=1998))
    report.state = StateLoad(state, {"global": 160_000_000, "regional": 129_000_000},
                             [(n, {"global": 149_000_000 + n * 1000, "regional": 109_000_000})
                              for n in range(0, 2000, 100)])
    report.ingress_rate = 50.0
    report.ingress = [
        IngressPhase(0.0, outcome(phase("misrouted 0", 50, 500), cpu=2.0,
                                  forwarded={"global": 0, "regional": 0}), ["p.rerouted"]),
        IngressPhase(1.0, outcome(phase("misrouted 1", 50, 500, done=499, misrouted=1500),
                                  cpu=2.1, forwarded={"global": 500, "regional": None}),
                     ["p.rerouted"]),
    ]
    report.ingress[1].outcome.records["p.rerouted"] = 1497
    report.scale_out = [outcome(phase("2 per role 50/s", 50, 500), cpu=2.4)]
    report.scale_out_seconds = 31.6
    report.floor = [FloorResult("faust", 300, 3000, 3000, 10.0, 4.1),
                    FloorResult("librdkafka", 300, 3000, 3000, 10.0, 0.28)]
    report.restore = RestoreReport(92_845, [
        RestoreRun("bulk", 1_000_000, 4_000_000, 29.54, 135_399, 17.07, 26.0),
        RestoreRun("faust", 25_000, 100_000, 47.64, 2_099, None, 12.1)])
    report.standby_cost = [StandbyRun(1, 1200, 1200, 24.67, 6.29), StandbyRun(0, 1200, 1200,
                                                                             18.3, 0.0)]
    report.baseline = BaselineResult(records=1_477_000, mean_bytes=961.2, seconds=5.0,
                                     cpu_seconds=4.83, delivered=1_477_000,
                                     rates=[323_575.0, 286_285.0, 295_206.0],
                                     startup_seconds=0.11)
    report.baseline_reference = "Pipeline: 3,000 worker-consumed records"
    report.profile_phase = outcome(phase("profile 50/s", 50, 1500))
    report.thread_cpu = {"global": {"main": 40.0, "consumer": 12.0}, "regional": {"main": 30.0}}
    report.profiles = [Profile("global", 31.0, 50, samples=100, waiting=20,
                               threads=Counter({"main": 70, "consumer": 30}),
                               self_by_package=Counter({"faust": 60}),
                               self_by_function=Counter({"select (selectors.py)": 20}))]
    report.rss_peak = {"global": 170_000_000, "regional": 131_000_000}
    report.notes = ["Run beside other work."]
    return report


def render(report: RunReport, findings: str | None = None) -> str:
    return page.markdown(report, "img/pipeline-latency.png", "img/pipeline-state-rss.png",
                         findings, "img/pipeline-ingress.png")


def section(doc: str, heading: str) -> str:
    """From ``heading`` up to the next heading of the same level."""
    level = heading.split(" ")[0]
    start = doc.index(f"\n{heading}\n") + 1
    rest = re.search(rf"^{level} ", doc[start + len(heading):], re.MULTILINE)
    return doc[start:start + len(heading) + rest.start()] if rest else doc[start:]


def test_the_head_names_the_run_and_the_method_its_settings() -> None:
    doc = render(full_report())
    assert doc.startswith("# Benchmarks\n\nWritten by `python -m bench.pipeline_bench` (run it "
                          "again to replace this page). The pipeline runs end to end on one "
                          "broker: the global worker and one regional worker (NA), started")
    assert "\nRun `0101000000`, started 2026-01-01 00:00 UTC, took 7.6 minutes.\n\n```\n" \
           "python -m bench.pipeline_bench --levels 50,100\n```\n" in doc
    assert "| >= 200 vehicles/s sustained | **NOT met** | highest sustained level 50 " \
           "vehicles/s |" in doc
    assert "| load average before the run | 0.50 / 0.25 / 0.12 |" in doc
    assert "\n| broker | 127.0.0.1:9092 |\n| levels | 50,100 vehicles/s, 10 s each |\n" in doc
    method = section(doc, "## Method")
    assert [line.split(" ")[0] for line in method.splitlines() if line[:1].isdigit()] == [
        f"{n}." for n in range(1, 11)]
    assert "(8,000, two devices each: TCU primary + IVI)" in method
    assert "`GET /systems/{system_id}/`. Took 18 s." in method
    assert "(`--state-vehicles`, here 2,000)" in method
    assert "at least 95% of the offered rate, and the backlog drained within 5 s" in method
    assert "ends after 2 unsustained levels, or after a level whose backlog has not drained " \
           "60 s after" in method
    assert "5. **Ingress: misrouted share** (`--misrouted`, here 0, 1; `--ingress-rate`, here " \
           "50 vehicles/s: the highest sustained level, else the lowest level): after" in method


def test_the_levels_section_has_its_table_and_sentences() -> None:
    levels = section(render(full_report()), "## Results by load level")
    assert levels.startswith("## Results by load level\n\n![latency and throughput against "
                             "offered load](img/pipeline-latency.png)\n\n| offered v/s |")
    assert "\n| 50 | 500 | 500 | 0 | 50.0 | 0.0 | yes | " in levels
    assert "| no (completion 87% of offered) |" in levels
    assert "\n\nLevel 150 vehicles/s skipped: lower levels were not sustained " \
           "(`--max-unsustained`) or one's backlog did not drain.\n" in levels
    assert "\n\nFailures by level: 100/s: timeout x10\n" in levels
    assert "\n\nCPU per completed vehicle (ms of CPU time over the whole phase, drain " \
           "included)." in levels
    assert "Sender lag (actual − intended start, p99 per level, ms): 50/s 4.5, 100/s 4.5. " \
           "Device → answer p99 per level (ms): 50/s 250, 100/s 250." in levels
    assert "\n\nRecords per vehicle, by topic (first level):\n- `p.device.NA`: 2.00\n" \
           "- `p.query`: 1.00\n\nWorkers wrote 17.0 records and consumed 6.0 per vehicle." \
           in levels


def test_the_phase_sections_carry_their_figures() -> None:
    doc = render(full_report())
    ingress = section(doc, "## Ingress: misrouted share")
    assert "One open-loop phase per share at 50 vehicles/s offered, 10 s each" in ingress
    assert "](img/pipeline-ingress.png)\n\n| misrouted share |" in ingress
    assert "\n\nExtra worker CPU per misrouted record: " in ingress
    assert "Forwarded records differ from the misrouted records the client sent at share 1 " \
           "(1,497 forwarded, 1,500 sent): a vehicle" in ingress
    assert ingress.rstrip().endswith("Failures by share: 1: timeout x1")
    scale = section(doc, "## Scale-out: two workers per role")
    assert "idle after 32 s); then the same levels ran again." in scale
    assert scale.rstrip().endswith("Highest sustained level: 50.0 vehicles/s with one worker "
                                   "per role, 50.0 with two.")
    floor = section(doc, "## Client floor: a bare relay on each Kafka client")
    assert "\n| 300 | 1,367 | — | 93 | faust 3,000/3,000, librdkafka 3,000/3,000 |\n" in floor
    assert floor.rstrip().endswith("Guard rail for the pipeline: each worker's CPU per "
                                   "consumed record at most 1.25 times the `faust` figure at "
                                   "the records/s that worker consumed (Targets; Method, step "
                                   "10).")
    restore = section(doc, "## Restore: a global worker on an empty disk")
    assert "four records a vehicle, written at 92,845 records/s;" in restore
    assert "\n| faust | 25,000 | 100,000 | 47.64 | 2,099 | — | 12.1 |" in restore
    standby = section(doc, "## Standby tables: what they cost")
    assert standby.startswith("## Standby tables: what they cost\n\nTwo workers per role, "
                              "1,200 vehicles at a paced rate")
    assert "\n| 0 | 1,200 | 18.3 | 0 |" in standby


def test_the_baseline_memory_client_profile_and_notes() -> None:
    doc = render(full_report(), findings="## Analysis\n\nWhat it means.\n")
    baseline = section(doc, "## Baseline: consume → produce relay")
    assert "\n| 1,477,000 | 961 B | 5.00 | 295,400 | 323,575, 286,285, 295,206 | 0.11 | 4.83 " \
           "| 3 |\n\n**Pipeline / baseline = 0.001**" in baseline
    assert "\n\nPipeline: 3,000 worker-consumed records.\n\n**Sustained vehicles/s per 1,000 " \
           "relay records/s = 0.17**\n\nThe highest sustained level (50 vehicles/s) achieved " \
           "50.0 vehicles/s; the relay moved 295,400 records/s.\n\nClosed-loop state load " \
           "against the same baseline: 0.004." in baseline
    assert "\n\nCPU per worker-consumed record at the reference level: 1200 µs (both " \
           "workers), against 3 µs per record for the relay." in baseline
    memory = section(doc, "## Memory")
    assert "\n| global | 170 | 160 |\n" in memory
    assert "\n\nState load: 1,998 of 2,000 vehicles provisioned in 10 s (199.8 vehicles/s " \
           "closed loop, query p99 500 ms with up to 500 vehicles in flight).\nFailures: " \
           "timeout x2.\n\nRSS while loading (MB):\n\n| vehicles in state | global | " \
           "regional |\n" in memory
    assert "\n| 1,900 | 151 | 109 |\n\n![worker RSS while loading state]" \
           "(img/pipeline-state-rss.png)\n\nFor the 1,000,000-vehicle figure run with " \
           "`--state-vehicles 1000000` (registration" in memory
    assert "The benchmark process used 69.0 CPU seconds over 456 s" in doc
    profile = section(doc, "## Profile")
    assert profile.startswith("## Profile\n\npy-spy sampled both workers during an extra, "
                              "unscored open-loop phase at 50 vehicles/s for 30 s")
    assert "\n| global | 7% | 10% | main 40%, consumer 12% |\n" in profile
    assert "how much they used.\n\n#### global worker: 100 busy samples in 31 s at 50 Hz" \
           in profile
    assert doc.endswith("\n\n## Notes on this run\n\n- Run beside other work.\n\n## Analysis"
                        "\n\nWhat it means.\n")


def test_a_run_without_phases_says_what_did_not_run() -> None:
    doc = page.markdown(bare_report(), None, None, None)
    assert "5. **Ingress: misrouted share** (`--misrouted`, not run in this run): after" in doc
    assert "## Ingress: misrouted share\n\nNot run (`--misrouted ''`).\n" in doc
    assert "## Baseline: consume → produce relay\n\nNot run.\n" in doc
    assert "## Profile\n\nNot run (`--profile`).\n" in doc
    assert "## Results by load level\n\n| offered v/s |" in doc
    for absent in ("## Scale-out", "## Client floor", "## Restore", "## Standby", "## Notes",
                   "Records per vehicle", "State load:", "![", "$"):
        assert absent not in doc
    assert doc.endswith("per level its share is in the CPU client column above.\n\n"
                        "## Profile\n\nNot run (`--profile`).\n")


def test_notes_set_by_the_run_replace_the_default_sentences() -> None:
    report = bare_report(misrouted=[0.0, 1.0], ingress_rate_given=True)
    report.ingress_rate = 80.0
    report.ingress_note = "Not run: with one partition per topic no record can be misrouted."
    report.profile_note = "Not run: py-spy was not found."
    report.baseline = BaselineResult(10, 900.0, 5.0, 0.1, 10, [2.0], 0.1)
    doc = render(report)
    assert "(`--misrouted`, here 0, 1; `--ingress-rate`, here 80 vehicles/s): after" in doc
    assert "## Ingress: misrouted share\n\nNot run: with one partition per topic" in doc
    assert "## Profile\n\nNot run: py-spy was not found.\n" in doc
    assert "\n\nRatio not available.\n\n.\n\nSustained vehicles/s per 1,000 relay records/s: " \
           "not available (no level sustained).\n" in doc


def test_every_section_of_the_template_is_used_and_none_is_missing() -> None:
    names = set(page.sections())
    source = Path(page.__file__).read_text(encoding="utf-8")
    used = {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"[a-z_]+", node.value)}
    assert {n for n in used if n in names} == names
    calls = set(re.findall(r'text\(\s*"([a-z_]+)"', source))
    assert calls <= names


def test_a_figure_the_template_names_must_be_given() -> None:
    with pytest.raises(KeyError):
        page.text("client", cpu="1.0")


def test_a_run_saved_before_bench_was_a_package_renders_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pickles of such runs name the modules bare ("report.RunReport"): pickle one that way.
    report = bare_report()
    del report.__dict__["standby_cost"]  # a field added after the run was saved
    for name, module in (("report", report_module), ("deploy", sys.modules["bench.deploy"])):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(RunReport, "__module__", "report")
    monkeypatch.setattr(Targets, "__module__", "report")
    monkeypatch.setattr(Machine, "__module__", "deploy")
    data = pickle.dumps(report)
    monkeypatch.undo()
    assert b"bench.report" not in data and b"bench.deploy" not in data
    run = tmp_path / "out" / report.run_id
    run.mkdir(parents=True)
    (run / "report.pickle").write_bytes(data)
    loaded = pipeline_bench.load_report(run)
    assert type(loaded) is RunReport and loaded.standby_cost == []
    assert page.markdown(loaded, None, None, None) == page.markdown(bare_report(), None, None,
                                                                    None)


def test_render_rewrites_the_page_from_a_saved_run(tmp_path: Path) -> None:
    # The command docs/development.md gives, as a module of the checkout: plots, page, findings.
    report = full_report()
    run = tmp_path / "out" / report.run_id
    run.mkdir(parents=True)
    (run / "report.pickle").write_bytes(pickle.dumps(report))
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bench.pipeline_bench", "--render", report.run_id,
         "--out", str(tmp_path / "out"), "--doc", str(doc)],
        cwd=Path(pipeline_bench.__file__).parents[1], capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "pipeline benchmark 0101000000: global + NA workers" in done.stdout
    text = doc.read_text(encoding="utf-8")
    findings = pipeline_bench.FINDINGS.read_text(encoding="utf-8").strip()
    assert text.endswith("\n\n" + findings + "\n")
    # the profile is summarised again from its raw samples, absent here
    assert "#### global worker: 0 busy samples in 31 s at 50 Hz" in text
    assert sorted(p.name for p in (doc.parent / "img").iterdir()) == [
        "pipeline-ingress.png", "pipeline-latency.png", "pipeline-state-rss.png"]
    assert "![latency and throughput against offered load](img/pipeline-latency.png)" in text


def test_the_recorded_command_runs_the_module() -> None:
    exact, make = pipeline_bench.command_line(["--levels", "50,100", "--note", "a b"])
    assert exact.endswith(" -m bench.pipeline_bench --levels 50,100 --note 'a b'")
    assert make == "make bench BENCH_ARGS='--levels 50,100 --note a b'"
    # the checkout's interpreter is named from the checkout, any other one in full
    interpreter = exact.split(" -m ")[0].split(" ")[-1]
    assert Path(pipeline_bench.REPO, interpreter).resolve() == Path(sys.executable).resolve()
    assert not Path(sys.executable).is_relative_to(pipeline_bench.REPO) or \
        not Path(interpreter).is_absolute()


def test_the_run_says_whether_a_worker_rejoined_its_group_under_load() -> None:
    report = full_report()
    quiet = pipeline_bench.rejoins_note(report, 2000)
    assert quiet.startswith(f"No worker rejoined its group during the "
                            f"{len(report.levels) + len(report.scale_out)} paced phases")
    report.levels[-1].rejoins = 2
    evicted = pipeline_bench.rejoins_note(report, 2000)
    assert f"during {report.levels[-1].result.name} (2)" in evicted
    assert "kafka.session_timeout_ms = 2000" in evicted


# --- the targets and the headline ---------------------------------------------------------------

def level(rate: float, *, sustained: bool = True, cpu: float = 2.0, query_s: float = 0.1,
          consumed_by: dict[str, int] | None = None) -> Outcome:
    """A level of ``rate`` vehicles/s over 10 s, drained at once: every query answered in
    ``query_s``; ``consumed_by`` also sets the records consumed in all."""
    o = outcome(phase(f"{rate:g}/s", rate, round(rate * 10)), sustained=sustained, cpu=cpu)
    o.result.query_latency = [query_s] * o.result.completed
    if consumed_by is not None:
        o.consumed_by, o.consumed = consumed_by, sum(consumed_by.values())
    return o


def judged(*levels: Outcome, floor: list[FloorResult] | None = None) -> RunReport:
    report = bare_report()
    report.levels = list(levels)
    report.floor = floor or []
    return report


def verdict(report: RunReport, starts: str) -> tuple[bool | None, str]:
    found = [v for v in report.verdicts() if v.name.startswith(starts)]
    assert len(found) == 1, [v.name for v in report.verdicts()]
    return found[0].met, found[0].detail


def agent(rate: float, us: float, client: str = "faust") -> FloorResult:
    """A client floor point: ``us`` µs of CPU per record at ``rate`` records/s."""
    return FloorResult(client, rate, 1000, 1000, 10.0, us * 1000 / 1e6)


FLOOR = [agent(100, 800), agent(10_000, 200), agent(1000, 50, client="librdkafka")]


def test_the_targets_follow_the_performance_issue_without_the_relay_ratio() -> None:
    t = Targets()
    assert (t.rate, t.reference_rate, t.cpu_ms, t.p99_ms, t.agent_ratio, t.rss_mb,
            t.state_vehicles) == (200.0, 100.0, 9.0, 150.0, 1.25, 500.0, 1_000_000)
    assert not hasattr(t, "ratio") and not hasattr(t, "cpu_us_per_record")
    names = [v.name for v in bare_report().verdicts()]
    assert names == [">= 200 vehicles/s sustained",
                     "worker CPU per vehicle <= 9 ms at 100 vehicles/s",
                     "query p99 <= 150 ms at 100 vehicles/s",
                     "peak RSS per worker <= 500 MB with 1,000,000 vehicles of state",
                     "with 1,000,000 vehicles of state: sustained level and p99 at 100/s "
                     "within 10% of the small state's",
                     "pipeline ÷ bare agent <= 1.25, each worker at its own rate"]


def test_the_target_options_default_to_the_targets() -> None:
    a = pipeline_bench.parse_args([])
    assert Targets(rate=a.target_rate, p99_ms=a.target_p99_ms, rss_mb=a.target_rss_mb,
                   state_vehicles=a.target_state, reference_rate=a.target_cpu_rate,
                   cpu_ms=a.target_cpu_ms, agent_ratio=a.target_agent_ratio) == Targets()
    with pytest.raises(SystemExit):
        pipeline_bench.parse_args(["--target-ratio", "0.035"])


def test_the_rate_target_goes_by_the_highest_sustained_level() -> None:
    met, detail = verdict(judged(level(100), level(200), level(300, sustained=False)), ">=")
    assert (met, detail) == (True, "highest sustained level 200 vehicles/s")
    met, detail = verdict(judged(level(100), level(150, sustained=False), level(200,
                                                                            sustained=False)),
                          ">=")
    assert (met, detail) == (False, "highest sustained level 100 vehicles/s")
    met, detail = verdict(judged(level(100, sustained=False)), ">=")
    assert (met, detail) == (False, "no level was sustained")
    met, detail = verdict(judged(level(50), level(150)), ">=")
    assert met is None
    assert detail == "every level was sustained but none reached 200/s; add higher --levels"


def test_worker_cpu_per_vehicle_is_judged_at_the_reference_rate() -> None:
    # 1,000 vehicles at 100/s: global 4 s = 4.0 ms a vehicle, regional 3.2 s = 3.2 ms
    met, detail = verdict(judged(level(50, cpu=9.0), level(100, cpu=4.0)), "worker CPU")
    assert met is True
    assert detail == "7.2 ms per completed vehicle (global 4.0, regional 3.2)"
    met, detail = verdict(judged(level(100, cpu=5.5, sustained=False)), "worker CPU")
    assert met is False
    assert detail == "9.9 ms per completed vehicle (global 5.5, regional 4.4), level not sustained"
    met, detail = verdict(judged(level(50), level(150)), "worker CPU")
    assert (met, detail) == (None, "no level at 100 vehicles/s (--levels)")
    report = judged(level(50, cpu=1.0))
    report.targets.reference_rate = 50.0  # --target-cpu-rate 50
    assert verdict(report, "worker CPU per vehicle <= 9 ms at 50 vehicles/s")[0] is True


def test_the_query_p99_counts_at_the_reference_rate_on_a_sustained_level() -> None:
    met, detail = verdict(judged(level(100, query_s=0.12), level(200, query_s=2.0)), "query")
    assert (met, detail) == (True, "p99 120 ms")
    met, detail = verdict(judged(level(100, query_s=0.2)), "query")
    assert (met, detail) == (False, "p99 200 ms")
    met, detail = verdict(judged(level(100, query_s=0.12, sustained=False)), "query")
    assert (met, detail) == (False, "p99 120 ms, level not sustained")
    met, detail = verdict(judged(level(50, query_s=0.01)), "query")
    assert (met, detail) == (None, "no level at 100 vehicles/s (--levels)")


def test_peak_rss_from_the_large_state_phase() -> None:
    report = judged(level(100))
    report.rss_peak = {"global": 150 * MB, "regional": 120 * MB}
    report.large_state_vehicles = 1_000_000
    report.large_state_rss_peak = {"global": 480 * MB, "regional": 350 * MB}
    met, detail = verdict(report, "peak RSS")
    assert (met, detail) == (True, "peak 480 MB (global) with 1,000,000 vehicles of state")
    report.large_state_rss_peak["regional"] = 612 * MB
    met, detail = verdict(report, "peak RSS")
    assert (met, detail) == (False, "peak 612 MB (regional) with 1,000,000 vehicles of state")


def test_peak_rss_without_enough_large_state_falls_back_to_the_state_load() -> None:
    report = full_report()  # 1,998 vehicles loaded, the run's peak 170 MB
    report.large_state_vehicles = 500_000
    report.large_state_rss_peak = {"global": 300 * MB}
    met, detail = verdict(report, "peak RSS")
    assert met is None
    assert detail == "only 1,998 vehicles loaded (--state-vehicles); peak 170 MB (global)"
    report.targets.state_vehicles = 1000  # a state load that reached the figure ...
    report.large_state_rss_peak = {}  # ... and a large-state phase without its peaks
    met, detail = verdict(report, "peak RSS")
    assert (met, detail) == (True, "peak 170 MB (global) with 1,998 vehicles loaded")


def test_peak_rss_is_extrapolated_but_not_judged_from_a_long_enough_trend() -> None:
    report = full_report()
    report.targets.state_vehicles = 10_000  # the trend reaches 1,900: more than a tenth
    met, detail = verdict(report, "peak RSS")
    assert met is None
    assert detail.endswith("; a straight line through the RSS trend gives global ~159 MB, "
                           "regional ~109 MB at 10,000 (extrapolated, not measured)")


def test_the_bare_agent_s_cost_is_linear_in_log_rate_between_the_floor_s_rates() -> None:
    assert bare_agent_us(FLOOR, 1000) == pytest.approx((500.0, False))  # log-midway: halfway
    assert bare_agent_us(FLOOR, 100) == pytest.approx((800.0, False))
    assert bare_agent_us(FLOOR, 10_000) == pytest.approx((200.0, False))
    three = [agent(300, 600), agent(2400, 300), agent(19_200, 150)]
    assert bare_agent_us(three, 4800) == pytest.approx((300 - 150 / 3, False))


def test_outside_the_floor_s_rates_the_nearest_one_counts() -> None:
    assert bare_agent_us(FLOOR, 40) == pytest.approx((800.0, True))
    assert bare_agent_us(FLOOR, 50_000) == pytest.approx((200.0, True))
    assert bare_agent_us([agent(2400, 300)], 1000) == pytest.approx((300.0, True))
    assert bare_agent_us([agent(1000, 50, client="librdkafka")], 1000) is None
    assert bare_agent_us([], 1000) is None


def test_each_worker_is_held_against_the_bare_agent_at_its_own_rate() -> None:
    # 10 s at 100/s. global: 10,000 records = 1,000/s, 5 s CPU = 500 µs a record; the agent's
    # 500 µs there. regional: 10,000 records, 4 s = 400 µs against the same 500 µs.
    ref = level(100, cpu=5.0, consumed_by={"global": 10_000, "regional": 10_000})
    met, detail = verdict(judged(level(50, cpu=50.0), ref, floor=FLOOR), "pipeline")
    assert met is True
    assert detail == ("at the 100 vehicles/s level: global 1.00 at 1,000 records/s (500 µs per "
                      "record against the agent's 500 µs); regional 0.80 at 1,000 records/s "
                      "(400 µs per record against the agent's 500 µs)")


def test_the_bare_agent_guard_rail_fails_on_one_worker_over_the_ratio() -> None:
    # regional: 5,000 records = 500/s, 4 s = 800 µs a record; the agent's at 500/s:
    # 800 - 600 * log(5) / log(100) = 590 µs, a ratio of 1.36
    ref = level(100, cpu=5.0, consumed_by={"global": 10_000, "regional": 5000})
    met, detail = verdict(judged(ref, floor=FLOOR), "pipeline")
    assert met is False
    assert "; regional 1.36 at 500 records/s (800 µs per record against the agent's 590 µs)" \
        in detail


def test_without_a_count_per_worker_each_gets_half_the_consumed_records() -> None:
    ref = level(100, cpu=5.0)
    ref.consumed = 20_000
    report = judged(ref, floor=[agent(2400, 400)])
    met, detail = verdict(report, "pipeline")
    assert met is True  # 500 and 400 µs against 400 µs at the nearest rate: 1.25 and 1.00
    assert detail == ("at the 100 vehicles/s level: global 1.25 at 1,000 records/s (500 µs per "
                      "record against the agent's 400 µs, at the floor's nearest rate); "
                      "regional 1.00 at 1,000 records/s (400 µs per record against the agent's "
                      "400 µs, at the floor's nearest rate); records not counted per worker: "
                      "half the consumed records each")


def test_the_bare_agent_guard_rail_is_not_measured_without_its_inputs() -> None:
    ref = level(100, consumed_by={"global": 10_000, "regional": 10_000})
    assert verdict(judged(ref), "pipeline") == (
        None, "no faust figures in the client floor (--floor-rates)")
    librdkafka_only = [agent(1000, 50, client="librdkafka")]
    assert verdict(judged(ref, floor=librdkafka_only), "pipeline")[0] is None
    assert verdict(judged(level(50), floor=FLOOR), "pipeline") == (
        None, "no level at 100 vehicles/s (--levels)")
    idle = level(100, cpu=5.0, consumed_by={"global": 10_000, "regional": 0})
    met, detail = verdict(judged(idle, floor=FLOOR), "pipeline")
    assert met is None and detail.endswith("; regional: no records consumed")


def test_the_headline_with_every_figure_measured() -> None:
    report = judged(level(50, query_s=0.08),
                    level(100, cpu=5.0, consumed_by={"global": 10_000, "regional": 10_000}),
                    level(150, sustained=False), floor=FLOOR)
    assert headline(report) == [
        ("Sustained", "100 vehicles/s, the highest sustained level (achieved 100.0 vehicles/s)"),
        ("Worker CPU per vehicle at 100 vehicles/s", "9.0 ms (global 5.0 ms, regional 4.0 ms)"),
        ("Pipeline ÷ bare agent", "global 1.00 at 1,000 records/s, regional 0.80 at 1,000 "
                                  "records/s (the 100 vehicles/s level)"),
        ("Query p99 at half the sustained rate", "80 ms at the 50 vehicles/s level (half the "
                                                 "highest sustained rate, 100)")]


def test_the_headline_takes_the_level_nearest_below_half_the_sustained_rate() -> None:
    report = judged(level(40, query_s=0.03), level(80, query_s=0.05), level(150))
    p99 = dict(headline(report))["Query p99 at half the sustained rate"]
    assert p99 == "30 ms at the 40 vehicles/s level (the nearest below 75, half the highest " \
                  "sustained rate, 150)"
    report.levels[0].sustained = False
    p99 = dict(headline(report))["Query p99 at half the sustained rate"]
    assert p99.endswith("; not sustained")


def test_the_headline_says_what_was_not_measured() -> None:
    report = judged(level(50, sustained=False), level(150, sustained=False))
    assert headline(report) == [
        ("Sustained", "none of the levels was sustained"),
        ("Worker CPU per vehicle at 100 vehicles/s",
         "not measured (no level at 100 vehicles/s)"),
        ("Pipeline ÷ bare agent", "not measured (no level at 100 vehicles/s)"),
        ("Query p99 at half the sustained rate", "not measured (no level sustained)")]
    report = judged(level(100), level(200))
    lines = dict(headline(report))
    assert lines["Pipeline ÷ bare agent"] == "not measured (no client floor)"
    assert lines["Query p99 at half the sustained rate"].startswith("100 ms at the 100 ")
    assert dict(headline(judged(level(100))))["Query p99 at half the sustained rate"] == \
        "not measured (no level at or below 50 vehicles/s)"
    assert dict(headline(bare_report()))["Sustained"] == "not measured (no level)"
    lines = dict(headline(judged(level(100, cpu=5.0), floor=FLOOR)))
    assert lines["Pipeline ÷ bare agent"].endswith(
        "; records not counted per worker: half each")
    idle = level(100, consumed_by={"global": 0, "regional": 0})
    assert dict(headline(judged(idle, floor=FLOOR)))["Pipeline ÷ bare agent"] == \
        "not measured (the workers consumed no records)"


def test_the_page_and_the_console_show_the_headline_before_the_targets() -> None:
    report = full_report()
    lines = [f"{what}: {figure}" for what, figure in headline(report)]
    doc = render(report)
    block = "\n".join(f"- **{what}**: {figure}" for what, figure in headline(report))
    assert "own app prefix, topics and state).\n\nIn short (the targets below say what each " \
           f"is judged against):\n\n{block}\n\nRun `0101000000`" in doc
    assert doc.index(block) < doc.index("## Targets")
    out = console(report).splitlines()
    first_target = next(i for i, line in enumerate(out) if line.startswith("target "))
    assert out[first_target - 1 - len(lines):first_target - 1] == lines


def test_a_run_saved_before_the_new_targets_renders_with_their_defaults(
        tmp_path: Path) -> None:
    report = full_report()
    old_targets = Targets(rate=400.0, state_vehicles=100_000)
    for name in ("reference_rate", "cpu_ms", "agent_ratio"):
        del old_targets.__dict__[name]
    old_targets.__dict__.update(ratio=0.035, cpu_us_per_record=400.0)  # since dropped
    report.targets = old_targets
    for name in ("large_state_vehicles", "large_state_rss_peak"):
        del report.__dict__[name]
    for o in report.levels:
        del o.__dict__["consumed_by"]
    run = tmp_path / report.run_id
    run.mkdir()
    (run / "report.pickle").write_bytes(pickle.dumps(report))
    loaded = pipeline_bench.load_report(run)
    assert loaded.large_state_rss_peak == {} and loaded.levels[1].consumed_by == {}
    assert loaded.targets.reference_rate == 100.0 and loaded.targets.rate == 400.0
    assert "| >= 400 vehicles/s sustained | **NOT met** |" in render(loaded)


def large_state_report(large_p99_scale: float, large_sustained: bool = True) -> RunReport:
    report = bare_report()
    report.levels = [outcome(phase("100/s", 100, 1500)), outcome(phase("150/s", 150, 2250))]
    slow = phase("large state 100/s", 100, 1500)
    slow.query_latency = [v * large_p99_scale for v in slow.query_latency]
    report.large_state = [outcome(slow),
                          outcome(phase("large state 150/s", 150, 2250),
                                  sustained=large_sustained)]
    report.large_state_vehicles = 1_000_000
    report.large_state_rss_peak = {"global": 400_000_000, "regional": 300_000_000}
    report.large_state_ready_seconds = 41.0
    report.large_state_write_rate = 91_000.0
    return report


def test_a_large_state_within_ten_percent_of_the_small_one_meets_its_target() -> None:
    verdict = large_state_report(1.05).large_state_verdict()
    assert verdict.met is True
    assert verdict.detail == ("highest sustained 150 vs 150 vehicles/s; p99 525 vs 500 ms at "
                              "100/s")


def test_a_large_state_slower_by_more_than_ten_percent_does_not() -> None:
    assert large_state_report(1.2).large_state_verdict().met is False
    # the 150/s level not sustained on the large state: 100 < 0.9 x 150
    assert large_state_report(1.0, large_sustained=False).large_state_verdict().met is False


def test_a_run_without_the_large_state_does_not_measure_it() -> None:
    report = large_state_report(1.0)
    report.large_state_vehicles = 20_000
    assert report.large_state_verdict().met is None


def test_the_large_state_section_shows_its_levels_restart_and_memory() -> None:
    doc = page.large_state(large_state_report(1.0))
    assert doc.startswith("## A large state: 1,000,000 vehicles")
    assert "at 91,000 records/s" in doc and "ready after 41 s" in doc
    assert "Peak RSS from the restart to the end: global 400 MB, regional 300 MB." in doc
    assert "| large state 100/s |" not in doc and "| 100 | 1,500 |" in doc
    assert "Highest sustained level: 150.0 vehicles/s with the levels' own state, 150.0 with " \
           "1,000,000 vehicles." in doc
    assert page.large_state(bare_report()) == ""


def test_a_kafka_setting_to_try_is_read_as_toml_reads_it() -> None:
    from bench.deploy import setting
    assert setting("fetch_min_bytes=16384") == ("fetch_min_bytes", 16384)
    assert setting(" static_membership = true ") == ("static_membership", True)
    assert setting('producer_client="aiokafka"') == ("producer_client", "aiokafka")
    assert setting("producer_client=aiokafka") == ("producer_client", "aiokafka")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        setting("fetch_min_bytes")


def test_floor_waits_for_a_new_topic_the_metadata_does_not_list_yet() -> None:
    """Just after its creation a topic can be missing from the broker's metadata for a moment:
    the floor waits for it instead of failing the whole benchmark."""
    from bench.client_floor import _await_leaders
    from bench.deploy import TopicUnknown

    class NewTopicBroker:
        asked = 0

        def end_offsets(self, topics: list[str]) -> dict[str, int]:
            self.asked += 1
            if self.asked < 3:
                raise TopicUnknown(f"topic {topics[0]}: UNKNOWN_TOPIC_OR_PART")
            return dict.fromkeys(topics, 0)

    broker = NewTopicBroker()
    _await_leaders(broker, ["in", "out"])  # type: ignore[arg-type]
    assert broker.asked == 3
