"""docker/prometheus/alerts.yml: valid for Prometheus, each alert unit-tested with promtool
(alerts_test.yml), written over series the workers export, and given a runbook in
docs/operations.md.

promtool comes with Debian's ``prometheus`` package, which ``make prereqs`` (scripts/prereqs.sh)
installs; without it these tests fail rather than skip, so a CI that lost it says so."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool(*args: str) -> None:
    """Run ``promtool ARGS``; fail with its output unless it succeeds."""
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: it comes with Debian's prometheus package "
                    "(`make prereqs` installs it as root; else `sudo apt-get install "
                    "prometheus`)", pytrace=False)
    result = subprocess.run([tool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} exited {result.returncode}:\n"
                    f"{result.stdout}{result.stderr}", pytrace=False)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    promtool("check", "rules", ALERTS.name)


def test_promtool_checks_the_scrape_configuration_and_its_rule_files() -> None:
    promtool("check", "config", SCRAPE_CONFIG.name)


def test_promtool_unit_tests_pass() -> None:
    promtool("test", "rules", ALERTS_TEST.name)


def test_each_alert_is_tested_firing_and_silent() -> None:
    """alerts_test.yml expects each alert both to fire and to stay silent at some point."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "no test in which these fire"
    assert names - silent == set(), "no test in which these stay silent"


def test_rules_ask_only_for_exported_series() -> None:
    from streams.metrics import Metrics, sample_names
    from vprov import config as config_module
    from vprov.kafka.catalogue import Catalogue

    config = config_module.load(env={})
    exported = sample_names(Metrics(Catalogue(config), config, None))
    used = {name for rule in alert_rules() for name in re.findall(r"\bvprov_[a-z_]+", rule["expr"])}
    assert used <= exported, used - exported
    # the one series of Prometheus's own, with the job name of prometheus.yml
    jobs = [job["job_name"] for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]]
    assert jobs == ["vprov"]
    assert any(rule["expr"].startswith('up{job="vprov"}') for rule in alert_rules())


def test_each_alert_has_a_runbook_in_the_operations_page() -> None:
    headings = {match.group(1) for match in
                re.finditer(r"^### (Vprov[A-Za-z]+)$", OPERATIONS.read_text(), re.MULTILINE)}
    for rule in alert_rules():
        name = rule["alert"]
        assert name in headings, f"docs/operations.md has no runbook heading '### {name}'"
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
