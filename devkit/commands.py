"""The devkit's commands: the local stand-ins and the demos, behind the same ``forwarder`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from forwarder.command import Command, CommandError, usage_error
from forwarder.settings import time_zone


def _amplitude_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", action="append", help="an accepted key (repeatable); default: any key")
    parser.add_argument("--faults", help='fault injection as JSON, e.g. \'{"error_rates": {"503": 0.1}}\'')
    parser.add_argument("--no-keep-events", action="store_true", help="count accepted events without keeping them")
    parser.add_argument(
        "--latency-ms", type=float, metavar="MS", help="answer every request after this delay (e.g. 150)"
    )
    parser.add_argument("--secret-key", help="the Dashboard API's secret key; default: any non-empty one")
    parser.add_argument(
        "--timezone", default="UTC", metavar="NAME", help="the project's time zone: the Dashboard API's days"
    )


def _faults_json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise usage_error(f"--faults is not JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise usage_error("--faults must be a JSON object")
    return loaded


def _amplitude_local(args: argparse.Namespace) -> int:
    import uvicorn

    from devkit.amplitude import AmplitudeService, Faults

    faults_json = _faults_json(args.faults)
    faults = Faults.from_dict(faults_json) if faults_json else Faults()
    if args.latency_ms is not None:
        faults.latency_s = args.latency_ms / 1000
    keys = set(args.api_key) if args.api_key else None
    try:
        zone = time_zone(args.timezone).key
    except ValueError as exc:
        raise usage_error(f"--timezone: {exc}") from None
    service = AmplitudeService(
        api_keys=keys, faults=faults, keep_events=not args.no_keep_events, secret_key=args.secret_key, timezone=zone
    )
    print(f"local Amplitude service on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(service.app, host=args.host, port=args.port, log_level="warning", lifespan="off")
    return 0


def _moengage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--workspace-id", default="local-workspace")
    parser.add_argument("--data-api-key", default="local-data-key", help="the Data API key it accepts")
    parser.add_argument("--requests-per-minute", type=int, default=300)
    parser.add_argument("--apply-delay-s", type=float, default=0.0, help="accepted now, applied this much later")
    parser.add_argument("--known-uids", metavar="FILE", help="users MoEngage knows: one uid per line")
    parser.add_argument("--faults", help='fault injection as JSON, e.g. \'{"error_rates": {"503": 0.1}}\'')


def _moengage_local(args: argparse.Namespace) -> int:
    import uvicorn

    from devkit.moengage import MoEngageFaults, MoEngageService

    service = MoEngageService(
        args.workspace_id,
        args.data_api_key,
        requests_per_minute=args.requests_per_minute,
        apply_delay_s=args.apply_delay_s,
    )
    faults_json = _faults_json(args.faults)
    if faults_json:
        service.faults = MoEngageFaults.from_dict(faults_json)
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


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop"])


def _kafka(args: argparse.Namespace) -> int:
    from devkit.kafka import BrokerError, start_background, stop_background

    try:
        if args.action == "start":
            print(f"KAFKA_BOOTSTRAP_SERVERS={start_background()}")
        else:
            print("stopped the local broker" if stop_background() else "no local broker was running")
    except BrokerError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument(
        "--chart", default=".local/demo-report.png", metavar="PATH.png", help="where the report's chart goes"
    )


def _demo(args: argparse.Namespace) -> int:
    from devkit.demo import run_demo

    return run_demo(total_events=args.events, chart=Path(args.chart))


def _cohorts_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--leave", type=int, default=300)
    parser.add_argument("--join", type=int, default=200)


def _cohorts_demo(args: argparse.Namespace) -> int:
    from devkit.cohorts_demo import run_cohorts_demo

    if min(args.users, args.leave, args.join) < 0 or args.leave > args.users:
        raise usage_error("--users, --leave and --join must be >= 0, --leave <= --users")
    return run_cohorts_demo(args.users, args.leave, args.join)


AMPLITUDE_LOCAL = Command(_amplitude_arguments, _amplitude_local)
MOENGAGE_LOCAL = Command(_moengage_arguments, _moengage_local)
KAFKA = Command(_kafka_arguments, _kafka)
DEMO = Command(_demo_arguments, _demo)
COHORTS_DEMO = Command(_cohorts_demo_arguments, _cohorts_demo)
