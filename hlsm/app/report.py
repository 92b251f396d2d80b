"""Markdown reports of saved results: the pieces that ``docs/results.md`` is assembled from.

Each experiment in ``sims/`` writes ``runs/<name>/report.md`` next to its ``results.json``, built
with these helpers from the saved results only; :mod:`hlsm.app.reproduce` collects the reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def _points(value: float | None, se: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f}" + ("" if se is None else f" ± {100 * se:.1f}")


def verdict(pooled: dict[str, Any] | None, z: float = 2.0) -> str:
    """``held`` / ``reversed`` / ``not resolved`` (a pooled paired difference against ``z`` standard
    errors); ``no effect`` when both arms gave the same answer on every example (difference and SE 0)."""
    if not pooled or pooled.get("difference") is None or pooled.get("se") is None:
        return "not measured"
    d, se = pooled["difference"], pooled["se"]
    if d == 0 and se == 0:
        return "no effect"
    return "held" if d > z * se else "reversed" if d < -z * se else "not resolved"


def arm_report(results: dict[str, Any], title: str, claim: str, checks: Sequence[tuple[str, str, str]]) -> str:
    """The markdown section of a transformer experiment (``hlsm.lm.experiment`` results).

    ``checks`` lists ``(contrast, split, prediction)``: the prediction holds when the pooled paired
    difference ``contrast`` on ``split`` is more than 2 standard errors above 0 (SE from the
    per-seed binomial SEs; the seed-to-seed spread is shown per seed, not in the SE).
    """
    summary, per_seed = results["summary"], results["per_seed"]
    published = results.get("published", {})
    splits = list(next(iter(summary.values())))
    seeds = sorted(next(iter(per_seed.values())), key=str)
    rows = []
    for arm, by_split in summary.items():
        cells = []
        for split in splits:
            values = " / ".join(percent(per_seed[arm][s][split]["accuracy"]).rstrip("%") for s in seeds)
            cell = f"{percent(by_split[split]['mean'])} ({values})"
            if split in published.get(arm, {}):
                cell += f"; published {percent(published[arm][split])}"
            cells.append(cell)
        rows.append((arm, *cells))
    contrast_rows = [
        (name, *(_points(t[s].get("pooled", {}).get("difference"), t[s].get("pooled", {}).get("se")) for s in splits))
        for name, t in results["contrasts"].items()
    ]
    check_rows = []
    for contrast, split, prediction in checks:
        pooled = results["contrasts"].get(contrast, {}).get(split, {}).get("pooled")
        if pooled is None:
            check_rows.append((f"{contrast} on {split}", prediction, "-", "not measured at this scale"))
            continue
        difference = _points(pooled["difference"], pooled["se"])
        check_rows.append((f"{contrast} on {split}", prediction, difference, f"**{verdict(pooled)}**"))
    settings = results.get("settings", {})
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
    results: Mapping[str, Any],
    *,
    figure_title: str,
    title: str,
    claim: str,
    checks: Sequence[tuple[str, str, str]],
) -> dict[str, Any]:
    """Save a transformer experiment (``results.json``, ``config.json``), then its ``report.md``
    (:func:`arm_report`) and ``accuracy.png`` drawn from the saved JSON; returns the saved results.

    Reference values under ``results["published"]``, if any, are drawn as ticks.
    """
    from hlsm.app.plots import plot_arm_accuracy
    from hlsm.io import write_text
    from hlsm.lm.experiment import save_results

    out = Path(out)
    saved = json.loads(save_results(out, config, results).read_text())
    write_text(out / "report.md", arm_report(saved, title, claim, checks))
    plot_arm_accuracy(saved, out / "accuracy.png", figure_title, published=saved.get("published"))
    return dict(saved)
