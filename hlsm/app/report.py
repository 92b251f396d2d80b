"""Markdown reports of saved results: the pieces that ``docs/results.md`` is assembled from.

Each experiment in ``sims/`` writes ``runs/<name>/report.md`` next to its ``results.json``, built
with these helpers from the saved results only; :mod:`hlsm.app.reproduce` collects the reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hlsm.stats import Interval, verdict

if TYPE_CHECKING:
    from hlsm.lm.summary import ExperimentSummary


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are converted with ``str``."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def percent(value: float | None, digits: int = 1) -> str:
    """``0.4261 -> '42.6%'``; None (no data) -> ``'-'``."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def interval_cell(row: Interval | None) -> str:
    """``mean [low, high]`` in percent of a t interval (:func:`hlsm.stats.t_interval`); the mean alone
    without an interval (one seed); ``'-'`` when missing."""
    if row is None or row.mean is None:
        return "-"
    if row.low is None or row.high is None:
        return percent(row.mean)
    return f"{percent(row.mean)} [{100 * row.low:.1f}, {100 * row.high:.1f}]"


def _points(value: float | None, se: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f}" + ("" if se is None else f" ± {100 * se:.1f}")


def arm_report(results: ExperimentSummary, title: str, claim: str, checks: Sequence[tuple[str, str, str]]) -> str:
    """The markdown section of a transformer experiment (a saved :class:`hlsm.lm.summary.ExperimentSummary`).

    ``checks`` lists ``(contrast, split, prediction)``: the prediction holds when the pooled paired
    difference ``contrast`` on ``split`` is more than 2 standard errors above 0
    (:func:`hlsm.stats.verdict`; SE from the per-seed binomial SEs; the seed-to-seed spread is shown
    per seed, not in the SE).
    """
    summary, per_seed = results.summary, results.per_seed
    published = results.published or {}
    splits = list(next(iter(summary.values())))
    seeds = sorted(next(iter(per_seed.values())), key=str)
    rows = []
    for arm, by_split in summary.items():
        cells = []
        for split in splits:
            values = " / ".join(percent(per_seed[arm][s][split].accuracy).rstrip("%") for s in seeds)
            cell = f"{percent(by_split[split].mean)} ({values})"
            if split in published.get(arm, {}):
                cell += f"; published {percent(published[arm][split])}"
            cells.append(cell)
        rows.append((arm, *cells))
    contrast_rows = [
        (name, *(_points(t[s].pooled.difference, t[s].pooled.se) for s in splits))
        for name, t in results.contrasts.items()
    ]
    check_rows = []
    for contrast, split, prediction in checks:
        measured = results.contrasts.get(contrast, {}).get(split)
        if measured is None:
            check_rows.append((f"{contrast} on {split}", prediction, "-", "not measured at this scale"))
            continue
        pooled = measured.pooled
        difference = _points(pooled.difference, pooled.se)
        check_rows.append((f"{contrast} on {split}", prediction, difference, f"**{verdict(pooled)}**"))
    settings = results.settings or {}
    return "\n".join(
        [
            f"## {title}\n",
            claim,
            f"\nScale `{settings.get('scale', '?')}`, seeds {', '.join(map(str, seeds))}, "
            f"{settings.get('eval_examples', '?')} greedy examples per split and seed.\n",
            "Accuracy, mean over seeds (per seed):\n",
            markdown_table(("arm", *splits), rows),
            "\nPaired differences in points, pooled over seeds (± SE from the per-seed binomial SEs):\n",
            markdown_table(("contrast", *splits), contrast_rows),
            "\nPredictions (held: more than 2 SE above 0):\n",
            markdown_table(("contrast", "prediction", "pooled difference", "verdict"), check_rows),
        ]
    )


def write_arm_outputs(
    out: str | Path,
    config: Mapping[str, Any],
    results: ExperimentSummary,
    *,
    figure_title: str,
    title: str,
    claim: str,
    checks: Sequence[tuple[str, str, str]],
) -> ExperimentSummary:
    """Save a transformer experiment (``results.json``, ``config.json``), then its ``report.md``
    (:func:`arm_report`) and ``accuracy.png`` drawn from the saved JSON; returns the saved results
    as read back (:meth:`hlsm.lm.summary.ExperimentSummary.from_dict`).

    Reference values in ``results.published``, if any, are drawn as ticks.
    """
    from hlsm.app.plots import plot_arm_accuracy
    from hlsm.io import write_text
    from hlsm.lm.experiment import save_results
    from hlsm.lm.summary import ExperimentSummary

    out = Path(out)
    saved = json.loads(save_results(out, config, results).read_text())
    summary = ExperimentSummary.from_dict(saved)
    write_text(out / "report.md", arm_report(summary, title, claim, checks))
    plot_arm_accuracy(saved, out / "accuracy.png", figure_title, published=summary.published)
    return summary
