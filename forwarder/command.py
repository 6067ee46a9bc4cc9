"""What every command shares: how it declares itself, its one error type, its settings, the Kafka check.

A command module declares its arguments and runs them (``Command``); ``forwarder/cli.py`` registers the commands
and is the one place where errors become exit codes: ``CommandError`` (its own code), ``SettingsError`` (2),
``KafkaUnavailable`` (1).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is imported before a worker's stop handler is in place: it stays light
    from forwarder.settings import HasKafka


@dataclass(frozen=True)
class Command:
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands configured by their settings alone."""


class CommandError(Exception):
    """One line for the user and the exit code: 2 for input the user can fix, 1 for what failed."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def usage_error(message: str) -> CommandError:
    return CommandError(message, 2)


def require_kafka(settings: HasKafka, timeout_s: float = 30.0) -> None:
    """Connects once; wrong addresses or credentials end here with one line (``KafkaUnavailable``). A connection
    that sends credentials or records in clear is said first."""
    from forwarder.kafka.admin import preflight
    from forwarder.kafka.security import cleartext_warning, client_options

    if (warning := cleartext_warning(settings)) is not None:
        logging.getLogger("forwarder.kafka").warning(warning)
    asyncio.run(preflight(client_options(settings), timeout_s=timeout_s))


def _exit_before_consuming(signum: int, frame: object) -> None:
    """SIGTERM while starting (imports, preflight): nothing was taken, so there is nothing to finish. Exits at
    once: raising SystemExit from wherever the signal lands (an import, ``asyncio.run``'s clean-up of a Kafka
    client) could leave the process waiting on half-built state (a CI run saw one hang for over 60 s)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def stop_at_once_while_starting() -> None:
    """Until faust installs its own handlers (drain, then stop), a stop request ends the start cleanly."""
    signal.signal(signal.SIGTERM, _exit_before_consuming)
