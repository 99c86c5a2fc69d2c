"""Worker processes started by the benchmark and the tests: ``vprov worker`` subprocesses, each
in its own process group with its own log file, watched through their web port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from vprov.webclient import NoAnswer, WebClient


class WorkerProcess:
    """One ``vprov worker --role ROLE [--region R]`` serving its views on ``web_port``."""

    def __init__(self, role: str, web_port: int, config_path: Path, data_dir: Path,
                 log_path: Path, region: str | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.role = role
        self.region = region
        self.web_port = web_port
        self.name = region or role
        self.log_path = log_path
        self.env = dict(env if env is not None else os.environ)
        self.cwd = cwd
        self.args = [sys.executable, "-m", "vprov.cli", "--config", str(config_path), "worker",
                     "--role", role, "--web-port", str(web_port), "--data-dir", str(data_dir)]
        if region:
            self.args += ["--region", region]
        self.url = f"http://127.0.0.1:{web_port}"
        self.web = WebClient(self.url)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        return self.web.health()

    def get(self, path: str) -> tuple[int, Any]:
        """(HTTP status, parsed JSON or None) of a view; (0, None) when there is no answer."""
        try:
            return self.web.get(path)
        except NoAnswer:
            return 0, None

    def wait_ready(self, timeout: float = 90.0,
                   tick: Callable[[], object] | None = None) -> WorkerProcess:
        """Until ``/health`` says ready; ``tick`` runs at every look (a memory sample, say)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if tick is not None:
                tick()
            if not self.alive():
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"worker {self.name} exited with {code}; log: "
                                   f"{self.log_path}\n{self.log_tail()}")
            health = self.health()
            if health and health.get("ready"):
                return self
            time.sleep(0.3)
        raise TimeoutError(f"worker {self.name} not ready after {timeout:.0f}s; log: "
                           f"{self.log_path}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, and SIGKILL when it has not exited after ``timeout`` seconds. A worker stops
        in 1-2 s; one on a SASL_SSL broker was seen hanging after leaving its group, and killing
        it loses nothing (its uncommitted inputs are processed again, with the same outcome)."""
        if not self.alive():
            return
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    # --- what it costs (the benchmark's figures) --------------------------------------------

    def _tree(self) -> list[psutil.Process]:
        if self.ps is None:
            return []
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        """Resident memory of the worker and any child it started, in bytes."""
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds: system time is the kernel's share (socket I/O, polling)."""
        user = system = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                user += times.user
                system += times.system
        return user, system

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds per thread of the worker process, keyed by thread id (the main thread
        is the process id)."""
        if self.ps is None:
            return {}
        try:
            return {("main" if t.id == self.ps.pid else f"thread {t.id}"):
                    t.user_time + t.system_time for t in self.ps.threads()}
        except psutil.Error:
            return {}


def start_all(*workers: WorkerProcess, timeout: float = 120.0) -> float:
    """Start ``workers`` and wait until each reports ready; returns the seconds it took."""
    began = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready(timeout)
    return time.monotonic() - began


@contextlib.contextmanager
def running(workers: Mapping[str, WorkerProcess], timeout: float = 120.0
            ) -> Iterator[Mapping[str, WorkerProcess]]:
    """``workers`` started and ready for the block, stopped after it (also when it fails)."""
    try:
        start_all(*workers.values(), timeout=timeout)
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()
