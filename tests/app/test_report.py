"""Markdown reports (hlsm.app.report): tables, percentages, intervals, the transformer-experiment section."""

from __future__ import annotations

import dataclasses

from hlsm.app.report import SMOKE, arm_report, interval_cell, markdown_table, percent
from hlsm.lm.records import Calibration
from hlsm.lm.summary import Contrast, ExperimentSummary
from hlsm.stats import Accuracy, Interval, PairedDifference, pooled_difference, seed_verdict, t_interval


def test_table_and_cells() -> None:
    assert markdown_table(("a", "b"), [(1, "x")]) == "| a | b |\n|---|---|\n| 1 | x |\n"
    assert percent(0.4261) == "42.6%" and percent(None) == "-"
    assert interval_cell(Interval(seeds=3, mean=0.5, low=0.4, high=0.6)) == "50.0% [40.0, 60.0]"
    assert interval_cell(None) == "-"


def test_interval_cell_reads_the_producers_interval() -> None:
    """The cell of a real t interval shows its bounds; one seed shows the mean alone; no seed '-'."""
    row = t_interval([0.4, 0.5, 0.6])
    assert row.low is not None and row.high is not None
    assert interval_cell(row) == f"50.0% [{100 * row.low:.1f}, {100 * row.high:.1f}]"
    assert interval_cell(t_interval([0.5])) == "50.0%"
    assert interval_cell(t_interval([None])) == "-"


def _contrast(diffs: dict[str, float], se: float = 0.02) -> Contrast:
    per_seed = {s: PairedDifference(n=200, difference=d, se=se) for s, d in diffs.items()}
    values = list(per_seed.values())
    return Contrast(per_seed, t_interval(diffs.values()), pooled_difference(values), seed_verdict(values))


def _results(diffs: dict[str, float], calibration: Calibration | None = None) -> ExperimentSummary:
    row = Accuracy(n=200, accuracy=0.5, se=0.035)
    seeds = list(diffs)
    return ExperimentSummary(
        per_seed={
            "a": {s: {"unseen": row} for s in seeds},
            "b": {s: {"unseen": Accuracy(200, None, 0.1)} for s in seeds},
        },
        summary={
            "a": {"unseen": Interval(len(seeds), 0.5, None, None)},
            "b": {"unseen": Interval(0, None, None, None)},
        },
        contrasts={"a - b": {"unseen": _contrast(diffs)}},
        runs={"a": {s: None for s in seeds}, "b": {s: None for s in seeds}},
        settings={"scale": "tiny", "eval_examples": 200},
        published={"a": {"unseen": 0.4}},
        calibration={"a": {s: calibration for s in seeds}, "b": {s: calibration for s in seeds}},
    )


def test_arm_report_one_seed_shows_the_paired_se_and_no_verdict() -> None:
    text = arm_report(_results({"0": 0.1}), "T", "claim", [("a - b", "unseen", "a > b"), ("a - b", "deeper_4", "x")])
    assert "| a | 50.0% (50.0); published 40.0% |" in text and "| b | - (-) |" in text
    assert "| a - b on unseen | a > b | +10.0 | +10.0 ± 2.0 (paired SE; +5.0 SE) | - | **too few seeds** |" in text
    assert "| a - b on deeper_4 | x | - | - | - | **not measured at this scale** |" in text
    assert "SFT quality per seed" not in text  # no gate: no calibration table
    assert SMOKE in text  # a tiny-scale report says it is a smoke test; another scale's does not
    cpu = dataclasses.replace(_results({"0": 0.1}), settings={"scale": "cpu", "eval_examples": 200})
    assert SMOKE not in arm_report(cpu, "T", "claim", [("a - b", "unseen", "a > b")])


def test_arm_report_judges_on_the_seed_interval() -> None:
    """A consistent effect over 3 seeds is held; one carried by a single seed is not resolved; a flat
    one is no effect; the table states the smallest detectable effect."""
    gate = Calibration(True, 1800, 4000, 0.973, 1.0, 0.95, 0.98, 256)
    held = arm_report(_results({"0": 0.20, "1": 0.22, "2": 0.21}, gate), "T", "c", [("a - b", "unseen", "a > b")])
    assert "| a - b on unseen | a > b | +20.0 / +22.0 / +21.0 | +21.0 [+18.5, +23.5] |" in held and "**held**" in held
    assert "| a, b | 97.3 / 100.0 @ 1,800 | 97.3 / 100.0 @ 1,800 | 97.3 / 100.0 @ 1,800 |" in held
    assert "step cap 4,000" in held
    one_seed = arm_report(_results({"0": 0.20, "1": 0.0, "2": 0.01}), "T", "c", [("a - b", "unseen", "a > b")])
    assert "**not resolved**" in one_seed
    flat = arm_report(_results({"0": 0.004, "1": -0.003, "2": 0.001}), "T", "c", [("a - b", "unseen", "a > b")])
    assert "**no effect**" in flat
    row = next(line for line in held.splitlines() if line.startswith("| a - b on unseen"))
    detectable = float(row.split(" | ")[4])
    v = seed_verdict([PairedDifference(200, d, 0.02) for d in (0.20, 0.22, 0.21)])
    assert v.detectable is not None and detectable == round(100 * v.detectable, 1)
