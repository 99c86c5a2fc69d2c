"""Start a worker: wait for Kafka and Redis, check the topics, reconcile local state with the
changelogs, run Faust."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mode.loop
from confluent_kafka import KafkaException

from streams import agents
from streams.app import WorkerOptions, create_app
from streams.repairs import bulk_restore
from streams.repairs.faust_contract import UnsupportedFaust
from streams.repairs.local_state import reconcile
from vprov import reach
from vprov.config import Config
from vprov.kafka.acls import worker_role
from vprov.kafka.catalogue import Catalogue
from vprov.kafka.group_settings import check_session_timeout
from vprov.kafka.librdkafka_log import ClientRepeatFilter
from vprov.kafka.topic_admin import TopicMismatch, ensure_topics

log = logging.getLogger(__name__)
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 5  # Kafka or Redis refused the credentials, the certificate or a request
WAIT_SECONDS = 5.0  # between attempts to reach Kafka and Redis at start, and between reports


class NotReadyPage:
    """``GET /health`` (any path) -> 503 with why the worker is not ready, on the worker's web
    port while it waits for its infrastructure (Faust's own web server is not up yet)."""

    def __init__(self, host: str, port: int) -> None:
        self.reason = "starting"
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                body = json.dumps({"ready": False, "reason": page.reason}).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # probes every second would fill the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_for_infrastructure(config: Config, options: WorkerOptions) -> None:
    """Return once Kafka and Redis answer; until then say why in one line every few seconds,
    and answer /health with it."""
    page: NotReadyPage | None = None
    try:
        while True:
            try:
                reach.kafka_of(config, WAIT_SECONDS)
                reach.redis_of(config, WAIT_SECONDS)
                return
            except reach.Unreachable as exc:
                log.warning("not ready: %s; trying again in %.0f s", exc, WAIT_SECONDS)
                if page is None:
                    try:
                        page = NotReadyPage(options.web_host, options.web_port)
                    except OSError as bind:  # the port is taken: Faust will say so later
                        log.warning("cannot serve /health on %s:%d while waiting: %s",
                                    options.web_host, options.web_port, bind)
                if page is not None:
                    page.reason = str(exc)
                time.sleep(WAIT_SECONDS)
    finally:
        if page is not None:
            page.close()


def use_uvloop() -> bool:
    """Run the worker's event loops on uvloop: the main loop and the Kafka consumer's thread
    loop (Faust creates that one through the same event loop policy). Each record costs
    several loop callbacks (fetch hand-off, agent step, produce), which uvloop runs in C.
    False, and asyncio's own loop, where uvloop is not installed."""
    try:
        mode.loop.use("uvloop")
    except ImportError:
        log.warning("uvloop is not installed: running on asyncio's own event loop")
        return False
    return True


def run_worker(config: Config, options: WorkerOptions, loglevel: str) -> int:
    """Run until stopped; the exit code when it cannot start."""
    from faust import Worker

    class QuietWorker(Worker):
        """Faust's worker, whose log shows each of the Kafka client's repeated errors (a broker
        away) once per 30 s instead of several times a second."""

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            for handler in logger.handlers:
                handler.addFilter(ClientRepeatFilter(("aiokafka",)))

    use_uvloop()  # before Faust creates any loop
    role = worker_role(config, options.region)
    topics = role.topics(Catalogue(config))  # its principal may create these, and no others
    try:
        wait_for_infrastructure(config, options)
        # a missing ACL is said now, in one line, not as a Faust crash at the first fetch
        reach.kafka_permissions(config, [t.name for t in topics], list(role.groups),
                                WAIT_SECONDS)
        ensure_topics(config, topics)
        problem = check_session_timeout(config, WAIT_SECONDS)
        if problem is not None:  # the broker would refuse every join, and Faust retry forever
            print(f"error: {problem}", file=sys.stderr)
            return 2
    except reach.Refused as exc:  # waiting would not help
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except TopicMismatch as exc:  # Faust would start and look tables up in the wrong partitions
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except KafkaException as exc:  # a request refused (an ACL), or the broker lost meanwhile
        error = exc.args[0]
        print("error: " + reach.kafka_failure(error, config.bootstrap_servers,
                                              reach.kafka_setting(config), config),
              file=sys.stderr)
        return EXIT_UNREACHABLE if reach.kafka_unreachable(error) else EXIT_REFUSED
    try:
        app, shell = create_app(config, options)
    except UnsupportedFaust as exc:  # a Faust release the commit guard was not written for
        print(f"error: {exc}", file=sys.stderr)
        return 5
    agents.register(app, shell, None if options.role == "global" else options.region)
    changelogs = {table.name: table.changelog_topic.get_topic_name()
                  for table in app.tables.values()}
    shell.local_state_discarded = len(reconcile(
        config, Path(app.conf.tabledir), changelogs, group_id=f"{app.conf.id}-local-state"))
    if config.bulk_restore:
        shell.bulk_restored = bulk_restore.restore(config, Path(app.conf.tabledir), changelogs,
                                                   config.partitions)
    QuietWorker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    return 0
