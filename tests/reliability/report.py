"""Render the reliability suite's figures (JSON Lines, one row per scenario) as
docs/reliability.md: `python -m tests.reliability.report RESULTS.jsonl COMMAND [BROKERS] >
docs/reliability.md` (docs/reliability-3-brokers.md for a run on three brokers)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

INVARIANTS = ("vehicles", "provisioned", "lost_answers", "conflicting_answers",
              "duplicate_events", "lifecycle_records", "audit")


# One section of prose per scenario that ran, its figures filled in from the scenario's row.
SECTIONS = (
    ("test_sigkill_workers_at_random_moments", "Crashes",
     "{kills} SIGKILLs of the global and the regional worker at random moments, {restarts} "
     "restarts. Recovery (restart until `/health` is ready, tables recovered from the "
     "changelog): median {recovery_seconds_median} s, max {recovery_seconds_max} s (the "
     "group's session timeout for the dead member, `kafka.session_timeout_ms`, is part of it)."),
    ("test_one_of_two_workers_per_role_sigkilled", "One of two workers per role lost",
     "Two workers per role, standby tables on; at a third of the run one global and one NA "
     "worker SIGKILLed and not restarted. Their partitions moved to the survivors in "
     "{partitions_moved_seconds} s (kill until each survivor is ready and holds every input "
     "partition). Longest wait for an answer: query {longest_query_answer_seconds} s, device "
     "{longest_device_answer_seconds} s."),
    ("test_rolling_restart_of_every_worker", "Rolling restart",
     "Two workers per role; each of the four stopped (SIGTERM) and started again in turn, the "
     "next once the group had settled, while the fleet went on. Slowest restart to ready: "
     "{ready_after_start_seconds_max} s. Longest wait for an answer: query "
     "{longest_query_answer_seconds} s, device {longest_device_answer_seconds} s."),
    ("test_a_worker_replaced_by_one_with_an_empty_disk", "Empty disk",
     "The global worker SIGKILLed at a third of the run and replaced by one with an empty state "
     "directory, with {state_vehicles} vehicles of state besides the fleet's ({state_records} "
     "changelog records). Ready {ready_seconds} s after its start; the bulk restore read "
     "{bulk_restored_records} records in {bulk_restore_seconds} s. Longest wait for an answer: "
     "query {longest_query_answer_seconds} s, device {longest_device_answer_seconds} s."),
    ("test_scale_out_and_back_during_a_run", "Scaling",
     "1 → {workers_per_role_max} → 1 workers per role during the run. Time to settle (every "
     "worker ready and the role's input partitions all assigned again): scale-out "
     "{settle_seconds_scale_out} s (includes starting the new processes), scale-back "
     "{settle_seconds_scale_back} s."),
    ("test_broker_restart_in_the_middle_of_a_run", "Broker restart",
     "Broker stopped and started again mid-run: {broker_down_seconds} s from stop to ready. "
     "Workers stayed up and caught up."),
    ("test_redis_outage_of_ten_seconds", "Redis outage",
     "Redis down {redis_down_seconds} s mid-run: identity operations retried with backoff and "
     "completed; every vehicle's regional identity exists and its primary's global identity is "
     "gone."),
)


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


# The three-broker scenarios (tests/reliability/test_brokers.py): what each did, and the target
# of its longest first answer.
BROKER_SCENARIOS = (
    ("test_no_harm_baseline", "none: the quick fleet alone, for comparison", ""),
    ("test_one_broker_sigkilled_quick", "the broker leading the most request and changelog "
     "partitions SIGKILLed (quick)", 10),
    ("test_leader_of_most_partitions_sigkilled_brought_back_then_another", "that broker "
     "SIGKILLed, brought back, then the next one SIGKILLed", 10),
    ("test_rolling_restart_of_every_broker", "each broker stopped (SIGTERM) and started in "
     "turn", 5),
    ("test_active_controller_sigkilled", "the active controller SIGKILLed", 10),
)


def _listed(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


LONGEST = ("longest_query_answer_seconds", "longest_device_answer_seconds")
HARMLESS = ("lost_answers", "dead_letters", "worker_restarts")  # each must be 0


def target_met(row: dict[str, Any], target: float) -> str:
    """Whether the scenario met its target, read from its figures: the longest first answer of
    every kind at most ``target`` seconds, nothing lost or dead-lettered, no worker restarted.
    A figure the scenario never wrote (it failed before checking it) counts as not met; no
    answer figure at all: "?" (it failed before the fleet ran)."""
    answers = [row[key] for key in LONGEST if key in row]
    if not answers:
        return "?"
    clean = all(row.get(key) == 0 for key in HARMLESS)
    return "yes" if clean and max(answers) <= target else "no"


def brokers_section(by_name: dict[str, dict[str, Any]]) -> list[str]:
    """The three-broker scenarios: the harm, the longest first answers against the target."""
    ran = [(name, harm, target) for name, harm, target in BROKER_SCENARIOS if name in by_name]
    if not ran:
        return []
    out = ["## Brokers lost and restarted", "",
           "Three brokers, every topic with replication factor 3 and min.insync.replicas 2, "
           "every producer with acks=all and idempotence; the quick fleet and the baseline are "
           "offered at 40 vehicles/s, the longer scenarios at 20 for longer. The longest wait for "
           "a first answer "
           "is measured per kind of request from the moment the fleet sent it; leaders moved is "
           "the time from the SIGKILL (for the active controller, from the election of the next "
           "one) until no partition of the deployment is led by the dead broker (the controller "
           "fences it after `broker.session.timeout.ms`, 4 s on the local stack). Dead letters "
           "and worker restarts must be 0 (a row without them failed before they were checked). "
           "Met: the longest answer of each kind within the "
           "target, no answer lost, nothing dead-lettered, no worker restarted (a figure the "
           "scenario did not get to write counts as not met). The longest answers follow the "
           "machine's load as much as the harm: the baseline row is the same fleet with nothing "
           "harmed; load is the machine's 1-minute load average when the scenario ended "
           f"({os.cpu_count()} cores).", "",
           _row(["scenario", "harm", "longest query answer s", "longest device answer s",
                 "target s", "met", "load", "leaders moved s", "back in sync s",
                 "dead letters", "workers restarted"]),
           _row(["---"] * 11)]
    for name, harm, target in ran:
        row = by_name[name]
        out.append(_row([name.removeprefix("test_"), harm,
                         row.get("longest_query_answer_seconds", ""),
                         row.get("longest_device_answer_seconds", ""), target,
                         "" if target == "" else target_met(row, target),
                         row.get("load_average", ""),
                         _listed(row.get("leaders_moved_seconds", "")),
                         _listed(row.get("in_sync_seconds", row.get("first_in_sync_seconds",
                                                                       ""))),
                         row.get("dead_letters", "?"), row.get("worker_restarts", "?")]))
    return [*out, "", *timelines([(name, by_name[name]) for name, _, _ in ran])]


def timelines(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Each scenario's harm and its slowest first answers on the fleet's clock (seconds since
    the fleet started): which harm a stall followed."""
    timed = [(name, row["timeline"]) for name, row in rows if row.get("timeline")]
    if not timed:
        return []
    out = ["Timelines, in seconds since the fleet started (the harm as the scenario did it; "
           "the five slowest first answers as wait, kind, sent at):", ""]
    for name, line in timed:
        harm = "; ".join(f"{at} {what}" for at, what in line.get("harm", [])) or "none"
        slowest = "; ".join(f"{wait} s {kind} at {sent}"
                            for sent, wait, kind in line.get("slowest", []))
        out.append(f"- `{name.removeprefix('test_')}` (fleet started {line['started_at']}): "
                   f"{harm}. Slowest: {slowest}.")
    return [*out, ""]


THREE_BROKERS_POINTER = (
    "The scenarios that lose, restart or upgrade a broker run on three brokers (`make reliability "
    "BROKERS=3`): their figures are in [reliability-3-brokers.md](reliability-3-brokers.md). "
    "The quick one, a broker SIGKILLed, also runs here on a three-broker cluster of its own.")


def render(rows: list[dict[str, Any]], command: str, brokers: int = 1) -> str:
    by_name = {r["scenario"]: r for r in rows}  # the last run of each scenario
    kafka = ("single-node Kafka 3.9" if brokers == 1 else
             f"Kafka 3.9 on {brokers} brokers, topics with replication factor 3 and "
             "min.insync.replicas 2")
    out = ["# Reliability" if brokers == 1 else f"# Reliability on {brokers} brokers", "",
           f"Figures of one run of the reliability suite on the real stack ({kafka}, "
           "Redis, worker processes), each scenario on a fleet in flight (TCU primary + IVI per "
           "vehicle, homed to NA, offered at 40 vehicles/s).", "",
           f"Command: `{command}`", "",
           f"Machine: {platform.machine()}, {platform.system()}, Python "
           f"{platform.python_version()}", "",
           *([THREE_BROKERS_POINTER, ""] if brokers == 1 else []),
           "## Invariants after every scenario", "",
           _row(["scenario", *INVARIANTS]), _row(["---"] * (len(INVARIANTS) + 1))]
    for name, row in by_name.items():
        cells = [row.get(k, "") for k in INVARIANTS]
        cells[-1] = "clean" if row.get("audit") == "clean" else "PROBLEMS"
        out.append(_row([name.removeprefix("test_"), *cells]))
    out += ["", "`lost_answers`, `conflicting_answers` (one request, two different answers) and "
            "`duplicate_events` (one transition under two event ids) must be 0. "
            "`lifecycle_records` counts re-sent copies of events (same `event_id`) that "
            "de-duplication removes; `audit` is `vprov replay --verify` against the tables.", ""]
    for scenario, title, text in SECTIONS:
        if scenario in by_name:
            out += [f"## {title}", "", text.format(**by_name[scenario]), ""]
    hostile = by_name.get("test_hostile_input_interleaved_with_valid_traffic")
    if hostile:
        out += ["## Bad input", "",
                f"{hostile['hostile_sent']} hostile messages interleaved with valid traffic; all "
                f"of them answered or dead-lettered {hostile['hostile_seconds']} s after the "
                "first was sent. No worker crashed or stalled, the "
                "valid traffic finished, and the vehicles the attacks aimed at kept their "
                "state and lifecycle unchanged.", "",
                _row(["class", "sent", "answered (FAIL)", "dead-lettered"]),
                _row(["---"] * 4)]
        for kind, counts in hostile["hostile_classes"].items():
            out.append(_row([kind, counts["sent"], counts["answered"],
                             counts["dead_lettered"]]))
        out.append("")
    out += registration_section(by_name.get("test_registration_crash_repeated"))
    out += brokers_section(by_name)
    repairs = [(name, row) for name, row in by_name.items() if "rewinds" in row]
    if repairs:
        out += ["## Records the consumer dropped, and how they came back", "",
                "Faust 0.15 can drop records it fetched around a rebalance or a restart. The "
                "workers log each case (`streams/repairs/commit_guard.py`, "
                "`streams/repairs/watchdog.py`, see "
                "docs/architecture.md): a range the fetcher skipped, a hole held at the head of "
                "the commit (Faust's own rule would have committed past a one-record hole), and "
                "a partition sought back to its head. Every one of them was processed in the "
                "end: the invariants above hold.", "",
                _row(["scenario", "skipped ranges", "holes held", "rewinds"]),
                _row(["---"] * 4)]
        for name, row in repairs:
            out.append(_row([name.removeprefix("test_"), row["skipped_ranges"],
                             row["held_holes"], row["rewinds"]]))
        out.append("")
    return "\n".join(out)


def registration_section(row: dict[str, Any] | None) -> list[str]:
    """The registration crash scenario: one line per run."""
    if not row or not row.get("runs"):
        return []
    runs = row["runs"]
    every = [r for r in runs if r["devices_provisioned"] == r["devices"]]
    out = ["## Registrations not indexed yet, crashes in both bursts", "",
           f"{len(runs)} run{'' if len(runs) == 1 else 's'} on one deployment, each on a "
           f"fresh fleet: {row['registered_vehicles_per_run']} vehicles registered (TCU "
           "primary + IVI) and not waited for; right away (odd runs) or 2.5 s later (even "
           f"runs) one query each for {row['vehicles_per_run']} of them in a burst, the global "
           "worker SIGKILLed a third of the way in and restarted; then every device's "
           "DEVICE_PROVISION in a burst, the regional worker SIGKILLed in the middle and "
           "restarted. A query answered 13103 or 13111 (registrations not indexed yet) is "
           "asked again with a new message id, as a device would; nothing else is re-sent.", "",
           f"Queried vehicles the index had complete when the query burst began: "
           f"{row.get('indexed_before_queries', '?')} of {row['vehicles']}. "
           f"Runs with every invariant holding: {row.get('runs_clean', '?')} of {len(runs)}. "
           f"Devices provisioned in every run: {len(every)} of {len(runs)} runs "
           f"({row['devices_provisioned']} of {row['devices']} devices). Late registrations "
           f"that joined a bound vehicle (lifecycle events without a previous state): "
           f"{row['joins']} (after the primary was provisioned: "
           f"{row['joins_after_primary_provisioned']}). Queries asked again: "
           f"{row['query_retries']} (for "
           f"{row['vehicles_retried']} vehicles). Restart until ready: median "
           f"{row['recovery_seconds_median']} s, max {row['recovery_seconds_max']} s.", "",
           _row(["run", "lead s", "indexed before queries", "devices provisioned",
                 "query retries", "joins", "restart global s", "restart regional s",
                 "slowest device answer s", "lost", "conflicting", "audit"]),
           _row(["---"] * 12)]
    for r in runs:
        out.append(_row([r["run"], r.get("registration_lead_seconds", "?"),
                         f"{r.get('indexed_before_queries', '?')}/{r['vehicles']}",
                         f"{r['devices_provisioned']}/{r['devices']}",
                         r["query_retries"], r["joins"], r["global_restart_seconds"],
                         r["regional_restart_seconds"], r["device_answer_seconds_max"],
                         r["lost_answers"], r["conflicting_answers"], r["audit"]]))
    return [*out, ""]


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    command = argv[2] if len(argv) > 2 else "make reliability"
    brokers = int(argv[3]) if len(argv) > 3 else 1
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sys.stdout.write(render(rows, command, brokers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
