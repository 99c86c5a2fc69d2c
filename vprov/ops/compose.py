"""The worker services of ``docker/compose.yaml`` and their Prometheus scrape targets,
written from the configuration.

Compose has no loops, so the services of the workers (one global, one per region; see
``vprov.ops.deployment``) are generated between two marker lines, and so are the scrape targets in
``prometheus/prometheus.yml`` beside the compose file; everything else in both files is written
by hand and left alone. ``vprov config compose FILE`` rewrites the blocks, ``--check`` only
says whether they are current.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vprov.config import Config
from vprov.ops.deployment import workers

_WRITTEN_BY = "written by `vprov config compose` from the configuration; do not edit"
BEGIN = f"  # --- workers: {_WRITTEN_BY}"
END = "  # --- end of workers"
TARGETS_BEGIN = f"      # --- targets: {_WRITTEN_BY}"
TARGETS_END = "      # --- end of targets"


@dataclass(frozen=True)
class Generated:
    """A file with a generated block: where it is and what the block holds."""

    path: Path
    begin: str
    end: str
    block: str


def prometheus_file(compose_file: Path) -> Path:
    """The scrape configuration the compose file mounts into its Prometheus service."""
    return compose_file.parent / "prometheus" / "prometheus.yml"


def generated_files(compose_file: Path, config: Config) -> list[Generated]:
    """The files ``vprov config compose`` keeps in step with the configuration."""
    return [Generated(compose_file, BEGIN, END, worker_services(config)),
            Generated(prometheus_file(compose_file), TARGETS_BEGIN, TARGETS_END,
                      scrape_targets(config))]


def worker_services(config: Config) -> str:
    """The generated block, marker lines included; each service extends ``x-worker``."""
    lines = [BEGIN]
    for worker in workers(config):
        # each worker listens on its service name: Prometheus and the other workers reach it
        command = ", ".join(f'"{a}"' for a in
                            ["worker", *worker.args, "--web-port", str(worker.web_port),
                             "--web-host", f"worker-{worker.name}"])
        lines += [
            f"  worker-{worker.name}:",
            "    <<: *worker",
            f"    command: [{command}]",
            "    ports:",
            f'      - "127.0.0.1:{worker.web_port}:{worker.web_port}"',
            "",
        ]
    return "\n".join([*lines[:-1], END]) + "\n"


def scrape_targets(config: Config) -> str:
    """The Prometheus static targets, marker lines included: the global worker, then the
    regional ones, each group labelled with its role."""
    groups: dict[str, list[str]] = {}
    for worker in workers(config):
        role = "global" if worker.name == "global" else "regional"
        groups.setdefault(role, []).append(f'"worker-{worker.name}:{worker.web_port}"')
    lines = [TARGETS_BEGIN]
    for role, targets in groups.items():
        lines += [f"      - targets: [{', '.join(targets)}]",
                  "        labels:",
                  f"          role: {role}"]
    return "\n".join([*lines, TARGETS_END]) + "\n"


def rewrite(text: str, config: Config, begin: str = BEGIN, end: str = END,
            block: str | None = None) -> str:
    """``text`` with its generated block (the compose file's workers unless told otherwise)
    replaced; ValueError without markers."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(begin))
        stop = next(i for i in range(start, len(lines)) if lines[i].startswith(end))
    except StopIteration:
        raise ValueError(f"no generated block: expected a line starting {begin.strip()!r} and "
                         f"a later one starting {end.strip()!r}") from None
    new = worker_services(config) if block is None else block
    return "".join(lines[:start]) + new + "".join(lines[stop + 1:])
