"""``forwarder topics [--apply]``: create both halves' topics, or report (and fix) how they drifted."""

from __future__ import annotations

import argparse
import asyncio
import sys

from forwarder.command import Command, CommandError, require_kafka
from forwarder.kafka.security import client_options
from forwarder.kafka.topics import TopicsError, desired_topics, reconcile
from forwarder.settings import TopicsSettings, load_settings

# Topics differ from the settings and were left so (without --apply, or what Kafka cannot change).
DRIFT_EXIT = 3


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true", help="change existing topics to match the settings")


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(TopicsSettings)
    require_kafka(settings)
    try:
        lines, drift = asyncio.run(reconcile(client_options(settings), desired_topics(settings), apply=args.apply))
    except TopicsError as exc:
        raise CommandError(str(exc)) from None
    print("\n".join(lines))
    if drift:
        print("drift remains" + ("" if args.apply else "; run with --apply to change the topics"), file=sys.stderr)
    return DRIFT_EXIT if drift else 0


COMMAND = Command(_arguments, _run)
