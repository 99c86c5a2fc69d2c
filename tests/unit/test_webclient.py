"""The workers' HTTP client on a local server: JSON, retries while rebalancing, no answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import ports
from vprov.webclient import NoAnswer, WebClient


class Views(BaseHTTPRequestHandler):
    answers: list[tuple[int, object]] = []  # then 200 {"ok": true}

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        status, body = self.answers.pop(0) if self.answers else (200, {"ok": True})
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[WebClient]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Views)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield WebClient(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.shutdown()
    httpd.server_close()


def test_get_answers_status_and_json_and_health_only_a_200(web: WebClient) -> None:
    Views.answers = [(404, {"error": "no such vin"}), (503, {"ready": False})]
    assert web.get("/vehicles/X/") == (404, {"error": "no such vin"})
    assert web.health() is None
    assert web.health() == {"ok": True}


def test_get_settled_retries_while_the_worker_rebalances(web: WebClient) -> None:
    Views.answers = [(503, None), (502, None), (200, {"vin": "V"})]
    assert web.get_settled("/vehicles/V/") == (200, {"vin": "V"})
    Views.answers = [(503, None)] * 3
    assert web.get_settled("/vehicles/V/", timeout=0.1)[0] == 503


def test_no_answer_is_an_error_and_a_bad_url_a_value_error() -> None:
    closed = WebClient(f"http://127.0.0.1:{ports.closed_port()}")
    with pytest.raises(NoAnswer):
        closed.get("/health")
    assert closed.health() is None
    with pytest.raises(ValueError, match="expected http://host:port"):
        WebClient("localhost:6066")
