"""``forwarder worker``: the long-running forwarder, configured by its settings alone."""

from __future__ import annotations

import argparse

from forwarder import logs
from forwarder.command import Command, no_arguments, require_kafka
from forwarder.settings import WorkerSettings, load_settings


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(WorkerSettings)
    logs.setup(settings.worker.log_level)
    require_kafka(settings)
    from forwarder.worker.app import run_worker  # faust: imported once the settings and Kafka are known good

    run_worker(settings)
    return 0


COMMAND = Command(no_arguments, _run)
