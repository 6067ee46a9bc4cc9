"""The reconciliation report: settled ledger records -> rows per campaign, event code, hour or day.

Pure: the command reads the ledger and the Amplitude counts; this module only adds up and renders. Each row keeps
two tallies: the live traffic (``stream`` and ``retry`` records: read = delivered + filtered + dropped +
dead-lettered) and what ``replay``, ``replay-dlq`` and ``backfill`` re-sent (shown as re-sent, never as new
traffic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import orjson

from forwarder.core.counting import NO_HOUR, OutcomeCounter
from forwarder.core.slot import HOUR_MS
from forwarder.kafka.order import OffsetRange
from forwarder.ledger.records import LIVE_SOURCES, LedgerRecord
from forwarder.summary import balance_line
from forwarder.text import align, csv_text

Grouping = Literal["campaign", "code", "hour", "day", "route"]
GROUPINGS: tuple[Grouping, ...] = ("campaign", "code", "hour", "day", "route")
FINAL = ("delivered", "filtered", "dropped", "dead_lettered")
NO_TIME = "(no event time)"


@dataclass(frozen=True)
class Window:
    """[start, end) in epoch ms on the events' own time; an hour counts when it overlaps the window. Events
    without a usable time count only when the window is open on both sides."""

    start_ms: int | None = None
    end_ms: int | None = None

    def holds(self, hour: int) -> bool:
        if self.start_ms is None and self.end_ms is None:
            return True
        if hour == NO_HOUR:
            return False
        return (self.start_ms is None or (hour + 1) * HOUR_MS > self.start_ms) and (
            self.end_ms is None or hour * HOUR_MS < self.end_ms
        )


@dataclass
class Row:
    label: str
    live: OutcomeCounter = field(default_factory=OutcomeCounter)
    resent: OutcomeCounter = field(default_factory=OutcomeCounter)
    # The route (Amplitude project) of the row, when the ledger holds several and the rows are not by route.
    route: str | None = None

    @property
    def title(self) -> str:
        return f"{self.route}: {self.label}" if self.route is not None else self.label

    @property
    def read(self) -> int:
        return sum(self.live.total(outcome) for outcome in FINAL)

    def as_dict(self) -> dict[str, Any]:
        live = self.live
        return {
            "read": self.read,
            "delivered": live.total("delivered"),
            "filtered": live.total("filtered"),
            "dropped": live.total("dropped"),
            "dead_lettered": live.total("dead_lettered"),
            "resent": self.resent.total("delivered"),
            "filtered_by_reason": dict(sorted(live.reasons("filtered").items())),
            "dropped_by_reason": dict(sorted(live.reasons("dropped").items())),
            "dead_lettered_by_reason": dict(sorted(live.reasons("dead_lettered").items())),
            "resent_by_outcome": dict(sorted(self.resent.by_outcome.items())),
        }


@dataclass
class Report:
    by: Grouping
    rows: list[Row]
    total: Row
    # Records this version could not read, and records superseded by a re-processing of their range.
    skipped: int = 0
    superseded: int = 0
    # Live events parked for a retry at least once (each counted once, where its retry settled it).
    parked: int = 0
    # Offsets of the live topics below the group's commit that no ledger record covers (never processed), and
    # ranges reported lost to retention.
    holes: list[OffsetRange] = field(default_factory=list)
    lost: list[OffsetRange] = field(default_factory=list)
    # Where hours and days begin (AMPLITUDE_PROJECT_TIMEZONE, ``--timezone``).
    zone: tzinfo = UTC
    # Several routes in the ledger: each row is one route's, and the route is a column.
    routed: bool = False

    def balance(self) -> tuple[str, bool]:
        return balance_line(self.total.live)


def label_of(by: Grouping, code: str, hour: int, campaign: str, zone: tzinfo = UTC, route: str = "") -> str:
    if by == "route":
        return route
    if by == "campaign":
        return campaign or "(no campaign)"
    if by == "code":
        return code or "(no event code)"
    if hour == NO_HOUR:
        return NO_TIME
    moment = datetime.fromtimestamp(hour * 3600, zone)
    if by == "day":
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%dT%H:00Z") if zone is UTC else moment.isoformat(timespec="minutes")


def zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def off_the_hour(zone: tzinfo, hours: Iterable[int]) -> bool:
    """The ledger counts per UTC hour: in a zone whose offset is not whole hours (Asia/Kolkata, +05:30) an hour
    lies across two local days, and each day's edge is filed in one of them."""
    return any(datetime.fromtimestamp(hour * 3600, zone).minute for hour in hours if hour != NO_HOUR)


def build_report(
    settled: Iterable[LedgerRecord],
    by: Grouping,
    window: Window = Window(),
    skipped: int = 0,
    superseded: int = 0,
    zone: tzinfo = UTC,
) -> Report:
    settled = list(settled)
    routed = by != "route" and len({key[5] for record in settled for key in record.outcomes.counts}) > 1
    rows: dict[tuple[str | None, str], Row] = {}
    total = Row("total")
    parked = 0
    for record in settled:
        live = record.source in LIVE_SOURCES
        if live:
            parked += record.deferred
        for key, n in record.outcomes.counts.items():
            outcome, _reason, code, hour, campaign, route = key
            if outcome not in FINAL or not window.holds(hour):
                continue
            label = label_of(by, code, hour, campaign, zone, route)
            row_key = (route if routed else None, label)
            row = rows.get(row_key)
            if row is None:
                row = rows[row_key] = Row(label, route=row_key[0])
            (row.live if live else row.resent).add_key(key, n)
            (total.live if live else total.resent).add_key(key, n)
    ordered = sorted(rows.values(), key=_row_order(by))
    return Report(by, ordered, total, skipped=skipped, superseded=superseded, parked=parked, zone=zone, routed=routed)


def _row_order(by: Grouping) -> Any:
    if by in ("hour", "day"):
        return lambda row: (row.route or "", row.label == NO_TIME, row.label)
    if by == "route":
        return lambda row: row.label
    return lambda row: (row.route or "", -row.read, row.label)


def reason_columns(report: Report) -> list[tuple[str, str]]:
    """(outcome, reason) pairs any row has, for the CSV's per-reason columns."""
    found: set[tuple[str, str]] = set()
    for row in report.rows:
        for outcome in ("filtered", "dropped", "dead_lettered"):
            found.update((outcome, reason) for reason in row.live.reasons(outcome))
    return sorted(found)


def render(report: Report, fmt: Literal["table", "csv", "json"]) -> str:
    if fmt == "json":
        text, holds = report.balance()
        return orjson.dumps(
            {
                "by": report.by,
                "timezone": zone_name(report.zone),
                "rows": [
                    {report.by: row.label, **({"route": row.route} if report.routed else {}), **row.as_dict()}
                    for row in report.rows
                ],
                "total": report.total.as_dict(),
                "balance": {"holds": holds, "text": text},
                "parked_for_retry": report.parked,
                "superseded_records": report.superseded,
                "unreadable_records": report.skipped,
                "holes": [hole.as_dict() for hole in report.holes],
                "lost_to_retention": [lost.as_dict() for lost in report.lost],
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    if fmt == "csv":
        return _csv(report)
    return _table(report)


def _csv(report: Report) -> str:
    reasons = reason_columns(report)
    route: list[object] = ["route"] if report.routed else []
    header: list[object] = [*route, report.by, "read", "delivered", "filtered", "dropped", "dead_lettered", "resent"]
    lines = [header + [f"{outcome}:{reason}" for outcome, reason in reasons]]
    for row in [*report.rows, report.total]:
        values = row.as_dict()
        lines.append(
            ([row.route or ""] if report.routed else [])
            + [row.label, *(values[k] for k in ("read", "delivered", "filtered", "dropped", "dead_lettered", "resent"))]
            + [row.live.reasons(outcome)[reason] for outcome, reason in reasons]
        )
    return csv_text(lines)


def _why(row: Row) -> str:
    parts = [
        f"{reason} {n}"
        for outcome in ("dropped", "dead_lettered")
        for reason, n in sorted(row.live.reasons(outcome).items(), key=lambda item: -item[1])
    ]
    return ", ".join(parts)


def _table(report: Report) -> str:
    first = f"route: {report.by}" if report.routed else report.by
    header = [first, "read", "delivered", "filtered", "dropped", "dead-lettered", "re-sent", "why not delivered"]
    lines: list[Sequence[str]] = [header]
    for row in [*report.rows, report.total]:
        values = row.as_dict()
        lines.append(
            [
                row.title,
                *(str(values[k]) for k in ("read", "delivered", "filtered", "dropped", "dead_lettered", "resent")),
                _why(row),
            ]
        )
    aligned = align(lines, text_columns=1)
    text = [aligned[0], "-" * len(aligned[0]), *aligned[1:-1], "-" * len(aligned[0]), aligned[-1]]
    balance, _ = report.balance()
    text.append(balance)
    if report.zone is not UTC and report.by in ("hour", "day"):
        text.append(f"hours and days in {zone_name(report.zone)}")
    text.extend(f"offsets never processed: {hole.describe()}" for hole in report.holes)
    text.extend(f"offsets lost to retention (dead-lettered): {lost.describe()}" for lost in report.lost)
    if report.parked:
        text.append(f"{report.parked} events were parked for a retry at least once; each counts where it settled")
    if report.superseded:
        text.append(f"{report.superseded} ledger records were re-processed ranges, each counted once")
    if report.skipped:
        text.append(f"{report.skipped} ledger records could not be read and are not counted")
    return "\n".join(text)
