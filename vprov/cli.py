"""``vprov``: the one entry point for operators.

Exit codes: 0 done; 1 done, with problems to look at (lines skipped, an unknown VIN, audit
differences, vehicles that failed); 2 a bad option or configuration; 3 Kafka, Redis or a worker
could not be reached (one ``error: cannot reach ...`` line on stderr); 4 existing topics that
do not match the configuration; 5 Kafka or Redis refused the credentials, the TLS certificate or
a request (a missing ACL), in one ``error:`` line naming the setting to fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TypeAlias

from vprov import config as config_module
from vprov import reach
from vprov.config import Config, ConfigError

EXIT_UNREACHABLE = 3
EXIT_REFUSED = 5


def _load_config(args: argparse.Namespace) -> Config:
    return config_module.load(args.config)


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.app import WorkerOptions
    from streams.run import run_worker

    config = _load_config(args)
    if args.role == "regional":
        if not args.region:
            print("vprov worker --role regional needs --region (one of "
                  f"{', '.join(config.regions)})", file=sys.stderr)
            return 2
        config.region(args.region)  # fails with the list of regions when unknown
    # a worker talks to its own cluster only, the global or its region's (docs/architecture.md)
    config = config.seen_from(args.region if args.role == "regional" else None)
    options = WorkerOptions(role=args.role, region=args.region, web_port=args.web_port,
                            web_host=args.web_host, data_dir=Path(args.data_dir),
                            instance=args.instance)
    return run_worker(config, options, args.loglevel)


def _shard(text: str) -> tuple[int, int]:
    try:
        shard, shards = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 0/2") from None
    if not 0 <= shard < shards:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 <= I < N")
    return shard, shards


def cmd_edge(args: argparse.Namespace) -> int:
    from vprov.core.outputs import GLOBAL_SCOPE
    from vprov.edge.bridge import run_bridge

    config = _load_config(args)
    if args.scope != GLOBAL_SCOPE:
        config.region(args.scope)  # fails with the list of regions when unknown
    shard, shards = args.shard
    return run_bridge(config, args.scope, shard, shards)


def cmd_topics(args: argparse.Namespace) -> int:
    from vprov.kafka.catalogue import Catalogue
    from vprov.kafka.topic_admin import TopicMismatch, ensure_topics

    config = _load_config(args)
    placement = Catalogue(config).placement()  # one cluster, or the global one and the regions'
    reach.clusters_of(config, args.connect_timeout)
    for cluster in config.clusters:
        specs = placement[cluster.name]
        try:
            created = ensure_topics(cluster, specs)
        except TopicMismatch as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 4
        where = f" @{cluster.name}" if config.multi_cluster else ""
        for spec in specs:
            mark = "created" if spec.name in created else "exists"
            print(f"{mark:8} {spec.name} (partitions={spec.partitions}, "
                  f"replicas={spec.replication_factor}"
                  f"{', compacted' if spec.compacted else ''}){where}")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    from vprov.kafka import mirror

    config = _load_config(args)
    try:
        text = mirror.properties(config)
    except mirror.MirrorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_acls(args: argparse.Namespace) -> int:
    from vprov.kafka import acls

    config = _load_config(args)
    try:
        found = [acls.role(config, args.role)] if args.role else acls.roles(config)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.principals:
        for r in found:
            print(r.username)
        return 0
    bindings = acls.bindings(found)
    for binding in bindings:
        print(binding)
    if args.apply:
        reach.clusters_of(config, args.connect_timeout)
        for cluster in config.clusters:  # each cluster gets the bindings of its own topics
            mine = bindings if not config.multi_cluster else acls.on_cluster(
                config, found, cluster.name)
            acls.apply(cluster, mine)
            where = f" on the {cluster.name} cluster" if config.multi_cluster else ""
            print(f"applied {len(mine)} ACL bindings for "
                  f"{len({b.principal for b in mine})} principals{where}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaError, Message

    from vprov.kafka.avro import serde_from_config
    from vprov.kafka.catalogue import Catalogue
    from vprov.kafka.clients import close_producer, produce_when_room, producer
    from vprov.ops.progress import progress
    from vprov.ops.registration_file import LineError, read_lines

    config = _load_config(args)
    topic = Catalogue(config).registrations
    serde = serde_from_config(config)
    path = Path(args.file)
    if not path.exists():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    reach.kafka_of(config, args.connect_timeout)
    out = producer(config)
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.str())

    lines = path.read_text(encoding="utf-8").splitlines()
    bar = progress("registering", total=len(lines))
    published = 0
    bad = 0
    for item in read_lines(lines, config):
        if isinstance(item, LineError):
            bad += 1
            print(f"{path}:{item}: skipped", file=sys.stderr)
        else:
            value = serde.encode("DeviceRegistration", item, topic=topic)
            produce_when_room(out, topic, key=item["device_id"].encode(), value=value,
                              on_delivery=delivered)
            out.poll(0)
            published += 1
        bar.update()
    flush_seconds = 30
    undelivered = out.flush(flush_seconds) + len(failures)
    close_producer(out, 0)
    bar.close()
    if undelivered:  # the broker was lost on the way
        why = failures[0] if failures else f"not confirmed within {flush_seconds} s"
        print(f"error: {undelivered} of {published} registrations were not delivered to "
              f"{topic} by Kafka at {config.bootstrap_servers} "
              f"({reach.kafka_setting(config)}): {why}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"published {published} registrations to {topic}; {bad} lines skipped")
    return 0 if bad == 0 else 1


def cmd_deadletter(args: argparse.Namespace) -> int:
    from vprov.ops import deadletter
    from vprov.ops.audit import parse_since

    config = _load_config(args)
    try:
        since_ms = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    selection = deadletter.Selection(
        ids=frozenset(getattr(args, "ids", None) or ()), code=args.code,
        source_topic=args.source_topic, since_ms=since_ms)
    if args.action == "redrive" and selection.empty and not args.all:
        print("error: vprov deadletter redrive needs --id, --code, --source-topic, --since or "
              "--all (it re-publishes what it selects)", file=sys.stderr)
        return 2
    reach.clusters_of(config, args.connect_timeout)
    letters = deadletter.select(deadletter.read(config, since_ms, args.timeout), selection)
    if args.action == "list":
        for letter in letters:
            print(deadletter.line(letter))
        print(f"{len(letters)} dead letters", file=sys.stderr)
        return 0
    if args.action == "show":
        for letter in letters:
            print(deadletter.details(letter))
        return 0 if letters else 1
    if not letters:
        print("no dead letter matches", file=sys.stderr)
        return 1
    sent = deadletter.redrive(config, letters, args.dry_run, sys.stdout, args.timeout)
    if sent < len(letters):
        print(f"error: {len(letters) - sent} of {len(letters)} records were not delivered",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def cmd_simulate(args: argparse.Namespace) -> int:
    from vprov.sim.simulate import SimOptions, run_cli

    options = SimOptions(
        vehicles=args.vehicles, devices=_csv(args.devices),
        regions=_csv(args.regions) if args.regions else None, rate=args.rate,
        invalid=args.invalid, duplicates=args.duplicates, shuffle=args.shuffle,
        timeout=args.timeout, global_url=args.global_url, seed=args.seed, via=args.via,
    )
    return run_cli(_load_config(args), options, args.json, sys.stdout, sys.stderr,
                   connect_timeout=args.connect_timeout)


def cmd_status(args: argparse.Namespace) -> int:
    from vprov.ops import status

    return status.run(_load_config(args), args.vin, args.global_url, args.region_url,
                      args.json, args.events, sys.stdout, sys.stderr,
                      connect_timeout=args.connect_timeout)


def cmd_replay(args: argparse.Namespace) -> int:
    from vprov.ops import audit

    return audit.run(_load_config(args), args.vin, args.since, args.verify, args.global_url,
                      args.region_url, args.quiet, args.json, sys.stdout, sys.stderr,
                      timeout=args.timeout, connect_timeout=args.connect_timeout)


def cmd_vehicle(args: argparse.Namespace) -> int:
    from vprov.ops import vehicle_commands

    config = _load_config(args)
    if args.action == "show-policy":
        return vehicle_commands.show_policy(config, args.country, sys.stdout)
    fields: dict[str, object] = {"requested_by": args.requested_by}
    if args.action == "move":
        fields.update(target_region=args.to, move_policy=args.policy.upper(), force=args.force)
    elif args.action == "replace-device":
        fields.update(old_device_id=args.old, new_device_id=args.new)
    operation = {"move": "MOVE", "replace-device": "REPLACE_DEVICE",
                 "decommission": "DECOMMISSION", "reinstate": "REINSTATE"}[args.action]
    cmd = vehicle_commands.command(operation, args.vin, args.command_id, **fields)
    return vehicle_commands.run(config, cmd, args.timeout, args.connect_timeout, sys.stdout,
                             sys.stderr)


def cmd_config(args: argparse.Namespace) -> int:
    from vprov.ops import compose, deployment

    config = _load_config(args)
    if args.config_command == "regions":
        for code in config.regions:
            print(code)
        return 0
    if args.config_command == "workers":
        for worker in deployment.workers(config):
            print(" ".join([worker.name, str(worker.web_port), *worker.args]))
        return 0
    stale: list[tuple[Path, str]] = []
    for generated in compose.generated_files(Path(args.file), config):
        path = generated.path
        try:
            text = path.read_text(encoding="utf-8")
            updated = compose.rewrite(text, config, generated.begin, generated.end,
                                      generated.block)
        except (OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
        if updated != text:
            stale.append((path, updated))
    if args.check:
        for path, _ in stale:
            print(f"{path}: the workers do not match the configuration's regions "
                  f"({', '.join(config.regions)}); run `vprov config compose {args.file}`",
                  file=sys.stderr)
        return 1 if stale else 0
    for path, updated in stale:
        path.write_text(updated, encoding="utf-8")
    path = Path(args.file)
    print(f"{path}: workers {', '.join(w.name for w in deployment.workers(config))}")
    return 0


def _worker_urls(parser: argparse.ArgumentParser) -> None:
    from vprov.ops.deployment import GLOBAL_WEB_PORT, HOST
    from vprov.ops.status import DEFAULT_GLOBAL_URL

    parser.add_argument("--global-url", default=DEFAULT_GLOBAL_URL,
                        help=f"a global worker's web address (default {DEFAULT_GLOBAL_URL})")
    parser.add_argument("--region-url", action="append", metavar="REGION=URL",
                        help="a regional worker's web address; repeatable (default: "
                        f"http://{HOST}:{GLOBAL_WEB_PORT + 1} for the first configured region, "
                        "the next port for the next one, as `vprov config workers` lists)")


def _seconds(text: str) -> float:
    try:
        return reach.seconds(text, "--connect-timeout")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """-v and --connect-timeout, before the command or after it (``vprov -v replay`` and
    ``vprov replay -v``): a command's parser leaves them alone unless they are given there."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="also show librdkafka's log lines (each distinct line once a minute)")
    parser.add_argument("--connect-timeout", type=_seconds, metavar="SECONDS",
                        default=None if top else argparse.SUPPRESS,
                        help="how long Kafka, Redis and the workers may take to answer before "
                        f"the command gives up with exit code {EXIT_UNREACHABLE} (default: "
                        f"${reach.CONNECT_TIMEOUT_ENV} or {reach.DEFAULT_CONNECT_TIMEOUT:g})")


# the subcommands' parsers, one function a command below
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vprov", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="configuration file (default: $VPROV_CONFIG or the "
                        "packaged defaults)")
    _common_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_worker(sub)
    _add_edge(sub)
    _add_topics(sub)
    _add_mirror(sub)
    _add_acls(sub)
    _add_register(sub)
    _add_simulate(sub)
    _add_status(sub)
    _add_replay(sub)
    _add_config(sub)
    _add_deadletter(sub)
    _add_vehicle(sub)
    return parser


def _add_worker(sub: Subcommands) -> None:

    worker = sub.add_parser("worker", help="run a stream worker")
    worker.add_argument("--role", choices=("global", "regional"), required=True)
    worker.add_argument("--region", help="region code, for --role regional")
    worker.add_argument("--web-port", type=int, default=6066)
    worker.add_argument("--web-host", default="127.0.0.1")
    worker.add_argument("--data-dir", default=".run/data", help="RocksDB state directory")
    worker.add_argument("--loglevel", default="info")
    worker.add_argument("--instance", default=os.environ.get("VPROV_INSTANCE") or None,
                        help="this worker's name in its group, stable across restarts (a "
                             "StatefulSet ordinal, a host name; default: host name and web "
                             "port; env VPROV_INSTANCE)")
    worker.set_defaults(func=cmd_worker)


def _add_edge(sub: Subcommands) -> None:
    edge = sub.add_parser("edge", help="bridge an IoT broker and Kafka: device messages to the "
                          "request topic, answers to the devices (docs/operations.md)")
    edge.add_argument("--scope", required=True,
                      help="the broker: global, or a region code (its gateway_endpoint)")
    edge.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                      help="this instance forwards the devices whose id hashes to I of N "
                      "(default 0/1: all); every instance of the scope gets the same N")
    edge.set_defaults(func=cmd_edge)


def _add_topics(sub: Subcommands) -> None:
    topics = sub.add_parser("topics", help="topic administration")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True)
    create = topics_sub.add_parser("create", help="create every topic (idempotent)")
    create.set_defaults(func=cmd_topics)
    _common_options(create)


def _add_mirror(sub: Subcommands) -> None:
    mirror = sub.add_parser("mirror", help="MirrorMaker 2 between the global and the regional "
                            "clusters")
    mirror_sub = mirror.add_subparsers(dest="mirror_command", required=True)
    mirror_config = mirror_sub.add_parser(
        "config", help="print the MirrorMaker 2 properties (dedicated mode), from the topic "
        "catalogue")
    mirror_config.add_argument("-o", "--output", help="write them to this file")
    mirror_config.set_defaults(func=cmd_mirror)


def _add_acls(sub: Subcommands) -> None:
    acl = sub.add_parser("acls", help="the Kafka ACLs of each role, from the topic catalogue")
    acl.add_argument("--role", help="only this role (global, regional-<R>, publisher, gateway, "
                     "subscriber)")
    acl.add_argument("--apply", action="store_true",
                     help="create them on the broker (needs a principal allowed to alter ACLs)")
    acl.add_argument("--principals", action="store_true", help="print the user names only")
    acl.set_defaults(func=cmd_acls)
    _common_options(acl)


def _add_register(sub: Subcommands) -> None:
    register = sub.add_parser("register", help="publish device registrations (JSON Lines)")
    register.add_argument("file")
    register.set_defaults(func=cmd_register)
    _common_options(register)


def _add_simulate(sub: Subcommands) -> None:
    from vprov.ops.status import DEFAULT_GLOBAL_URL

    simulate = sub.add_parser("simulate", help="simulate a fleet's edge software end to end")
    simulate.add_argument("--vehicles", type=int, default=100)
    simulate.add_argument("--devices", default="TCU,IVI",
                          help="ECU types per vehicle, the first is the primary (default TCU,IVI)")
    simulate.add_argument("--regions", help="regions to spread vehicles over, round-robin "
                          "(default: every configured region)")
    simulate.add_argument("--rate", type=float, help="vehicles started per second "
                          "(default: all at once)")
    simulate.add_argument("--invalid", type=float, default=0.0,
                          help="fraction of vehicles that also send one invalid message")
    simulate.add_argument("--duplicates", type=float, default=0.0,
                          help="fraction of requests sent again with the same message_id")
    simulate.add_argument("--shuffle", action="store_true",
                          help="devices send their requests in random order, not primary first")
    simulate.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    simulate.add_argument("--global-url", default=DEFAULT_GLOBAL_URL,
                          help="global worker, to wait until registrations are indexed "
                          f"(default {DEFAULT_GLOBAL_URL})")
    simulate.add_argument("--seed", type=int, help="seed of the random choices")
    simulate.add_argument("--via", choices=("kafka", "mqtt"), default="kafka",
                          help="how devices send: straight onto the topics (kafka, default), or "
                          "as MQTT clients of the IoT brokers, through the edge bridges (mqtt)")
    simulate.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    simulate.set_defaults(func=cmd_simulate)
    _common_options(simulate)


def _add_status(sub: Subcommands) -> None:
    status = sub.add_parser("status", help="one vehicle: the stage it waits in and what to do "
                            "next, its records and recent lifecycle events")
    status.add_argument("vin")
    _worker_urls(status)
    status.add_argument("--events", type=int, default=10, help="events to show (default 10)")
    status.add_argument("--json", action="store_true",
                        help="print the combined JSON, the stage under \"stage\"")
    status.set_defaults(func=cmd_status)
    _common_options(status)


def _add_replay(sub: Subcommands) -> None:
    replay = sub.add_parser("replay", help="lifecycle histories from the topic; --verify audits "
                            "them against the state machine and the tables")
    replay.add_argument("--vin", action="append", help="only this vehicle; repeatable")
    replay.add_argument("--since", help="start at this ISO-8601 time (UTC when no zone)")
    replay.add_argument("--verify", action="store_true",
                        help="fold the histories and compare them with the workers' tables")
    _worker_urls(replay)
    replay.add_argument("--quiet", "-q", action="store_true",
                        help="no histories, only problems and the summary")
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to read the topic (default 60)")
    replay.set_defaults(func=cmd_replay)
    _common_options(replay)


def _add_config(sub: Subcommands) -> None:
    conf = sub.add_parser("config", help="what the configuration implies for a deployment")
    conf_sub = conf.add_subparsers(dest="config_command", required=True)
    conf_sub.add_parser("regions", help="the configured region codes, one a line")
    conf_sub.add_parser("workers", help="the demo's workers, one a line: name, web port, "
                        "`vprov worker` options")
    compose_cmd = conf_sub.add_parser("compose", help="rewrite the worker services of a compose "
                                      "file (docker/compose.yaml) and their Prometheus scrape "
                                      "targets for the configured regions")
    compose_cmd.add_argument("file")
    compose_cmd.add_argument("--check", action="store_true",
                             help="change nothing; exit 1 when the file is not current")
    conf.set_defaults(func=cmd_config)


def _add_deadletter(sub: Subcommands) -> None:
    dead = sub.add_parser("deadletter", help="list, show or redrive dead letters")
    dead_sub = dead.add_subparsers(dest="action", required=True)
    for action, text in (("list", "one line per dead letter"),
                         ("show", "dead letters whole, their payload decoded where possible"),
                         ("redrive", "re-publish the selected records to their source topic")):
        cmd = dead_sub.add_parser(action, help=text)
        cmd.set_defaults(func=cmd_deadletter)
        if action in ("show", "redrive"):
            cmd.add_argument("--id", dest="ids", action="append", metavar="DEAD_LETTER_ID",
                             help="a dead letter's id; repeatable")
        cmd.add_argument("--code", type=int, help="only this error code")
        cmd.add_argument("--source-topic", help="only records that came from this topic")
        cmd.add_argument("--since", help="only dead letters since this ISO-8601 time")
        cmd.add_argument("--timeout", type=float, default=30.0,
                         help="seconds to read the dead-letter topic to its end")
        if action == "redrive":
            cmd.add_argument("--dry-run", action="store_true",
                             help="say what would be re-published, publish nothing")
            cmd.add_argument("--all", action="store_true",
                             help="redrive every dead letter (no other selection needed)")
        _common_options(cmd)


def _add_vehicle(sub: Subcommands) -> None:
    vehicle = sub.add_parser("vehicle", help="after the first boot: move a vehicle, replace a "
                             "device, decommission, reinstate (docs/after-first-boot.md)")
    vehicle_sub = vehicle.add_subparsers(dest="action", required=True)
    for action, text in (
            ("move", "move the vehicle to another region"),
            ("replace-device", "swap a device for a new one registered to the vehicle's system"),
            ("decommission", "take the vehicle out of service: identities revoked, data erased"),
            ("reinstate", "let a decommissioned VIN be queried and bound again"),
            ("show-policy", "the policies for moves, residency and factory resets")):
        cmd = vehicle_sub.add_parser(action, help=text)
        cmd.set_defaults(func=cmd_vehicle)
        _common_options(cmd)
        if action == "show-policy":
            cmd.add_argument("--country", help="also say which region this country is homed in")
            continue
        cmd.add_argument("vin")
        if action == "move":
            cmd.add_argument("--to", required=True, metavar="REGION", help="the target region")
            cmd.add_argument("--policy", choices=("migrate", "reset"), default="migrate",
                             help="migrate: carry the devices' records across (default); "
                             "reset: every device provisions again")
            cmd.add_argument("--force", action="store_true",
                             help="move even if it breaks the country's data residency")
        if action == "replace-device":
            cmd.add_argument("--old", required=True, metavar="DEVICE_ID",
                             help="the device taken out")
            cmd.add_argument("--new", required=True, metavar="DEVICE_ID",
                             help="the device put in (registered to the vehicle's system)")
        cmd.add_argument("--command-id", help="the command's id (default: a new one); send a "
                         "command again with its id to get its outcome, with no second effect")
        cmd.add_argument("--requested-by", default="", help="who asks, for the audit")
        cmd.add_argument("--timeout", type=float, default=90.0,
                         help="seconds to wait for the outcome once the command is delivered "
                         "(default 90; exit code 4 after)")


def _config_or_none(args: argparse.Namespace) -> Config | None:
    try:
        return _load_config(args)
    except ConfigError:
        return None


def _kafka_address(args: argparse.Namespace) -> tuple[str, str]:
    """The bootstrap servers and the setting that chose them, for a late Kafka error."""
    try:
        config = _load_config(args)
    except ConfigError:
        return "the configured bootstrap servers", reach.kafka_setting()
    return config.bootstrap_servers, reach.kafka_setting(config)


def _infrastructure_error(args: argparse.Namespace, exc: Exception) -> str | None:
    """The one line for an exception that says Kafka, Redis or a worker failed; None for any
    other exception. Covers what the commands do not catch themselves: BrokerUnavailable and
    WorkerUnreachable (both Unreachable), a broker lost after the checks (KafkaException), a
    lifecycle topic that cannot be read."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(exc, reach.Unreachable | reach.Refused):
        return str(exc)
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return reach.kafka_failure(exc.args[0], *_kafka_address(args), _config_or_none(args))
    from vprov.kafka.topic_reader import TopicUnreadable
    from vprov.ops.lifecycle_events import LifecycleUnavailable

    if isinstance(exc, LifecycleUnavailable | TopicUnreadable):
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    from vprov.kafka import librdkafka_log

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    librdkafka_log.configure(verbose=args.verbose)
    try:
        if args.func not in (cmd_worker, cmd_edge):  # they keep to their own timeouts
            args.connect_timeout = reach.connect_timeout(args.connect_timeout)
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Kafka, Redis or a worker missing: one line, no traceback
        line = _infrastructure_error(args, exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        refused = isinstance(exc, reach.Refused) or "refused a request" in line
        return EXIT_REFUSED if refused else EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
