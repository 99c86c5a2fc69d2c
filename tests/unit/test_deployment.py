"""The deployment layout: one global worker and one per configured region, their web ports
following the configuration's region order; and the default worker addresses of ``vprov status``
and ``vprov replay`` that follow from it."""

from __future__ import annotations

import socket

import pytest

from vprov import config as config_module
from vprov.config import Config
from vprov.ops import deployment
from vprov.ops.status import WorkerUnreachable, WorkerViews, parse_region_urls, regional_vehicle

DEFAULTS = config_module.load(config_module.DEFAULTS_PATH, env={})


def with_regions(*extra: str) -> Config:
    doc = config_module.defaults_document()
    for code in extra:
        doc["regions"][code] = {"gateway_endpoint": f"mqtts://{code.lower()}.example:8883",
                                "countries": []}
    return config_module.from_document(doc)


def test_the_packaged_regions_keep_the_demo_ports() -> None:
    layout = [(w.name, w.role, w.region, w.web_port) for w in deployment.workers(DEFAULTS)]
    assert layout == [("global", "global", None, 6066), ("na", "regional", "NA", 6067),
                      ("eu", "regional", "EU", 6068), ("ap", "regional", "AP", 6069)]
    assert deployment.workers(DEFAULTS)[2].args == ["--role", "regional", "--region", "EU"]


def test_a_fourth_region_gets_the_next_port() -> None:
    config = with_regions("SA")
    assert [w.name for w in deployment.workers(config)] == ["global", "na", "eu", "ap", "sa"]
    assert deployment.region_urls(config)["SA"] == "http://127.0.0.1:6070"


def test_status_defaults_cover_every_configured_region() -> None:
    assert parse_region_urls(None, with_regions("SA", "ME")) == {
        "NA": "http://127.0.0.1:6067", "EU": "http://127.0.0.1:6068",
        "AP": "http://127.0.0.1:6069", "SA": "http://127.0.0.1:6070",
        "ME": "http://127.0.0.1:6071"}


def test_status_region_url_overrides_the_default() -> None:
    urls = parse_region_urls(["SA=http://sa.internal:7000"], with_regions("SA"))
    assert urls["SA"] == "http://sa.internal:7000"
    assert urls["NA"] == "http://127.0.0.1:6067"
    with pytest.raises(ValueError, match="unknown region SA"):
        parse_region_urls(["SA=http://sa.internal:7000"], DEFAULTS)


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_region_names_the_option_it_came_from() -> None:
    config = with_regions("SA")
    views = WorkerViews(f"http://127.0.0.1:{_closed_port()}", role="SA", timeout=2)
    with pytest.raises(WorkerUnreachable, match=r"\(--region-url SA=URL\)"):
        regional_vehicle(views, "1HGCM82633A004352", config)


def test_an_unreachable_region_at_its_default_says_so() -> None:
    config = with_regions("SA")
    default = deployment.region_urls(config)["SA"]
    if not _refuses(6070):
        pytest.skip(f"something listens on {default}")
    views = WorkerViews(default, role="SA", timeout=2)
    with pytest.raises(WorkerUnreachable, match=r"\(default of --region-url SA=URL\)"):
        regional_vehicle(views, "1HGCM82633A004352", config)
