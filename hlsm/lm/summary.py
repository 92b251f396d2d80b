"""Summaries of a transformer experiment: per seed, across seeds, paired contrasts between arms.

From per-seed evaluations (:class:`hlsm.lm.records.EvaluationRecord`) of every arm,
:func:`summarise` gives, for each named split (a split of the design, optionally restricted to the
programs a :data:`Keep` accepts):

* per seed, the accuracy with its binomial SE (:func:`accuracy`);
* across seeds, the mean accuracy with a 95% Student-t interval (:func:`hlsm.stats.t_interval`);
* for each contrast ``a - b`` of two arms evaluated on the same examples, the per-seed paired
  difference (:func:`hlsm.lm.records.paired_examples`), its t interval across seeds and its
  pooled difference (:func:`hlsm.stats.pooled_difference`) and the seed-aware verdict
  (:func:`hlsm.stats.seed_verdict`: t interval over the per-seed differences, so both example noise
  and seed-to-seed variance enter; held / refuted / no effect / not resolved / too few seeds);
* per arm and seed, the SFT run's calibration (:class:`hlsm.lm.records.Calibration`) and the RL
  run's learning curve (:class:`hlsm.lm.records.CurvePoint`).

The result is an :class:`ExperimentSummary`, saved as ``results.json`` by its :meth:`~ExperimentSummary.to_dict`
and read back by :meth:`~ExperimentSummary.from_dict` wherever the saved file is used (reports,
figures).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hlsm.lm.records import Calibration, CurvePoint, EvaluationRecord, ExampleRecord, paired_examples
from hlsm.saved import OPTIONAL, REST, Saved
from hlsm.stats import (
    Accuracy,
    Interval,
    PairedDifference,
    PooledDifference,
    SeedVerdict,
    paired_difference,
    pooled_difference,
    proportion,
    seed_verdict,
    t_interval,
)

Keep = Callable[[str], bool]
"""A predicate on a program's :meth:`hlsm.programs.Program.names` string (a stratum of a split)."""

_SUMMARY_KEYS = ("per_seed", "summary", "contrasts", "runs", "settings", "published", "calibration", "curves")


def uses_skills(skills: Sequence[str], *, negate: bool = False) -> Keep:
    """A :data:`Keep` for the programs that use one of ``skills`` (or, ``negate``, none of them)."""
    wanted = set(skills)

    def keep(names: str) -> bool:
        used = {step.rsplit(":", 1)[-1].strip() for step in names.split(">")}
        return bool(used & wanted) != negate

    return keep


def accuracy(evaluation: EvaluationRecord, split: str, keep: Keep | None = None) -> Accuracy:
    """Accuracy and binomial SE on ``split``, over the examples whose program ``keep`` accepts (default: all)."""
    rows = [e for e in evaluation.splits[split].examples if keep is None or keep(e.program)]
    return proportion(sum(e.correct for e in rows), len(rows))


@dataclass(frozen=True)
class Contrast(Saved):
    """One contrast ``a - b`` on one split: per-seed paired differences (by seed, as a string), their
    t interval across seeds, their pooled difference and the seed-aware verdict. Saved as
    ``{"per_seed", "interval", "pooled", "verdict"}``."""

    per_seed: dict[str, PairedDifference]
    interval: Interval
    pooled: PooledDifference
    verdict: SeedVerdict

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Contrast:
        if "verdict" not in d:  # results saved before verdicts were: computed from the per-seed differences
            per_seed = [PairedDifference.from_dict(x) for x in d["per_seed"].values()]
            d = {**d, "verdict": seed_verdict(per_seed).to_dict()}
        return super().from_dict(d)


@dataclass(frozen=True)
class ExperimentSummary(Saved):
    """What :func:`summarise` returns and ``results.json`` holds (:meth:`to_dict`, :meth:`from_dict`).

    Attributes
    ----------
    per_seed : dict
        ``{arm: {seed: {label: Accuracy}}}`` (seeds as strings, as in JSON).
    summary : dict
        ``{arm: {label: Interval}}``: the mean accuracy across seeds and its t interval.
    contrasts : dict
        ``{"a - b": {label: Contrast}}``.
    runs : dict
        ``{arm: {seed: run folder}}`` (None where the evaluation did not name one).
    settings : dict or None
        The scale's settings and the wall time (:func:`hlsm.lm.experiment.run_and_summarise`).
    published : dict or None
        Reference accuracies ``{arm: {label: accuracy}}`` to show beside ours.
    calibration : dict
        ``{arm: {seed: Calibration or None}}``: each arm's SFT run at its gate (None: no gate).
    curves : dict
        ``{arm: {seed: [CurvePoint]}}``: the RL learning curves (empty lists for SFT-only arms).
    extra : dict
        Any other top-level entries an experiment saves with its results (e.g. the held-out skills),
        written after the others.
    """

    per_seed: dict[str, dict[str, dict[str, Accuracy]]]
    summary: dict[str, dict[str, Interval]]
    contrasts: dict[str, dict[str, Contrast]]
    runs: dict[str, dict[str, str | None]]
    settings: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    published: dict[str, dict[str, float]] | None = field(default=None, metadata=OPTIONAL)
    calibration: dict[str, dict[str, Calibration | None]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[CurvePoint]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, metadata=REST)

    def __post_init__(self) -> None:
        clash = sorted(set(self.extra) & set(_SUMMARY_KEYS))
        if clash:
            raise ValueError(f"extra entries {clash} would overwrite the summary's own; rename them")


def summarise(
    results: Mapping[str, Mapping[int, Mapping[str, Any]]],
    splits: Mapping[str, tuple[str, Keep | None]],
    contrasts: Sequence[tuple[Any, Any]] = (),
    *,
    margin: float = 0.03,
) -> ExperimentSummary:
    """Per-seed and across-seed accuracy on named ``splits`` (``{label: (split, keep)}``) and contrasts.

    Parameters
    ----------
    results
        ``{arm: {seed: saved evaluation}}`` (:func:`hlsm.lm.experiment.run_experiment`): each an
        :meth:`hlsm.lm.evaluate.DesignEvaluation.to_dict`, optionally with its ``run`` folder.
    splits
        Labels of the summary; a split the design lacks is left out.
    contrasts
        ``(a, b)`` arm pairs: ``a - b`` on the same examples (the paired SE over the kept examples);
        or ``((a, b), (c, d))``: the difference of two contrasts, ``(a - b) - (c - d)`` per example
        (e.g. whether a gain is larger after one SFT than after another). Named by :func:`contrast_name`.
    margin
        The equivalence margin of the verdicts (:func:`hlsm.stats.seed_verdict`; 0.03 = 3 points).
    """
    records = {arm: {s: EvaluationRecord.from_dict(ev) for s, ev in by.items()} for arm, by in results.items()}
    first = next(iter(next(iter(records.values())).values()))
    splits = {label: v for label, v in splits.items() if v[0] in first.splits}
    per_seed = {
        arm: {
            str(s): {label: accuracy(ev, split, keep) for label, (split, keep) in splits.items()}
            for s, ev in by.items()
        }
        for arm, by in records.items()
    }
    summary = {
        arm: {label: t_interval(row[label].accuracy for row in by.values()) for label in splits}
        for arm, by in per_seed.items()
    }
    out: dict[str, dict[str, Contrast]] = {}
    for a, b in contrasts:
        out[contrast_name((a, b))] = table = {}
        first_arm = a if isinstance(a, str) else a[0]
        for label, (split, keep) in splits.items():
            diffs = {
                str(s): _paired(records, (a, b), s, split, keep)  # type: ignore[arg-type]
                for s in records[first_arm]
            }
            interval = t_interval(d.difference for d in diffs.values())
            verdict = seed_verdict(diffs.values(), margin=margin)
            table[label] = Contrast(diffs, interval, pooled_difference(diffs.values()), verdict)
    runs = {arm: {str(s): ev.get("run") for s, ev in by.items()} for arm, by in results.items()}
    calibration = {
        arm: {
            str(s): None if ev.get("calibration") is None else Calibration.from_dict(ev["calibration"])
            for s, ev in by.items()
        }
        for arm, by in results.items()
    }
    curves = {
        arm: {str(s): [CurvePoint.from_dict(p) for p in ev.get("curve", [])] for s, ev in by.items()}
        for arm, by in results.items()
    }
    return ExperimentSummary(per_seed, summary, out, runs, calibration=calibration, curves=curves)


def contrast_name(contrast: tuple[Any, Any]) -> str:
    """``"a - b"`` for arms ``(a, b)``; ``"(a - b) - (c - d)"`` for a difference of two contrasts."""
    a, b = contrast
    if isinstance(a, str) and isinstance(b, str):
        return f"{a} - {b}"
    if isinstance(a, str) or isinstance(b, str):
        raise ValueError(f"a contrast is two arms or two contrasts of two arms, got {contrast!r}")
    return f"({contrast_name(a)}) - ({contrast_name(b)})"


def _paired(
    records: Mapping[str, Mapping[Any, EvaluationRecord]],
    contrast: tuple[str, str] | tuple[tuple[str, str], tuple[str, str]],
    seed: Any,
    split: str,
    keep: Keep | None,
) -> PairedDifference:
    """The contrast's paired difference at ``seed``: ``a - b`` per example, or ``(a - b) - (c - d)``
    per example (every arm on the same examples; the SE is that of the per-example values)."""
    a, b = contrast
    if isinstance(a, str) and isinstance(b, str):
        return paired_examples(_kept(records[a][seed], split, keep), _kept(records[b][seed], split, keep), split)
    arms = [*a, *b]
    kept = [_kept(records[arm][seed], split, keep) for arm in arms]
    for other in kept[1:]:
        paired_examples(kept[0], other, split)  # the same examples in the same order, or a clear error
    right = [[float(e.correct) for e in rows] for rows in kept]
    first = [x - y for x, y in zip(right[0], right[1], strict=True)]
    second = [x - y for x, y in zip(right[2], right[3], strict=True)]
    return paired_difference(first, second).rounded()


def _kept(evaluation: EvaluationRecord, split: str, keep: Keep | None) -> list[ExampleRecord]:
    return [e for e in evaluation.splits[split].examples if keep is None or keep(e.program)]
