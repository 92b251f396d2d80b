"""Saved evaluations: the typed JSON of a design evaluation, paired comparisons, the text table.

:meth:`hlsm.lm.evaluate.DesignEvaluation.to_dict` writes an :class:`EvaluationRecord`; wherever a
saved evaluation is read (:mod:`hlsm.lm.summary`, the sims), :meth:`EvaluationRecord.from_dict`
reads it back. Two evaluations with the same seed and design hold the same examples, so
:func:`compare_evaluations` compares two models example by example; :func:`format_evaluation`
prints one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlsm.errors import HLSMError
from hlsm.saved import FLAT, Saved
from hlsm.stats import Accuracy, PairedDifference
from hlsm.stats import paired_difference as _paired


@dataclass(frozen=True)
class ExampleRecord(Saved):
    """One evaluated example as saved: its program (:meth:`Program.names`), ``x_0`` (letters), whether
    the answer was right, whether the generation was malformed, its first departure (0: none)."""

    program: str
    x0: str
    correct: bool
    malformed: bool
    departure: int


@dataclass(frozen=True)
class SplitRecord(Saved):
    """One split of a saved evaluation: accuracy +- SE, malformed fraction, strata, step report
    (:meth:`hlsm.lm.attribution.StepReport.to_dict`) and every example."""

    accuracy: Accuracy = field(metadata=FLAT)
    malformed: float
    strata: dict[str, Accuracy]
    steps: dict[str, Any]
    examples: tuple[ExampleRecord, ...]


@dataclass(frozen=True)
class EvaluationRecord(Saved):
    """A saved :class:`hlsm.lm.evaluate.DesignEvaluation`: what its ``to_dict`` writes and
    :meth:`from_dict` reads back (keys other than these, such as an experiment's ``run``, are ignored)."""

    settings: dict[str, Any]
    checker: dict[str, Any] | None
    splits: dict[str, SplitRecord]
    steps_held_out: dict[str, Any]


@dataclass(frozen=True)
class Calibration(Saved):
    """An SFT run's calibration gate (``[gate]``, :class:`hlsm.lm.sft_config.GateConfig`), as saved in
    ``summary.json``: greedy accuracy on the seen depth-L compositions and the atomic programs at
    the last check, the thresholds, the step it was measured at and the step cap."""

    passed: bool
    step: int
    steps_cap: int
    seen: float
    atomic: float
    seen_threshold: float
    atomic_threshold: float
    examples: int

    def describe(self) -> str:
        """``seen 97.3% (>= 95%), atomic 100.0% (>= 98%) at step 1,800 of 4,000``."""
        return (
            f"seen {100 * self.seen:.1f}% (>= {100 * self.seen_threshold:.0f}%), atomic {100 * self.atomic:.1f}% "
            f"(>= {100 * self.atomic_threshold:.0f}%) at step {self.step:,} of {self.steps_cap:,}"
        )

    def refusal(self, run: str) -> str:
        """The message that stops RL on an uncalibrated checkpoint: the numbers and the fix."""
        return (
            f"SFT run '{run}' did not pass its calibration gate: {self.describe()}. Train it longer (raise "
            "[training] steps, the cap) or change [training] lr, then rerun; results from an uncalibrated SFT "
            "are not published. To run RL on it anyway (no claims), set [rl] allow_uncalibrated = true."
        )


def read_calibration(run: str | Path) -> Calibration | None:
    """The calibration saved in ``run/summary.json``; None when the run has no gate (or is unfinished)."""
    path = Path(run) / "summary.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text()).get("calibration")
    return None if record is None else Calibration.from_dict(record)


@dataclass(frozen=True)
class CurvePoint(Saved):
    """One point of an RL run's learning curve: the fraction of the budget, the traces sampled by
    then, and the accuracy per evaluation set (``{name: Accuracy}``)."""

    fraction: float
    traces: int
    splits: dict[str, Accuracy]


def read_curve(run: str | Path) -> list[CurvePoint]:
    """The learning curve logged in an RL run's ``metrics.jsonl`` (``[rl] curve``), by fraction of the
    budget; a point scored twice (a run resumed before its next checkpoint) keeps its last record."""
    points: dict[float, CurvePoint] = {}
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for fraction in record.get("curve", ()):
            splits = {k: Accuracy.from_dict(v) for k, v in record["splits"].items()}
            points[fraction] = CurvePoint(fraction, record["traces"], splits)
    return [points[f] for f in sorted(points)]


CURVE_DIR = "curve"
"""Folder of an RL run holding a checkpoint at every learning-curve point (``curve/<traces>/checkpoint.pt``)."""


def curve_checkpoint(run: str | Path, traces: int) -> Path:
    """Where an RL run keeps its model at the learning-curve point reached after ``traces`` sampled traces."""
    return Path(run) / CURVE_DIR / f"{traces:010d}" / "checkpoint.pt"


def curve_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """``(traces, checkpoint path)`` of every learning-curve point an RL run kept, by traces (empty for runs
    that predate them or have no ``[rl] curve``)."""
    folder = Path(run) / CURVE_DIR
    if not folder.is_dir():
        return []
    return sorted((int(p.parent.name), p) for p in folder.glob("*/checkpoint.pt") if p.parent.name.isdigit())


def paired_examples(a: Sequence[ExampleRecord], b: Sequence[ExampleRecord], split: str) -> PairedDifference:
    """:func:`hlsm.stats.paired_difference` of two models' outcomes on the same examples of ``split``,
    rounded to 6 digits as saved.

    Raises
    ------
    HLSMError
        When ``a`` and ``b`` are not the same examples (program and ``x_0``) in the same order.
    """
    if [(e.program, e.x0) for e in a] != [(e.program, e.x0) for e in b]:
        raise HLSMError(f"split '{split}': the two evaluations used different examples; evaluate with the same seed")
    return _paired([e.correct for e in a], [e.correct for e in b]).rounded()


def compare_evaluations(a: Mapping[str, Any], b: Mapping[str, Any], split: str) -> dict[str, Any]:
    """Accuracy of ``a`` minus ``b`` on ``split`` with the paired standard error, from saved results.

    ``a`` and ``b`` are :meth:`hlsm.lm.evaluate.DesignEvaluation.to_dict` outputs on the same examples (same seed and
    design); the SE is ``sd(c_a - c_b) / sqrt(N)`` over the per-example differences
    (:func:`paired_examples`). Returns :meth:`hlsm.stats.PairedDifference.to_dict`.

    Raises
    ------
    HLSMError
        When the two evaluations did not use the same examples.
    """
    ea, eb = ([ExampleRecord.from_dict(e) for e in r["splits"][split]["examples"]] for r in (a, b))
    return paired_examples(ea, eb, split).to_dict()


def format_evaluation(results: Mapping[str, Any]) -> str:
    """A plain-text table of a saved evaluation (:class:`EvaluationRecord`): accuracy +- SE per split and stratum."""
    record = EvaluationRecord.from_dict(results)

    def cell(row: Accuracy | None) -> str:
        if row is None or row.accuracy is None or row.se is None:  # no examples
            return "-"
        return f"{100 * row.accuracy:5.1f} +- {100 * row.se:4.1f} ({row.n})"

    strata = ("identified", "not_identified", "without_low_entropy")
    head = f"{'split':<10} {'accuracy % (n)':>20} {'malformed':>9}" + "".join(f" {s:>20}" for s in strata)
    lines = [head, "-" * len(head)]
    for name, split in record.splits.items():
        line = f"{name:<10} {cell(split.accuracy):>20} {100 * split.malformed:8.1f}%"
        lines.append(line + "".join(f" {cell(split.strata.get(s)):>20}" for s in strata))
    lines.append("")
    lines.append("per-step conditional accuracy (step right | earlier steps right), unseen + deeper splits:")
    for status, row in record.steps_held_out["by_pair_status"].items():
        acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:5.1f} +- {100 * row['se']:4.1f}"
        lines.append(f"  {status:<7} pair steps  {acc}  ({row['right']}/{row['reached']})")
    if record.checker:
        c = record.checker
        lines.append(f"checker (H-lib, {c['inputs']} inputs): {c['identified']} identified, {c['not_identified']} not")
    return "\n".join(lines)
