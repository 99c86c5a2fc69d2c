"""Where a deployment's workers listen: one global worker and one per configured region, on web
ports counted up from 6066 in the configuration's region order (NA 6067, EU 6068, AP 6069 with
the packaged defaults).

``make demo`` (through ``vprov config workers``), ``docker/compose.yaml`` (written by ``vprov
config compose``) and the default worker addresses of ``vprov status`` and ``vprov replay`` all
take the layout from here, so a region added to the configuration reaches each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from vprov.config import Config

HOST = "127.0.0.1"
GLOBAL_WEB_PORT = 6066
GLOBAL_URL = f"http://{HOST}:{GLOBAL_WEB_PORT}"


@dataclass(frozen=True)
class Worker:
    name: str  # "global", or the region code in lower case
    region: str | None  # None: the global worker
    web_port: int

    @property
    def role(self) -> str:
        return "global" if self.region is None else "regional"

    @property
    def args(self) -> list[str]:
        """``vprov worker`` options, ``--web-port`` left to the caller."""
        return ["--role", self.role, *(["--region", self.region] if self.region else [])]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.web_port}"


def workers(config: Config) -> list[Worker]:
    """The global worker, then one per region in configuration order."""
    regional = [Worker(code.lower(), code, GLOBAL_WEB_PORT + 1 + i)
                for i, code in enumerate(config.regions)]
    return [Worker("global", None, GLOBAL_WEB_PORT), *regional]


def region_urls(config: Config) -> dict[str, str]:
    """Region code -> web address of its worker."""
    return {w.region: w.url for w in workers(config) if w.region is not None}
