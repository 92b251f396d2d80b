"""Markdown reports of saved results: the pieces that ``docs/results.md`` is assembled from.

Each experiment in ``sims/`` writes ``runs/<name>/report.md`` next to its ``results.json``, built
with these helpers from the saved results only; :mod:`hlsm.app.reproduce` collects the reports, and
reads the predictions each experiment tested from ``results.json`` (``predictions``,
:func:`prediction_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hlsm.stats import Interval, SeedVerdict, seeds_to_decide

if TYPE_CHECKING:
    from hlsm.lm.summary import Contrast, ExperimentSummary


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


def _verdict_cells(contrast: Contrast) -> tuple[str, str, str, str]:
    """Per-seed differences, the mean with its 95% t interval over seeds, the smallest detectable
    effect and the outcome, as table cells (one seed: the paired SE and how many SEs from 0)."""
    per_seed = " / ".join(f"{100 * d.difference:+.1f}" for d in contrast.per_seed.values() if d.difference is not None)
    v = contrast.verdict
    if v.low is None or v.high is None or v.difference is None:
        pooled = contrast.pooled
        if pooled.difference is None or not pooled.se:
            return per_seed or "-", "-", "-", v.outcome
        z = pooled.difference / pooled.se
        return per_seed, f"{_points(pooled.difference, pooled.se)} (paired SE; {z:+.1f} SE)", "-", v.outcome
    mean = f"{100 * v.difference:+.1f} [{100 * v.low:+.1f}, {100 * v.high:+.1f}]"
    detectable = "-" if v.detectable is None else f"{100 * v.detectable:.1f}"
    return per_seed, mean, detectable, v.outcome


def verdict_cell(verdict: SeedVerdict) -> str:
    """``**outcome**``; for ``not resolved``, also the seeds its mean and spread would need
    (:func:`hlsm.stats.seeds_to_decide`)."""
    needed = seeds_to_decide(verdict)
    if verdict.outcome == "not resolved":
        return f"**{verdict.outcome}** ({f'about {needed} seeds to decide' if needed else 'on the margin'})"
    return f"**{verdict.outcome}**"


def calibration_table(results: ExperimentSummary) -> str:
    """SFT quality per seed: one row per distinct SFT run set (arms sharing their SFT runs share a row)."""
    seeds = sorted(next(iter(results.per_seed.values())), key=str)
    groups: dict[tuple[Any, ...], list[str]] = {}
    for arm, by_seed in results.calibration.items():
        key = tuple(None if by_seed.get(s) is None else by_seed[s] for s in seeds)
        groups.setdefault(key, []).append(arm)
    rows = []
    for key, arms in groups.items():
        cells = ["no gate" if c is None else f"{100 * c.seen:.1f} / {100 * c.atomic:.1f} @ {c.step:,}" for c in key]
        rows.append((", ".join(arms), *cells))
    first = next((c for key in groups for c in key if c is not None), None)
    gate = (
        "no calibration gate"
        if first is None
        else f"gate: seen >= {100 * first.seen_threshold:.0f}%, atomic >= {100 * first.atomic_threshold:.0f}% on "
        f"{first.examples} examples each, step cap {first.steps_cap:,}"
    )
    return f"SFT quality per seed (seen depth-L / atomic greedy accuracy % at the step SFT stopped; {gate}):\n\n" + (
        markdown_table(("SFT of arms", *(f"seed {s}" for s in seeds)), rows)
    )


CLASSES = ("H-lib", "H-tab", "per-pair tables")
"""The learners a prediction is derived for: the theory's two hypothesis classes (theory/identifiability.md)
and a learner with one table per (symbol, predecessor) pair, which neither class is."""

Check = tuple[Any, ...]
"""``(contrast, split, prediction)``, or ``(contrast, split, prediction, {class: expected outcome})``
with an expected outcome (``held``, ``no effect``, ``refuted``) for each of :data:`CLASSES`."""


def behaves_like(expected: Mapping[str, str], outcome: str) -> str:
    """The classes whose expected outcome the verdict matches; ``undecided`` for an undecided verdict."""
    if outcome not in ("held", "refuted", "no effect"):
        return "undecided"
    return ", ".join(c for c in CLASSES if expected.get(c) == outcome) or "none of them"


SMOKE = (
    "**Smoke test.** The `tiny` scale checks that every step of the experiment runs, in seconds: its "
    "model and budgets are far too small to learn the task, so its accuracies (often 0) and verdicts say "
    "nothing about the claim. Run `--scale cpu` for numbers that do."
)
"""The banner of every report at the ``tiny`` scale."""


def arm_report(results: ExperimentSummary, title: str, claim: str, checks: Sequence[Check]) -> str:
    """The markdown section of a transformer experiment (a saved :class:`hlsm.lm.summary.ExperimentSummary`).

    ``checks`` lists ``(contrast, split, prediction[, expected])`` (:data:`Check`), each judged by
    :func:`hlsm.stats.seed_verdict` on the per-seed paired differences: held (95% t interval over
    seeds above 0), refuted (below 0), no effect (inside the equivalence margin), not resolved (none
    of these), too few seeds (fewer than 3). The table states the smallest effect each design could
    detect (80% power at the observed seed spread) and, for checks with expected outcomes, what each
    class predicts and which the model behaves like.
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
    margin = None
    derived = any(len(c) > 3 for c in checks)
    for contrast, split, prediction, *rest in checks:
        expected = rest[0] if rest else {}
        classes = tuple(expected.get(c, "-") for c in CLASSES) if derived else ()
        measured = results.contrasts.get(contrast, {}).get(split)
        if measured is None:
            tail: tuple[str, ...] = ("-", "-", "-", "**not measured at this scale**", *(("-",) if derived else ()))
            check_rows.append((f"{contrast} on {split}", prediction, *classes, *tail))
            continue
        margin = measured.verdict.margin
        per, mean, detectable, outcome = _verdict_cells(measured)
        like = (behaves_like(expected, outcome),) if derived else ()
        tail = (per, mean, detectable, verdict_cell(measured.verdict), *like)
        check_rows.append((f"{contrast} on {split}", prediction, *classes, *tail))
    settings = results.settings or {}
    rule = (
        "held: the 95% t interval over seeds lies above 0; refuted: below 0; no effect: inside "
        f"±{100 * (margin or 0.03):.0f} points; not resolved: none of these; at least 3 seeds. "
        "Detectable: the smallest true difference (points) this design calls held with 80% power at the "
        "observed seed spread"
    )
    parts = [
        f"## {title}\n",
        claim,
        f"\nScale `{settings.get('scale', '?')}`, seeds {', '.join(map(str, seeds))}, "
        f"{settings.get('eval_examples', '?')} greedy examples per split and seed.\n",
    ]
    if settings.get("scale") == "tiny":
        parts.append(f"{SMOKE}\n")
    if any(c is not None for by in results.calibration.values() for c in by.values()):
        parts.append(calibration_table(results))
    parts += [
        "Accuracy, mean over seeds (per seed):\n",
        markdown_table(("arm", *splits), rows),
        "\nPaired differences in points, pooled over seeds (± SE from the per-seed binomial SEs):\n",
        markdown_table(("contrast", *splits), contrast_rows),
        f"\nPredictions ({rule}{_CLASS_RULE if derived else ''}):\n",
        markdown_table(
            (
                "contrast",
                "prediction",
                *(CLASSES if derived else ()),
                "per seed",
                "mean [95% CI]",
                "detectable",
                "verdict",
                *(("behaves like",) if derived else ()),
            ),
            check_rows,
        ),
    ]
    return "\n".join(parts)


_CLASS_RULE = (
    ". H-lib, H-tab, per-pair tables: the outcome each learner predicts (derived in the claim above);"
    " behaves like: the ones the verdict matches"
)


def prediction_rows(results: ExperimentSummary, checks: Sequence[Check]) -> list[dict[str, Any]]:
    """The predictions of ``checks`` as saved in ``results.json`` (``predictions``) and read by
    ``hlsm reproduce``: per check its contrast, prediction and seed verdict (:class:`hlsm.stats.SeedVerdict`),
    and the classes' expected outcomes with the ones it behaves like, where the check gives them."""
    rows = []
    for contrast, split, prediction, *rest in checks:
        measured = results.contrasts.get(contrast, {}).get(split)
        verdict = None if measured is None else measured.verdict.to_dict()
        row = {"contrast": f"{contrast} on {split}", "prediction": prediction} | (
            verdict or {"outcome": "not measured"}
        )
        if rest:
            row |= {"classes": dict(rest[0]), "behaves_like": behaves_like(rest[0], row["outcome"])}
        rows.append(row)
    return rows


def write_arm_outputs(
    out: str | Path,
    config: Mapping[str, Any],
    results: ExperimentSummary,
    *,
    figure_title: str,
    title: str,
    claim: str,
    checks: Sequence[Check],
) -> ExperimentSummary:
    """Save a transformer experiment (``results.json``, ``config.json``), then its ``report.md``
    (:func:`arm_report`) and ``accuracy.png`` drawn from the saved JSON; returns the saved results
    as read back (:meth:`hlsm.lm.summary.ExperimentSummary.from_dict`).

    Reference values in ``results.published``, if any, are drawn as ticks.
    """
    from hlsm.app.lmplots import plot_arm_accuracy
    from hlsm.io import write_text
    from hlsm.lm.experiment import save_results
    from hlsm.lm.summary import ExperimentSummary

    out = Path(out)
    results = replace(results, extra={**results.extra, "predictions": prediction_rows(results, checks)})
    saved = json.loads(save_results(out, config, results).read_text())
    summary = ExperimentSummary.from_dict(saved)
    write_text(out / "report.md", arm_report(summary, title, claim, checks))
    plot_arm_accuracy(saved, out / "accuracy.png", figure_title, published=summary.published)
    return summary
