"""The request funnel of running workers, read from their ``GET /metrics`` pages.

For each flow: requests received = answered + dead-lettered + waiting (queries waiting for their
region, device requests held), plus whatever is in flight between two steps at that moment.

    python -m vprov.ops.funnel http://127.0.0.1:6066 http://127.0.0.1:6067 ...
"""

from __future__ import annotations

import sys
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

WAITING = {"query": "vprov_pending_queries", "device": "vprov_held_requests"}


@dataclass
class Funnel:
    received: float = 0
    success: float = 0
    failure: float = 0
    dead_lettered: float = 0
    waiting: float = 0

    @property
    def in_flight(self) -> float:
        return self.received - self.success - self.failure - self.dead_lettered - self.waiting


Sample = tuple[str, dict[str, str], float]


def scrape(url: str, timeout: float = 10.0) -> list[Sample]:
    with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def funnels(samples: Iterable[Sample]) -> dict[str, Funnel]:
    """Per flow, summed over every worker (and region) scraped."""
    found: dict[str, Funnel] = defaultdict(Funnel)
    for name, labels, value in samples:
        flow = labels.get("flow", "")
        if name == "vprov_requests_received_total":
            found[flow].received += value
        elif name == "vprov_requests_total":
            if labels["outcome"] == "success":
                found[flow].success += value
            else:
                found[flow].failure += value
        elif name == "vprov_dead_letters_total" and flow in WAITING:
            found[flow].dead_lettered += value
        for waiting_flow, gauge in WAITING.items():
            if name == gauge:
                found[waiting_flow].waiting += value
    return dict(found)


def format_funnels(found: dict[str, Funnel]) -> str:
    lines = []
    for flow in WAITING:
        f = found.get(flow, Funnel())
        waits = "waiting" if flow == "query" else "held"
        lines.append(f"{flow:7s} received {f.received:.0f} = answered {f.success:.0f} + failed "
                     f"{f.failure:.0f} + dead-lettered {f.dead_lettered:.0f} + {waits} "
                     f"{f.waiting:.0f}" + (f" + in flight {f.in_flight:.0f}" if f.in_flight
                                           else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    urls = list(sys.argv[1:] if argv is None else argv)
    if not urls:
        print("usage: python -m vprov.ops.funnel WORKER_URL...", file=sys.stderr)
        return 2
    samples: list[Sample] = []
    for url in urls:
        try:
            samples += scrape(url)
        except OSError as exc:
            print(f"error: cannot read {url}/metrics: {exc}", file=sys.stderr)
            return 3
    print(format_funnels(funnels(samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
