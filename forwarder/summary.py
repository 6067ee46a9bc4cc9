"""The one place that turns outcome counts into the text commands print."""

from __future__ import annotations

from forwarder.core.counting import OutcomeCounter
from forwarder.processing import BatchSummary


def print_summary(summary: BatchSummary, dry_run: bool) -> None:
    """The closing line of ``replay``, ``replay-dlq`` and ``backfill``."""
    outcomes = summary.outcomes
    if dry_run:
        print(
            f"dry run: would send {outcomes.total('forwarded')} events; read {summary.read}, "
            f"filtered {outcomes.total('filtered')}, dropped {dict(summary.dropped)}, "
            f"invalid {dict(summary.dead_lettered)}; nothing was sent"
        )
        return
    print(
        f"read {summary.read} events in {summary.messages} messages: delivered {summary.delivered}, "
        f"filtered {dict(summary.filtered)}, dropped {dict(summary.dropped)}, "
        f"dead-lettered {dict(summary.dead_lettered)}"
    )


def outcome_lines(outcomes: OutcomeCounter) -> list[str]:
    """``read: N`` then one line per final outcome, with its reasons where it has them."""
    lines = [f"read: {outcomes.read}", f"delivered: {outcomes.total('delivered')}"]
    lines.append(f"filtered: {outcomes.total('filtered')}")
    for outcome, label in (("dropped", "dropped"), ("dead_lettered", "dead-lettered")):
        lines.append(f"{label}: {outcomes.total(outcome)} {dict(outcomes.reasons(outcome))}")
    return lines


def balance_line(outcomes: OutcomeCounter, expected_read: int | None = None) -> tuple[str, bool]:
    """``read N = delivered + filtered + dropped + dead-lettered: OK`` (or ``MISMATCH``), and whether it holds."""
    parts = [outcomes.total(o) for o in ("delivered", "filtered", "dropped", "dead_lettered")]
    holds = sum(parts) == outcomes.read and (expected_read is None or outcomes.read == expected_read)
    text = (
        f"read {outcomes.read} = delivered {parts[0]} + filtered {parts[1]} + dropped {parts[2]}"
        f" + dead-lettered {parts[3]}: {'OK' if holds else 'MISMATCH'}"
    )
    return text, holds
