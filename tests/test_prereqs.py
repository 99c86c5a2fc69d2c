"""scripts/prereqs.sh: what it says when a tool is missing (run with a PATH that hides it; it is
never uninstalled), and that it is quiet when everything is there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "prereqs.sh"
TOOLS = ("bash", "mktemp", "rm", "id", "make", "java", "mvn", "redis-server", "redis-cli",
         "prometheus", "promtool")


def real_python() -> str:
    """The interpreter behind this one (a venv's python may be a link to it)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix) / "bin" / f"python{version}"
    return str(base if base.exists() else Path(sys.executable).resolve())


def path_without(tmp_path: Path, hidden: set[str]) -> str:
    """A PATH of links to the tools this machine has, minus ``hidden``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        if tool in hidden:
            continue
        found = shutil.which(tool)
        if found is None:
            pytest.fail(f"{tool} is not on this machine: run `make prereqs` first")
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(real_python())
    return str(bin_dir)


def run(path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "VPROV_PREREQS_INSTALL": "0"}
    return subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_missing_redis_is_named_with_the_command_that_installs_it(tmp_path: Path) -> None:
    result = run(path_without(tmp_path, {"redis-server"}))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "missing: redis-server and redis-cli (Redis 6+); install it with: sudo apt-get install "
        "redis-server (or your system's package of it)"]


def test_each_missing_tool_gets_its_own_line(tmp_path: Path) -> None:
    result = run(path_without(tmp_path, {"java", "mvn"}))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert "apt-get install default-jdk-headless" in lines[0]
    assert "apt-get install maven" in lines[1]


def test_quiet_when_everything_is_there(tmp_path: Path) -> None:
    result = run(path_without(tmp_path, set()))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
