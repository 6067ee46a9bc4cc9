"""``forwarder``: thin command-line entry points; each command's work lives in its own module."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from forwarder.core.identify import AMPLITUDE_DEFAULT_MIN_ID_LENGTH

if TYPE_CHECKING:
    from forwarder.settings import Settings

S = TypeVar("S", bound="Settings")


def _settings(kind: type[S] | None = None) -> S | None:
    """The validated settings, or None after printing why not (the caller exits 2)."""
    from forwarder.settings import Settings, SettingsError, load_settings

    try:
        return load_settings(kind or Settings)  # type: ignore[return-value]
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return None


def _kafka_usable(settings: Settings, command: str) -> bool:
    """Connects once; wrong addresses or credentials end here with one line (the caller exits 1)."""
    import asyncio

    from forwarder.kafka.admin import KafkaUnavailable, preflight
    from forwarder.kafka.security import client_options

    try:
        asyncio.run(preflight(client_options(settings)))
    except KafkaUnavailable as exc:
        print(f"forwarder {command}: {exc}", file=sys.stderr)
        return False
    return True


def _exit_before_consuming(signum: int, frame: object) -> None:
    """SIGTERM while starting (imports, preflight): nothing was taken, so there is nothing to finish. Exits at
    once: raising SystemExit from wherever the signal lands (an import, ``asyncio.run``'s clean-up of a Kafka
    client) could leave the process waiting on half-built state (a CI run saw one hang for over 60 s)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _cmd_worker(args: argparse.Namespace) -> int:
    # Until faust installs its own handlers (drain, then stop), a stop request ends the start cleanly.
    signal.signal(signal.SIGTERM, _exit_before_consuming)
    from forwarder import logs
    from forwarder.settings import WorkerSettings

    settings = _settings(WorkerSettings)
    if settings is None:
        return 2
    logs.setup(settings.worker.log_level)
    if not _kafka_usable(settings, "worker"):
        return 1
    from forwarder.worker.app import run_worker

    run_worker(settings)
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    import uvicorn

    from forwarder import logs
    from forwarder.ingest.app import CohortRoute, KafkaSink, RefusedBodies, create_ingest_app
    from forwarder.ingest.auth import Credentials
    from forwarder.kafka.security import client_options
    from forwarder.settings import SettingsError

    settings = _settings()
    if settings is None:
        return 2
    logs.setup(settings.worker.log_level)
    try:
        settings.ingest.require_authentication()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    credentials = Credentials.of(settings.ingest)
    cohorts = None
    if settings.cohorts.webhook_header is not None:  # the route is off without its credential
        cohorts = CohortRoute(
            settings.cohorts.webhook_path,
            Credentials.parse(None, settings.cohorts.webhook_header.get_secret_value()),
            settings.cohorts.topic,
            settings.cohorts.max_webhook_bytes,
        )
    sink = KafkaSink(
        client_options(settings),
        settings.topics.source_topic,
        settings.ingest.kafka_timeout_s,
        max_request_bytes=max(settings.ingest.max_body_bytes, settings.cohorts.max_webhook_bytes) + 64 * 1024,
    )
    refused = RefusedBodies(settings.topics.dlq_topic, settings.topics.dlq_max_value_bytes)
    app = create_ingest_app(sink, credentials, settings.ingest.path, settings.ingest.max_body_bytes, cohorts, refused)
    uvicorn.run(
        app,
        host=settings.ingest.host,
        port=settings.ingest.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.worker.shutdown_deadline_s),
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from forwarder import logs
    from forwarder.commands import replay

    settings = _settings()
    if settings is None:
        return 2
    logs.setup("WARNING")
    if not _kafka_usable(settings, args.command):
        return 1
    try:
        if args.command == "replay":
            return replay.replay_window(
                settings,
                args.start,
                args.end,
                args.events,
                args.dry_run,
                args.api,
                args.rate,
                args.slack_s,
                args.restart,
            )
        return replay.replay_dead_letters(settings, args.reason, args.dry_run, args.api, args.rate)
    except ValueError as exc:
        print(f"forwarder {args.command}: {exc}", file=sys.stderr)
        return 2


def _cmd_report(args: argparse.Namespace) -> int:
    from forwarder import logs
    from forwarder.commands.report import run_report
    from forwarder.ledger.amplitude_side import DashboardError
    from forwarder.ledger.chart import ChartUnavailable
    from forwarder.settings import SettingsError

    settings = _settings()
    if settings is None:
        return 2
    logs.setup("WARNING")
    if not _kafka_usable(settings, "report"):
        return 1
    try:
        return run_report(settings, args.start, args.end, args.by, args.format, args.chart, args.amplitude)
    except (SettingsError, ChartUnavailable) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (DashboardError, LookupError) as exc:
        print(f"forwarder report: {exc}", file=sys.stderr)
        return 1


def _cmd_backfill(args: argparse.Namespace) -> int:
    from forwarder import logs
    from forwarder.commands.backfill import BackfillError, backfill
    from forwarder.settings import BackfillSettings

    settings = _settings(BackfillSettings)
    if settings is None:
        return 2
    logs.setup("WARNING")
    if settings.kafka.bootstrap_servers and not args.dry_run and not _kafka_usable(settings, "backfill"):
        return 1
    try:
        return backfill(
            settings, args.paths, args.events, args.start, args.end, args.dry_run, args.rate, args.restart, args.api
        )
    except (BackfillError, ValueError) as exc:
        print(f"forwarder backfill: {exc}", file=sys.stderr)
        return 2


def _cmd_topics(args: argparse.Namespace) -> int:
    import asyncio

    from forwarder.kafka.security import client_options
    from forwarder.kafka.topics import TopicsError, desired_topics, reconcile

    settings = _settings()
    if settings is None:
        return 2
    if not _kafka_usable(settings, "topics"):
        return 1
    try:
        lines, drift = asyncio.run(reconcile(client_options(settings), desired_topics(settings), apply=args.apply))
    except TopicsError as exc:
        print(f"forwarder topics: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    if drift:
        print("drift remains" + ("" if args.apply else "; run with --apply to change the topics"), file=sys.stderr)
    return 3 if drift else 0


def _cmd_transform(args: argparse.Namespace) -> int:
    from forwarder.commands.transform import read_input, transform
    from forwarder.core.pipeline import MappingRules
    from forwarder.core.select import Selection

    try:
        selection = Selection.parse(args.events)
    except ValueError as exc:
        print(f"forwarder transform: --events: {exc}", file=sys.stderr)
        return 2
    if args.min_id_length < 1:
        print("forwarder transform: --min-id-length must be at least 1", file=sys.stderr)
        return 2
    try:
        data = read_input(args.input)
    except OSError as exc:
        print(f"forwarder transform: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    if (note := selection.describe_extra()) is not None:
        print(f"forwarder transform: --events: {note}", file=sys.stderr)
    rules = MappingRules(selection=selection, min_id_length=args.min_id_length)
    counts = transform(data, rules, sys.stdout.buffer, sys.stderr)
    sys.stdout.buffer.flush()
    if args.summary:
        try:
            with open(args.summary, "w", encoding="utf-8") as handle:
                json.dump(counts.summary(), handle, indent=2)
                handle.write("\n")
        except OSError as exc:
            print(f"forwarder transform: cannot write {args.summary}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


def _cmd_events(args: argparse.Namespace) -> int:
    from schemas.catalogue import CATALOGUE

    if args.format == "json":
        rows = [
            {
                "name": e.name,
                "code": e.code,
                "type": e.type,
                "channel": e.channel,
                "aliases": list(e.aliases),
                "description": e.description,
            }
            for e in CATALOGUE.events
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(e.code) for e in CATALOGUE.events)
    for e in CATALOGUE.events:
        aliases = f"  (also {', '.join(e.aliases)})" if e.aliases else ""
        print(f"{e.code:<{width}}  {e.type:<11}  {e.channel:<19}  {e.name}{aliases}")
    return 0


def _cmd_amplitude_local(args: argparse.Namespace) -> int:
    import uvicorn

    from forwarder.local.amplitude import AmplitudeService, Faults

    faults = Faults.from_dict(json.loads(args.faults)) if args.faults else Faults()
    if args.latency_ms is not None:
        faults.latency_s = args.latency_ms / 1000
    keys = set(args.api_key) if args.api_key else None
    service = AmplitudeService(
        api_keys=keys, faults=faults, keep_events=not args.no_keep_events, secret_key=args.secret_key
    )
    print(f"local Amplitude service on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(service.app, host=args.host, port=args.port, log_level="warning", lifespan="off")
    return 0


def _cmd_moengage_local(args: argparse.Namespace) -> int:
    import uvicorn

    from forwarder.local.moengage import MoEngageFaults, MoEngageService

    service = MoEngageService(
        args.workspace_id,
        args.data_api_key,
        requests_per_minute=args.requests_per_minute,
        apply_delay_s=args.apply_delay_s,
    )
    if args.faults:
        service.faults = MoEngageFaults.from_dict(json.loads(args.faults))
    if args.known_uids:
        with open(args.known_uids, encoding="utf-8") as handle:
            service.known |= {("uid", line.strip()) for line in handle if line.strip()}
    print(
        f"local MoEngage Cohort Sync API on http://{args.host}:{args.port} (workspace {args.workspace_id}, "
        f"{len(service.known)} known users)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(service.app, host=args.host, port=args.port, log_level="warning", lifespan="off")
    return 0


def _cmd_cohorts(args: argparse.Namespace) -> int:
    import asyncio

    from forwarder import logs
    from forwarder.cohorts.pull import ExportError
    from forwarder.commands import cohorts
    from forwarder.settings import CohortPullSettings, CohortWorkerSettings

    if args.action == "demo":
        from forwarder.commands.cohorts_demo import run_cohorts_demo

        if min(args.users, args.leave, args.join) < 0 or args.leave > args.users:
            print(
                "forwarder cohorts demo: --users, --leave and --join must be >= 0, --leave <= --users", file=sys.stderr
            )
            return 2
        return run_cohorts_demo(args.users, args.leave, args.join)
    if args.action == "worker":
        signal.signal(signal.SIGTERM, _exit_before_consuming)
        worker_settings = _settings(CohortWorkerSettings)
        if worker_settings is None:
            return 2
        logs.setup(worker_settings.worker.log_level)
        if not _kafka_usable(worker_settings, "cohorts worker"):
            return 1
        try:
            partitions = asyncio.run(cohorts.topic_partitions(worker_settings, worker_settings.cohorts.topic))
        except LookupError as exc:
            print(f"forwarder cohorts worker: {exc}", file=sys.stderr)
            return 1
        from forwarder.cohorts.worker import run_cohorts_worker

        run_cohorts_worker(worker_settings, partitions)
        return 0
    if args.action == "status":
        settings = _settings()
        if settings is None:
            return 2
        logs.setup("WARNING")
        if not _kafka_usable(settings, "cohorts status"):
            return 1
        try:
            return cohorts.run_status(settings, args.format)
        except LookupError as exc:
            print(f"forwarder cohorts status: {exc}", file=sys.stderr)
            return 1
    pull_settings = _settings(CohortPullSettings)
    if pull_settings is None:
        return 2
    logs.setup("WARNING")
    if args.list:
        try:
            return cohorts.run_list(pull_settings)
        except ExportError as exc:
            print(f"forwarder cohorts pull: {exc}", file=sys.stderr)
            return 1
    if not args.cohort and not args.all:
        print("forwarder cohorts pull: name --cohort ID (repeatable), or --all", file=sys.stderr)
        return 2
    if not _kafka_usable(pull_settings, "cohorts pull"):
        return 1
    try:
        return cohorts.run_pull(pull_settings, args.cohort or [], args.all, args.if_changed, args.schedule)
    except (ExportError, LookupError) as exc:
        print(f"forwarder cohorts pull: {exc}", file=sys.stderr)
        return 1


def _cmd_kafka(args: argparse.Namespace) -> int:
    from forwarder.local.kafka import BrokerError, start_background, stop_background

    try:
        if args.action == "start":
            servers = start_background()
            print(f"KAFKA_BOOTSTRAP_SERVERS={servers}")
        else:
            print("stopped the local broker" if stop_background() else "no local broker was running")
    except BrokerError as exc:
        print(f"forwarder kafka: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from forwarder.commands.demo import run_demo

    return run_demo(total_events=args.events, chart=Path(args.chart))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forwarder", description="MoEngage Streams -> Kafka -> Amplitude.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("worker", help="run the long-running worker (settings from the environment)")
    commands.add_parser("ingest", help="receive MoEngage Streams over HTTP into the source topic")

    transform = commands.add_parser("transform", help="map MoEngage events offline to Amplitude events (JSON Lines)")
    transform.add_argument("input", nargs="?", help="a file; standard input when absent or '-'")
    transform.add_argument(
        "--events",
        default="all",
        metavar="SELECTION",
        help="codes, channels, types or 'all' (default), comma-separated",
    )
    transform.add_argument("--min-id-length", type=int, default=AMPLITUDE_DEFAULT_MIN_ID_LENGTH, metavar="N")
    transform.add_argument("--summary", metavar="PATH", help="write outcome counts as JSON to PATH")

    replay = commands.add_parser("replay", help="re-send the source topic's events whose time is in [from, to)")
    replay.add_argument("--from", dest="start", required=True, metavar="ISO_TIME")
    replay.add_argument("--to", dest="end", required=True, metavar="ISO_TIME")
    replay.add_argument("--events", metavar="SELECTION", help="default: FORWARDER_EVENTS")
    replay.add_argument(
        "--slack-s",
        type=float,
        default=3600.0,
        help="seek this much before --from by record time (records are written after events)",
    )
    replay.add_argument("--restart", action="store_true", help="ignore the progress of an earlier, interrupted run")
    report = commands.add_parser(
        "report", help="per campaign, code, hour or day: what came in, what was delivered, why the rest was not"
    )
    report.add_argument("--from", dest="start", metavar="ISO_TIME", help="events whose own time is from here")
    report.add_argument("--to", dest="end", metavar="ISO_TIME", help="... up to here (exclusive)")
    report.add_argument("--by", choices=["campaign", "code", "hour", "day"], default="campaign")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--chart", metavar="PATH.png", help="also draw the report as stacked bars")
    report.add_argument(
        "--amplitude",
        action="store_true",
        help="also ask Amplitude's Dashboard API what it counted, per event type and day",
    )
    backfill = commands.add_parser(
        "backfill", help="send MoEngage data exports or saved Streams bodies (files, folders, .gz) to Amplitude"
    )
    backfill.add_argument("paths", nargs="+", metavar="PATH", help=".json, .jsonl or their .gz; folders are searched")
    backfill.add_argument("--events", metavar="SELECTION", help="default: FORWARDER_EVENTS")
    backfill.add_argument("--from", dest="start", metavar="ISO_TIME", help="only events at or after (event time)")
    backfill.add_argument("--to", dest="end", metavar="ISO_TIME", help="only events before (event time)")
    backfill.add_argument("--restart", action="store_true", help="ignore the checkpoint of an earlier run")
    replay_dlq = commands.add_parser(
        "replay-dlq", help="re-process dead letters; what still fails is dead-lettered again"
    )
    replay_dlq.add_argument("--reason", help="only dead letters whose reason starts with this")
    for command in (replay, replay_dlq, backfill):
        command.add_argument("--dry-run", action="store_true", help="send nothing; report what would be sent")
        command.add_argument(
            "--api",
            choices=["batch", "http"],
            default="batch",
            help="Amplitude API (default: batch, meant for historical loads)",
        )
        command.add_argument("--rate", type=float, default=2000.0, help="events per second at most (0: no limit)")

    topics = commands.add_parser("topics", help="create the source, retry, dead-letter and ledger topics; report drift")
    topics.add_argument("--apply", action="store_true", help="change existing topics to match the settings")

    events = commands.add_parser("events", help="list the event catalogue")
    events.add_argument("--format", choices=["table", "json"], default="table")

    local = commands.add_parser("amplitude-local", help="serve the local Amplitude-compatible service")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=8765)
    local.add_argument("--api-key", action="append", help="an accepted key (repeatable); default: any key")
    local.add_argument("--faults", help='fault injection as JSON, e.g. \'{"error_rates": {"503": 0.1}}\'')
    local.add_argument("--no-keep-events", action="store_true", help="count accepted events without keeping them")
    local.add_argument(
        "--latency-ms", type=float, metavar="MS", help="answer every request after this delay (e.g. 150)"
    )
    local.add_argument("--secret-key", help="the Dashboard API's secret key; default: any non-empty one")

    moengage = commands.add_parser("moengage-local", help="serve the local MoEngage Cohort Sync API")
    moengage.add_argument("--host", default="127.0.0.1")
    moengage.add_argument("--port", type=int, default=8766)
    moengage.add_argument("--workspace-id", default="local-workspace")
    moengage.add_argument("--data-api-key", default="local-data-key", help="the Data API key it accepts")
    moengage.add_argument("--requests-per-minute", type=int, default=300)
    moengage.add_argument("--apply-delay-s", type=float, default=0.0, help="accepted now, applied this much later")
    moengage.add_argument("--known-uids", metavar="FILE", help="users MoEngage knows: one uid per line")
    moengage.add_argument("--faults", help='fault injection as JSON, e.g. \'{"error_rates": {"503": 0.1}}\'')

    cohorts = commands.add_parser("cohorts", help="Amplitude cohorts -> MoEngage segments: worker, pull, status")
    cohort_actions = cohorts.add_subparsers(dest="action", required=True, metavar="ACTION")
    cohort_actions.add_parser("worker", help="run the cohort sync worker (a deployment of its own)")
    pull = cohort_actions.add_parser("pull", help="export cohorts from Amplitude into the cohorts topic as snapshots")
    pull.add_argument("--cohort", action="append", metavar="ID", help="a cohort id (repeatable)")
    pull.add_argument("--all", action="store_true", help="every cohort that is not archived")
    pull.add_argument(
        "--if-changed", action="store_true", help="skip cohorts whose lastComputed did not move since the last pull"
    )
    pull.add_argument("--schedule", choices=["hourly", "daily"], help="repeat at every whole hour or every midnight")
    pull.add_argument("--list", action="store_true", help="list Amplitude's cohorts and exit")
    status = cohort_actions.add_parser("status", help="per cohort: members, sent, unmapped, pending, dead letters")
    status.add_argument("--format", choices=["table", "json"], default="table")
    cohorts_demo = cohort_actions.add_parser("demo", help="a 5,000-user cohort synced, then 300 leave and 200 join")
    cohorts_demo.add_argument("--users", type=int, default=5000)
    cohorts_demo.add_argument("--leave", type=int, default=300)
    cohorts_demo.add_argument("--join", type=int, default=200)

    kafka = commands.add_parser("kafka", help="start or stop a local Apache Kafka broker in the background")
    kafka.add_argument("action", choices=["start", "stop"])

    demo = commands.add_parser("demo", help="the whole path locally: broker, Amplitude service, traffic, worker")
    demo.add_argument("--events", type=int, default=5000)
    demo.add_argument(
        "--chart", default=".local/demo-report.png", metavar="PATH.png", help="where the report's chart goes"
    )
    return parser


HANDLERS = {
    "worker": _cmd_worker,
    "ingest": _cmd_ingest,
    "replay": _cmd_replay,
    "topics": _cmd_topics,
    "backfill": _cmd_backfill,
    "replay-dlq": _cmd_replay,
    "transform": _cmd_transform,
    "events": _cmd_events,
    "amplitude-local": _cmd_amplitude_local,
    "moengage-local": _cmd_moengage_local,
    "kafka": _cmd_kafka,
    "cohorts": _cmd_cohorts,
    "demo": _cmd_demo,
    "report": _cmd_report,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = HANDLERS[args.command](args)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the last resort: one line, never a traceback (FORWARDER_DEBUG=1 shows it)
        import os

        if os.environ.get("FORWARDER_DEBUG"):
            raise
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"forwarder {args.command}: {type(exc).__name__}: {reason}".rstrip(": "), file=sys.stderr)
        code = 1
    sys.exit(code)
