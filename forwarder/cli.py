"""``forwarder``: the registry of commands, and the one place where their errors become exit codes.

Each command module declares its arguments and runs them (``forwarder.command.Command``); only the chosen one is
imported, so ``forwarder worker`` never loads the report's or the demos' dependencies. This is the one module that
reaches both halves and the devkit: the halves never import each other, and the product never imports the devkit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from forwarder.command import Command, CommandError, stop_at_once_while_starting

# name -> (where its Command is: "module:ATTRIBUTE", or a function that builds it; its one-line help)
Entry = tuple[str | Callable[[], Command], str]


def _ingest_with_cohort_webhooks() -> Command:
    """The Streams route, and the cohort webhooks' route when ``COHORTS_WEBHOOK_HEADER`` is set."""
    from forwarder.cohorts.webhook import CohortRoute
    from forwarder.commands.ingest import ingest_command

    return ingest_command(lambda settings: [r] if (r := CohortRoute.of(settings.cohorts)) is not None else [])


def _check_both_halves() -> Command:
    """Kafka, the topics and Amplitude (the forwarder half), then MoEngage (the cohort half)."""
    from forwarder.checks import check_command
    from forwarder.cohorts.check import COHORT_CHECKS
    from forwarder.commands.check import FORWARDER_CHECKS

    return check_command([*FORWARDER_CHECKS, *COHORT_CHECKS])


COMMANDS: dict[str, Entry] = {
    "worker": ("forwarder.commands.worker:COMMAND", "run the long-running worker (settings from the environment)"),
    "ingest": (_ingest_with_cohort_webhooks, "receive MoEngage Streams over HTTP into the source topic"),
    "transform": ("forwarder.commands.transform:COMMAND", "map MoEngage events offline to Amplitude events (JSONL)"),
    "replay": ("forwarder.commands.replay:REPLAY", "re-send the source topic's events whose time is in [from, to)"),
    "report": (
        "forwarder.commands.report:COMMAND",
        "per campaign, code, hour or day: what came in, what was delivered, why the rest was not",
    ),
    "backfill": (
        "forwarder.commands.backfill:COMMAND",
        "send MoEngage data exports or saved Streams bodies (files, folders, .gz) to Amplitude",
    ),
    "replay-dlq": (
        "forwarder.commands.replay:REPLAY_DLQ",
        "re-process dead letters; what still fails is dead-lettered again",
    ),
    "topics": (
        "forwarder.commands.topics:COMMAND",
        "create both halves' topics (source, retry, dead letters, ledger, cohorts); report drift",
    ),
    "events": ("forwarder.commands.events:COMMAND", "list the event catalogue"),
    "taxonomy": (
        "forwarder.commands.taxonomy:COMMAND",
        "check (or --apply) the forwarded event types in Amplitude's taxonomy; Delivery events inactive",
    ),
    "check": (_check_both_halves, "check Kafka, the topics, Amplitude's key and residency, MoEngage's credentials"),
    "amplitude-local": ("devkit.commands:AMPLITUDE_LOCAL", "serve the local Amplitude-compatible service"),
    "moengage-local": ("devkit.commands:MOENGAGE_LOCAL", "serve the local MoEngage Cohort Sync API"),
    "kafka": ("devkit.commands:KAFKA", "start or stop a local Apache Kafka broker in the background"),
    "demo": ("devkit.commands:DEMO", "the whole path locally: broker, Amplitude service, traffic, worker"),
}
# The long-running consumers: a stop request while they start (imports, settings, the Kafka check) ends them at
# once, cleanly, until faust installs its own handlers (drain, then stop).
CONSUMERS = (["worker"], ["cohorts", "worker"])
# Commands with actions: ``forwarder cohorts worker``.
GROUPS: dict[str, tuple[str, dict[str, Entry]]] = {
    "cohorts": (
        "Amplitude cohorts -> MoEngage segments: worker, pull, status",
        {
            "worker": ("forwarder.cohorts.commands:WORKER", "run the cohort sync worker (a deployment of its own)"),
            "pull": (
                "forwarder.cohorts.commands:PULL",
                "export cohorts from Amplitude into the cohorts topic as snapshots",
            ),
            "status": (
                "forwarder.cohorts.commands:STATUS",
                "per cohort: members, sent, unmapped, pending, dead letters",
            ),
            "demo": ("devkit.commands:COHORTS_DEMO", "a 5,000-user cohort synced, then 300 leave and 200 join"),
        },
    )
}


def _load(where: str | Callable[[], Command]) -> Command:
    if callable(where):
        return where()
    module, _, attribute = where.partition(":")
    command: Command = getattr(importlib.import_module(module), attribute)
    return command


def _add(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    entries: dict[str, Entry],
    chosen: str | None,
    prefix: str,
) -> None:
    for name, (where, help_text) in entries.items():
        parser = actions.add_parser(name, help=help_text)
        parser.set_defaults(name=f"{prefix}{name}")
        if name == chosen:  # only the chosen command is imported
            command = _load(where)
            command.arguments(parser)
            parser.set_defaults(run=command.run)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forwarder", description="MoEngage Streams -> Kafka -> Amplitude.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    words = [a for a in argv if not a.startswith("-")]
    chosen = words[0] if words else None
    _add(commands, COMMANDS, chosen, "")
    for group, (help_text, actions) in GROUPS.items():
        group_parser = commands.add_parser(group, help=help_text)
        subactions = group_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        _add(subactions, actions, words[1] if chosen == group and len(words) > 1 else None, f"{group} ")
    return parser


def _run(args: argparse.Namespace) -> int:
    """Runs the command; every error it raises becomes one line and an exit code here, never a traceback."""
    from forwarder.kafka.admin import KafkaUnavailable
    from forwarder.settings import SettingsError

    try:
        code: int = args.run(args)
    except CommandError as exc:
        print(f"forwarder {args.name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KafkaUnavailable as exc:
        print(f"forwarder {args.name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (forwarder events | head): nothing is left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the last resort: one line (FORWARDER_DEBUG=1 shows the traceback)
        if os.environ.get("FORWARDER_DEBUG"):
            raise
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"forwarder {args.name}: {type(exc).__name__}: {reason}".rstrip(": "), file=sys.stderr)
        return 1
    return code


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if [a for a in argv if not a.startswith("-")][:2] in CONSUMERS:
        stop_at_once_while_starting()
    sys.exit(_run(build_parser(argv).parse_args(argv)))
