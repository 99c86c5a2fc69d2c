"""Start a worker: check the topics, reconcile local state with the changelogs, run Faust."""

from __future__ import annotations

import sys
from pathlib import Path

from streams import global_worker, regional_worker
from streams.app import WorkerOptions, create_app
from streams.local_state import reconcile
from vprov.admin import TopicMismatch, ensure_topics
from vprov.config import Config
from vprov.topics import Catalogue


def run_worker(config: Config, options: WorkerOptions, loglevel: str) -> int:
    """Run until stopped; the exit code when it cannot start."""
    from faust import Worker

    try:
        ensure_topics(config.bootstrap_servers, Catalogue(config).all())
    except TopicMismatch as exc:  # Faust would start and look tables up in the wrong partitions
        print(f"error: {exc}", file=sys.stderr)
        return 4
    app, shell = create_app(config, options)
    if options.role == "global":
        global_worker.register(app, shell)
    else:
        assert options.region is not None
        regional_worker.register(app, shell, options.region)
    changelogs = {table.name: table.changelog_topic.get_topic_name()
                  for table in app.tables.values()}
    shell.local_state_discarded = len(reconcile(config.bootstrap_servers,
                                                Path(app.conf.tabledir), changelogs))
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    return 0
