"""The report as a picture: one stacked bar of outcomes per row, so where events went is seen at a glance.

matplotlib is an optional extra (``chart``): the worker never needs it, and ``report`` without ``--chart`` runs
without it.
"""

from __future__ import annotations

from pathlib import Path

from forwarder.ledger.report import Report, Row

# Colours a reader maps without a legend: delivered green, filtered grey, dropped amber, dead-lettered red.
COLOURS = {"delivered": "#2e7d32", "filtered": "#9e9e9e", "dropped": "#f9a825", "dead_lettered": "#c62828"}
NAMES = {"delivered": "delivered", "filtered": "filtered", "dropped": "dropped", "dead_lettered": "dead-lettered"}
MAX_BARS = 30


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def draw_chart(report: Report, path: Path, title: str) -> Path:
    """Left: each row's events by outcome. Right: the ones not delivered, by reason, on their own scale (they
    are a few percent, invisible next to the delivered ones)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ChartUnavailable(
            "--chart needs matplotlib: install the project's 'chart' extra (pip install '.[chart]')"
        ) from None

    rows = _bars(report)
    labels = [row.title for row in rows]
    height = max(3.0, 0.3 * len(rows) + 1.8)
    figure, (outcomes_axes, reasons_axes) = plt.subplots(
        1, 2, figsize=(13, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    left = [0] * len(rows)
    for outcome in ("delivered", "filtered", "dropped", "dead_lettered"):
        values = [row.live.total(outcome) for row in rows]
        outcomes_axes.barh(labels, values, left=left, color=COLOURS[outcome], label=NAMES[outcome])
        left = [a + b for a, b in zip(left, values, strict=True)]
    resent = [row.resent.total("delivered") for row in rows]
    if any(resent):
        outcomes_axes.scatter(resent, labels, marker="|", s=160, color="#1565c0", label="re-sent", zorder=3)
    for row, end in zip(rows, left, strict=True):
        if end:
            share = row.live.total("delivered") / end
            outcomes_axes.annotate(
                f"{share:.0%}", (end, row.title), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
            )
    outcomes_axes.invert_yaxis()
    outcomes_axes.set_xlabel("events read (label: share delivered)")
    outcomes_axes.legend(loc="lower right", fontsize=8)
    outcomes_axes.grid(axis="x", alpha=0.3)

    reasons = sorted(
        {(o, r) for row in rows for o in ("filtered", "dropped", "dead_lettered") for r in row.live.reasons(o)},
        key=lambda pair: (list(COLOURS).index(pair[0]), pair[1]),
    )
    # Shades of each outcome's colour family, one per reason.
    families = {
        "filtered": plt.get_cmap("Greys"),
        "dropped": plt.get_cmap("Oranges"),
        "dead_lettered": plt.get_cmap("Reds"),
    }
    per_outcome = {o: [r for oo, r in reasons if oo == o] for o in families}
    left = [0] * len(rows)
    for outcome, reason in reasons:
        siblings = per_outcome[outcome]
        shade = families[outcome](0.45 + 0.45 * siblings.index(reason) / max(1, len(siblings) - 1))
        values = [row.live.reasons(outcome)[reason] for row in rows]
        reasons_axes.barh(labels, values, left=left, color=shade, label=f"{NAMES[outcome]}: {reason}")
        left = [a + b for a, b in zip(left, values, strict=True)]
    reasons_axes.set_xlabel("events not delivered, by reason")
    if reasons:
        reasons_axes.legend(loc="lower right", fontsize=7)
    reasons_axes.grid(axis="x", alpha=0.3)

    total = report.total.as_dict()
    shown = "" if len(rows) == len(report.rows) else f" ({len(rows)} of {len(report.rows)} {report.by} rows shown)"
    figure.suptitle(
        f"{title}{shown}\nread {total['read']:,}: delivered {total['delivered']:,}, filtered {total['filtered']:,}, "
        f"dropped {total['dropped']:,}, dead-lettered {total['dead_lettered']:,}, re-sent {total['resent']:,}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _bars(report: Report) -> list[Row]:
    """The rows with most events (campaigns, codes), or the latest ones (hours, days), up to ``MAX_BARS``."""
    rows = report.rows
    if len(rows) <= MAX_BARS:
        return rows
    return rows[-MAX_BARS:] if report.by in ("hour", "day") else rows[:MAX_BARS]
