"""``vprov``: the one entry point for operators."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vprov import config as config_module
from vprov.config import Config, ConfigError


def _load_config(args: argparse.Namespace) -> Config:
    return config_module.load(args.config)


def cmd_worker(args: argparse.Namespace) -> int:
    from faust import Worker

    from streams import global_worker, regional_worker
    from streams.app import WorkerOptions, create_app
    from vprov.admin import ensure_topics
    from vprov.topics import Catalogue

    config = _load_config(args)
    if args.role == "regional":
        if not args.region:
            print("vprov worker --role regional needs --region (one of "
                  f"{', '.join(config.regions)})", file=sys.stderr)
            return 2
        config.region(args.region)  # fails with the list of regions when unknown
    ensure_topics(config.bootstrap_servers, Catalogue(config).all())
    options = WorkerOptions(role=args.role, region=args.region, web_port=args.web_port,
                            web_host=args.web_host, data_dir=Path(args.data_dir))
    app, shell = create_app(config, options)
    if args.role == "global":
        global_worker.register(app, shell)
    else:
        regional_worker.register(app, shell, args.region)
    Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from vprov.admin import ensure_topics
    from vprov.topics import Catalogue

    config = _load_config(args)
    specs = Catalogue(config).all()
    created = ensure_topics(config.bootstrap_servers, specs)
    for spec in specs:
        mark = "created" if spec.name in created else "exists"
        print(f"{mark:8} {spec.name} (partitions={spec.partitions}"
              f"{', compacted' if spec.compacted else ''})")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from vprov.avro import serde_from_config
    from vprov.kafka_clients import producer
    from vprov.progress import Progress
    from vprov.registration_file import LineError, read_lines
    from vprov.topics import Catalogue

    config = _load_config(args)
    topic = Catalogue(config).registrations
    serde = serde_from_config(config)
    out = producer(config.bootstrap_servers)
    path = Path(args.file)
    if not path.exists():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    lines = path.read_text(encoding="utf-8").splitlines()
    progress = Progress("registering", total=len(lines))
    published = 0
    bad = 0
    for item in read_lines(lines, config):
        if isinstance(item, LineError):
            bad += 1
            print(f"{path}:{item}: skipped", file=sys.stderr)
        else:
            out.produce(topic, key=item["device_id"].encode(),
                        value=serde.encode("DeviceRegistration", item, topic=topic))
            out.poll(0)
            published += 1
        progress.advance()
    out.flush(30)
    progress.close()
    print(f"published {published} registrations to {topic}; {bad} lines skipped")
    return 0 if bad == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vprov", description=__doc__)
    parser.add_argument("--config", help="configuration file (default: $VPROV_CONFIG or the "
                        "packaged defaults)")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a stream worker")
    worker.add_argument("--role", choices=("global", "regional"), required=True)
    worker.add_argument("--region", help="region code, for --role regional")
    worker.add_argument("--web-port", type=int, default=6066)
    worker.add_argument("--web-host", default="127.0.0.1")
    worker.add_argument("--data-dir", default=".run/data", help="RocksDB state directory")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=cmd_worker)

    topics = sub.add_parser("topics", help="topic administration")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    create = topics_sub.add_parser("create", help="create every topic (idempotent)")
    create.set_defaults(func=cmd_topics)

    register = sub.add_parser("register", help="publish device registrations (JSON Lines)")
    register.add_argument("file")
    register.set_defaults(func=cmd_register)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the broker being down is the common case; say how to fix it
        from vprov.admin import BrokerUnavailable

        if isinstance(exc, BrokerUnavailable):
            print(f"error: {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
