"""``forwarder report``: per campaign, event code, hour or day, what came in, what Amplitude got, and why the
rest did not; from the ledger topic, optionally next to Amplitude's own count (``--amplitude``).

Exit status: 0 when the totals add up (and, with ``--amplitude``, every day matches), 3 when something does not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Literal

import orjson

from forwarder import logs
from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.command import Command, CommandError, require_kafka, usage_error
from forwarder.commands.replay import parse_time
from forwarder.kafka.admin import partition_offsets
from forwarder.kafka.ledger import read_ledger
from forwarder.kafka.security import client_options
from forwarder.ledger.amplitude_side import (
    Comparison,
    amplitude_counts,
    compare,
    delivered_by_type_and_day,
)
from forwarder.ledger.chart import ChartUnavailable, draw_chart
from forwarder.ledger.holes import find_holes, lost_ranges
from forwarder.ledger.records import LedgerRecord
from forwarder.ledger.report import Grouping, Report, Window, build_report, off_the_hour, render, zone_name
from forwarder.ledger.settle import settle
from forwarder.settings import ForwarderSettings, SettingsError, load_settings, time_zone
from forwarder.text import align, csv_text

MISMATCH_EXIT = 3
Format = Literal["table", "csv", "json"]


@dataclass
class Reconciliation:
    report: Report
    comparisons: list[Comparison] | None
    settled: list[LedgerRecord]

    @property
    def holds(self) -> bool:
        _, balanced = self.report.balance()
        return balanced and not self.report.holes and not any(c.differs for c in self.comparisons or [])


def window_of(start: str | None, end: str | None) -> Window:
    window = Window(parse_time(start) if start else None, parse_time(end) if end else None)
    if window.start_ms is not None and window.end_ms is not None and window.end_ms <= window.start_ms:
        raise ValueError("--to must be after --from")
    return window


async def reconcile(
    settings: ForwarderSettings, by: Grouping, window: Window, amplitude: bool, zone: tzinfo = UTC
) -> Reconciliation:
    records, skipped = await read_ledger(client_options(settings), settings.topics.ledger_topic)
    settled = settle(records)
    report = build_report(settled, by, window, skipped=skipped, superseded=len(records) - len(settled), zone=zone)
    live_topics = (settings.topics.source_topic, settings.topics.retry_topic)
    report.holes = find_holes(records, await _committed(settings, live_topics), live_topics)
    report.lost = lost_ranges(records)
    comparisons = await _amplitude_side(settings, settled, window, zone) if amplitude else None
    if (amplitude or by in ("hour", "day")) and off_the_hour(zone, _hours(settled)):
        print(
            f"forwarder report: {zone_name(zone)} is not a whole number of hours from UTC and the ledger counts per "
            "UTC hour: the half hour at each day's edge is filed in the neighbouring day",
            file=sys.stderr,
        )
    return Reconciliation(report, comparisons, settled)


def _hours(settled: list[LedgerRecord]) -> set[int]:
    return {key[3] for record in settled for key in record.outcomes.counts}


async def _committed(settings: ForwarderSettings, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """The worker group's committed offset per partition of ``topics`` (partitions it never committed left out)."""
    committed: dict[tuple[str, int], int] = {}
    for topic in topics:
        _, offsets = await partition_offsets(client_options(settings), topic, settings.topics.group_id)
        committed.update({(topic, partition): offset for partition, offset in offsets.items() if offset > 0})
    return committed


async def _amplitude_side(
    settings: ForwarderSettings, settled: list[LedgerRecord], window: Window, zone: tzinfo
) -> list[Comparison]:
    key, secret = settings.amplitude.api_key, settings.amplitude.secret_key
    if key is None or secret is None:
        missing = [name for name, v in (("AMPLITUDE_API_KEY", key), ("AMPLITUDE_SECRET_KEY", secret)) if v is None]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(f"{m}: is required by --amplitude" for m in missing))
    delivered = delivered_by_type_and_day(settled, window, zone)
    days_by_type: dict[str, set[str]] = {}
    for event_type, day in delivered.keys:
        days_by_type.setdefault(event_type, set()).add(day)
    if not days_by_type:
        return []
    client = DashboardAPI(settings.amplitude.dashboard_base_url, key, secret)
    try:
        counted = await amplitude_counts(client, days_by_type)
    finally:
        await client.aclose()
    return compare(delivered, counted)


def render_comparisons(comparisons: list[Comparison], fmt: Format) -> str:
    if fmt == "csv":
        return csv_text(
            [["event_type", "day", "delivered", "resent", "amplitude_counted", "verdict"]]
            + [[c.event_type, c.day, c.delivered, c.resent, c.counted, c.verdict] for c in comparisons]
        )
    header = ("event type", "day", "delivered", "re-sent", "Amplitude counted", "")
    rows = [header] + [
        (c.event_type, c.day, str(c.delivered), str(c.resent), str(c.counted), c.verdict) for c in comparisons
    ]
    text = align(rows, text_columns=2)
    differing = sum(c.differs for c in comparisons)
    text.append(
        "Amplitude counted what was delivered on every row"
        if not differing
        else f"{differing} of {len(comparisons)} rows differ from what was delivered"
    )
    return "\n".join(text)


def as_json(result: Reconciliation) -> str:
    body = orjson.loads(render(result.report, "json"))
    if result.comparisons is not None:
        body["amplitude"] = [
            {
                "event_type": c.event_type,
                "day": c.day,
                "delivered": c.delivered,
                "resent": c.resent,
                "resent_dead_letters": c.resent_dead_letters,
                "amplitude_counted": c.counted,
                "verdict": c.verdict,
            }
            for c in result.comparisons
        ]
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


def print_reconciliation(result: Reconciliation, fmt: Format) -> None:
    if fmt == "json":
        print(as_json(result))
        return
    print(render(result.report, fmt))
    if result.comparisons is not None:
        print()
        print(render_comparisons(result.comparisons, fmt))


def run_report(
    settings: ForwarderSettings,
    start: str | None,
    end: str | None,
    by: Grouping,
    fmt: Format,
    chart: str | None,
    amplitude: bool,
    timezone: str | None = None,
) -> int:
    """``timezone``: an IANA name; None: ``AMPLITUDE_PROJECT_TIMEZONE``."""
    try:
        window = window_of(start, end)
        zone = time_zone(timezone or settings.amplitude.project_timezone)
    except ValueError as exc:
        raise usage_error(("--timezone: " if timezone else "") + str(exc)) from None
    try:
        result = asyncio.run(reconcile(settings, by, window, amplitude, zone))
    except (DashboardError, LookupError) as exc:
        raise CommandError(str(exc)) from None
    print_reconciliation(result, fmt)
    if chart:
        title = f"MoEngage -> Amplitude by {by}" + (f", {start} to {end}" if start or end else "")
        try:
            path = draw_chart(result.report, Path(chart), title)
        except ChartUnavailable as exc:
            raise usage_error(str(exc)) from None
        print(f"chart: {path}", file=sys.stderr)
    return 0 if result.holds else MISMATCH_EXIT


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", metavar="ISO_TIME", help="events whose own time is from here")
    parser.add_argument("--to", dest="end", metavar="ISO_TIME", help="... up to here (exclusive)")
    parser.add_argument("--by", choices=["campaign", "code", "hour", "day", "route"], default="campaign")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    parser.add_argument("--chart", metavar="PATH.png", help="also draw the report as stacked bars")
    parser.add_argument(
        "--amplitude",
        action="store_true",
        help="also ask Amplitude's Dashboard API what it counted, per event type and day",
    )
    parser.add_argument(
        "--timezone",
        metavar="NAME",
        help="the IANA zone hours and days are counted in (default AMPLITUDE_PROJECT_TIMEZONE, else UTC)",
    )


def _run(args: argparse.Namespace) -> int:
    if args.timezone is not None:
        try:
            time_zone(args.timezone)
        except ValueError as exc:
            raise usage_error(f"--timezone: {exc}") from None
    settings = load_settings(ForwarderSettings)
    logs.setup("WARNING")
    require_kafka(settings)
    return run_report(settings, args.start, args.end, args.by, args.format, args.chart, args.amplitude, args.timezone)


COMMAND = Command(_arguments, _run)
