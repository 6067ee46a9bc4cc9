"""Text both halves print: aligned tables and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence


def align(lines: Sequence[Sequence[str]], text_columns: int) -> list[str]:
    """Lines as columns: the first ``text_columns`` to the left, numbers to the right, the last one free text."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line[:text_columns], widths, strict=False)]
        cells += [c.rjust(w) for c, w in zip(line[text_columns:-1], widths[text_columns:-1], strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return out


def csv_text(lines: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    return out.getvalue().rstrip("\n")
