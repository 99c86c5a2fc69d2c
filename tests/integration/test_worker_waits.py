"""A worker that cannot reach Kafka or Redis at start waits: one line every few seconds,
``/health`` says why, and it starts once the broker answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from pathlib import Path

from tests import ports
from tests.integration.conftest import PORT_BASE
from tests.integration.harness import BOOTSTRAP, WorkerProcess, isolated_config, wait_until

WEB_PORT = PORT_BASE + 126


def waiting_page(worker: WorkerProcess) -> dict | None:
    """The 503 body of a worker that is not ready, once it answers at all."""
    try:
        status, body = worker.get("/health")
    except OSError:
        return None
    return body if status == 503 and isinstance(body, dict) and "reason" in body else None


class Forwarder:
    """A TCP forwarder from a local port to the broker: the broker 'appears' at that address
    when the forwarder starts."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_a_worker_waits_for_kafka_says_why_and_starts_when_it_answers(tmp_path: Path) -> None:
    port = ports.closed_port()
    host, broker_port = BOOTSTRAP.split(",")[0].rsplit(":", 1)
    path = isolated_config(tmp_path / "vprov.toml", f"w{uuid.uuid4().hex[:6]}")
    worker = WorkerProcess("global", WEB_PORT, tmp_path, path,
                           extra_env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    forwarder = None
    try:
        worker.start()
        health = wait_until(lambda: waiting_page(worker), timeout=30, what="the waiting page")
        assert health["ready"] is False
        assert f"cannot reach Kafka at 127.0.0.1:{port} (KAFKA_BOOTSTRAP_SERVERS)" in \
            health["reason"]
        time.sleep(12)
        log = worker.log_path.read_text(errors="replace")
        lines = [line for line in log.splitlines() if "cannot reach Kafka" in line]
        assert 1 <= len(lines) <= 4, lines  # one line every few seconds, not a flood
        assert "Traceback" not in log
        assert len(log.splitlines()) < 20, log

        forwarder = Forwarder(port, (host, int(broker_port)))
        worker.wait_ready(timeout=90)
        assert worker.health()["ready"] is True
    finally:
        worker.stop()
        if forwarder is not None:
            forwarder.close()


def test_a_worker_waits_for_redis_and_says_so(tmp_path: Path) -> None:
    port = ports.closed_port()
    path = isolated_config(tmp_path / "vprov.toml", f"w{uuid.uuid4().hex[:6]}")
    worker = WorkerProcess("regional", WEB_PORT + 1, tmp_path, path, region="NA",
                           extra_env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        worker.start()
        health = wait_until(lambda: waiting_page(worker), timeout=30, what="the waiting page")
        assert health["ready"] is False
        assert f"cannot reach Redis at redis://127.0.0.1:{port}/0 (REDIS_URL)" in \
            health["reason"]
        assert worker.proc is not None and worker.proc.poll() is None  # waiting, not dead
    finally:
        worker.stop()
