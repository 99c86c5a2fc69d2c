"""scripts/stack.sh: which Java the schema registry runs on (it needs 21+; the broker does not)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "stack.sh"


def fake_jdk(root: Path, version: str) -> Path:
    """A JAVA_HOME whose java only reports its version, as `java -version` does (on stderr)."""
    java = root / f"jdk-{version}" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-10-21' >&2\n")
    java.chmod(0o755)
    return java


def registry_java(java_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JAVA_HOME": str(java_home)}
    return subprocess.run(["bash", str(SCRIPT), "registry-java"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_java_home_comes_first_when_it_is_21_or_newer(tmp_path: Path) -> None:
    java = fake_jdk(tmp_path, "25.0.1")
    result = registry_java(java.parents[1])
    assert (result.returncode, result.stdout) == (0, f"{java}\n")


def test_an_older_java_home_is_passed_over(tmp_path: Path) -> None:
    java = fake_jdk(tmp_path, "17.0.15")
    result = registry_java(java.parents[1])
    assert str(java) not in result.stdout
