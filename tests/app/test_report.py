"""Markdown reports (hlsm.app.report): tables, percentages, verdicts, the transformer-experiment section."""

from __future__ import annotations

from hlsm.app.report import arm_report, interval_cell, markdown_table, percent, verdict


def test_table_and_cells() -> None:
    assert markdown_table(("a", "b"), [(1, "x")]) == "| a | b |\n|---|---|\n| 1 | x |\n"
    assert percent(0.4261) == "42.6%" and percent(None) == "-"
    assert interval_cell({"mean": 0.5, "lo": 0.4, "hi": 0.6}) == "50.0% [40.0, 60.0]"
    assert interval_cell(None) == "-"


def test_verdict_two_standard_errors() -> None:
    assert verdict({"difference": 0.05, "se": 0.02}) == "held"
    assert verdict({"difference": 0.03, "se": 0.02}) == "not resolved"
    assert verdict({"difference": -0.05, "se": 0.02}) == "reversed"
    assert verdict({"difference": None, "se": None}) == "not measured"
    assert verdict({"difference": 0.0, "se": 0.0}) == "no effect"


def test_arm_report() -> None:
    row = {"n": 10, "accuracy": 0.5, "se": 0.1}
    results = {
        "summary": {"a": {"unseen": {"mean": 0.5}}, "b": {"unseen": {"mean": None}}},
        "per_seed": {"a": {"0": {"unseen": row}}, "b": {"0": {"unseen": {**row, "accuracy": None}}}},
        "contrasts": {"a - b": {"unseen": {"pooled": {"difference": 0.1, "se": 0.02}}}},
        "published": {"a": {"unseen": 0.4}},
        "settings": {"scale": "tiny", "eval_examples": 10},
    }
    text = arm_report(results, "T", "claim", [("a - b", "unseen", "a > b"), ("a - b", "deeper_4", "a > b deeper")])
    assert "| a | 50.0% (50.0); published 40.0% |" in text and "| b | - (-) |" in text
    assert "| a - b on unseen | a > b | +10.0 ± 2.0 | **held** |" in text
    assert "not measured at this scale" in text
