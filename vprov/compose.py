"""The worker services of ``docker/compose.yaml``, written from the configuration.

Compose has no loops, so the services of the workers (one global, one per region; see
``vprov.deployment``) are generated between two marker lines; everything else in the file is
written by hand and left alone. ``vprov config compose FILE`` rewrites the block,
``--check`` only says whether it is current.
"""

from __future__ import annotations

from vprov.config import Config
from vprov.deployment import workers

BEGIN = "  # --- workers: written by `vprov config compose` from the configuration; do not edit"
END = "  # --- end of workers"


def worker_services(config: Config) -> str:
    """The generated block, marker lines included; each service extends ``x-worker``."""
    lines = [BEGIN]
    for worker in workers(config):
        command = ", ".join(f'"{a}"' for a in
                            ["worker", *worker.args, "--web-port", str(worker.web_port)])
        lines += [
            f"  worker-{worker.name}:",
            "    <<: *worker",
            f"    command: [{command}]",
            "    ports:",
            f'      - "127.0.0.1:{worker.web_port}:{worker.web_port}"',
            "",
        ]
    return "\n".join([*lines[:-1], END]) + "\n"


def rewrite(text: str, config: Config) -> str:
    """``text`` (a compose file) with its worker block replaced; ValueError without markers."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith(BEGIN))
        end = next(i for i in range(start, len(lines)) if lines[i].startswith(END))
    except StopIteration:
        raise ValueError(f"no worker block: expected a line starting {BEGIN.strip()!r} and a "
                         f"later one starting {END.strip()!r}") from None
    return "".join(lines[:start]) + worker_services(config) + "".join(lines[end + 1:])
