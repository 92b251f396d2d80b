"""Markdown reports of saved results: the pieces that ``docs/results.md`` is assembled from.

Each experiment in ``sims/`` writes ``runs/<name>/report.md`` next to its ``results.json``, built
with these helpers from the saved results only; :mod:`hlsm.reproduce` collects the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are converted with ``str``."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def percent(value: float | None, digits: int = 1) -> str:
    """``0.4261 -> '42.6%'``; None (no data) -> ``'-'``."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def interval_cell(row: dict[str, Any] | None) -> str:
    """``mean [lo, hi]`` in percent from ``{"mean", "lo", "hi"}`` (a t interval); ``'-'`` when missing."""
    if not row or row.get("mean") is None:
        return "-"
    lo, hi = row.get("lo"), row.get("hi")
    if lo is None or hi is None:
        return percent(row["mean"])
    return f"{percent(row['mean'])} [{100 * lo:.1f}, {100 * hi:.1f}]"
