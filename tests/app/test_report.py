"""Markdown reports (hlsm.app.report): tables, percentages, intervals, the transformer-experiment section."""

from __future__ import annotations

from hlsm.app.report import arm_report, interval_cell, markdown_table, percent
from hlsm.lm.summary import Contrast, ExperimentSummary
from hlsm.stats import Accuracy, Interval, PairedDifference, PooledDifference, t_interval


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


def test_arm_report() -> None:
    row = Accuracy(n=10, accuracy=0.5, se=0.1)
    paired = PairedDifference(n=10, difference=0.1, se=0.02)
    results = ExperimentSummary(
        per_seed={"a": {"0": {"unseen": row}}, "b": {"0": {"unseen": Accuracy(10, None, 0.1)}}},
        summary={"a": {"unseen": Interval(1, 0.5, None, None)}, "b": {"unseen": Interval(0, None, None, None)}},
        contrasts={
            "a - b": {"unseen": Contrast({"0": paired}, Interval(1, 0.1, None, None), PooledDifference(1, 0.1, 0.02))}
        },
        runs={"a": {"0": None}, "b": {"0": None}},
        settings={"scale": "tiny", "eval_examples": 10},
        published={"a": {"unseen": 0.4}},
    )
    text = arm_report(results, "T", "claim", [("a - b", "unseen", "a > b"), ("a - b", "deeper_4", "a > b deeper")])
    assert "| a | 50.0% (50.0); published 40.0% |" in text and "| b | - (-) |" in text
    assert "| a - b on unseen | a > b | +10.0 ± 2.0 | **held** |" in text
    assert "not measured at this scale" in text
