"""``forwarder taxonomy [--apply]``: the forwarded catalogue events in the project's taxonomy, Delivery events
inactive (``forwarder.amplitude.taxonomy``).

Exit status: 0 when nothing differs (or ``--apply`` fixed it), 3 when something differs.
"""

from __future__ import annotations

import argparse
import asyncio

from forwarder import logs
from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.amplitude.taxonomy import Difference, apply, differences, read_taxonomy, wanted_types
from forwarder.command import Command, CommandError
from forwarder.core.select import Selection
from forwarder.settings import TaxonomySettings, load_settings
from forwarder.text import align

DIFFERS_EXIT = 3
# A rate limit or an outage ends the command after a few tries: it is run by hand or by CI, not in the worker.
ATTEMPTS = 4


def render(found: list[Difference], checked: int) -> str:
    if not found:
        return f"the taxonomy holds all {checked} forwarded MoEngage event types as they should be"
    rows = [("event type", "differs", "activity wanted")] + [
        (d.event_type, ", ".join(d.what), "active" if d.wanted.active else "inactive") for d in found
    ]
    return "\n".join([*align(rows, text_columns=2), f"{len(found)} of {checked} forwarded event types differ"])


async def reconcile_taxonomy(settings: TaxonomySettings, fix: bool) -> tuple[list[Difference], int]:
    amplitude = settings.amplitude
    wanted = wanted_types(Selection.parse(settings.worker.events))
    api = DashboardAPI(amplitude.dashboard_base_url, amplitude.api_key, amplitude.secret_key, attempts=ATTEMPTS)
    try:
        found = differences(wanted, await read_taxonomy(api))
        if fix and found:
            await apply(api, found)
    finally:
        await api.aclose()
    return found, len(wanted)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true", help="create and update what differs (never deletes)")


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(TaxonomySettings)
    logs.setup("WARNING")
    try:
        found, checked = asyncio.run(reconcile_taxonomy(settings, args.apply))
    except DashboardError as exc:
        raise CommandError(str(exc)) from None
    print(render(found, checked))
    if args.apply:
        if found:
            print(f"applied: {sum(d.missing for d in found)} created, {sum(not d.missing for d in found)} updated")
        return 0
    return DIFFERS_EXIT if found else 0


COMMAND = Command(_arguments, _run)
