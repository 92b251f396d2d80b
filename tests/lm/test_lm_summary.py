"""Experiment summaries (hlsm.lm.summary) on synthetic evaluations with known answers; the saved form."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from hlsm.errors import HLSMError
from hlsm.lm.records import EvaluationRecord
from hlsm.lm.summary import ExperimentSummary, summarise, uses_skills
from hlsm.stats import Accuracy, PairedDifference, t_interval

PROGRAMS = ("chain:reverse > chain:sort", "chain:sort > chain:shift_up", "chain:reverse > chain:shift_up")


def _evaluation(correct: dict[str, list[bool]], run: str | None = None) -> dict[str, Any]:
    """A saved evaluation whose split ``name`` has examples cycling through PROGRAMS with these outcomes."""
    splits = {}
    for name, outcomes in correct.items():
        n = len(outcomes)
        p = sum(outcomes) / n
        examples = [
            {"program": PROGRAMS[i % 3], "x0": f"x{i}", "correct": c, "malformed": False, "departure": 0 if c else 1}
            for i, c in enumerate(outcomes)
        ]
        acc = {"n": n, "accuracy": round(p, 6), "se": round(math.sqrt(p * (1 - p) / n), 6)}
        splits[name] = {**acc, "malformed": 0.0, "strata": {}, "steps": {"n": n}, "examples": examples}
    out = {"settings": {"seed": 0}, "checker": None, "splits": splits, "steps_held_out": {"n": 0}}
    return out if run is None else out | {"run": run}


# seed -> per-example outcomes of arms a and b on split "unseen" (6 examples each)
A = {0: [1, 1, 1, 0, 1, 1], 1: [1, 0, 1, 1, 1, 0], 2: [1, 1, 1, 1, 1, 1]}
B = {0: [1, 0, 1, 0, 0, 1], 1: [0, 0, 1, 1, 0, 0], 2: [1, 1, 1, 1, 1, 1]}


def _results() -> dict[str, dict[int, dict[str, Any]]]:
    return {
        arm: {s: _evaluation({"unseen": [bool(c) for c in cs]}, run=f"{arm}-{s}") for s, cs in by.items()}
        for arm, by in (("a", A), ("b", B))
    }


def test_uses_skills_reads_program_names() -> None:
    keep = uses_skills(["sort"])
    assert keep("chain:reverse > chain:sort") and keep("sort")
    assert not keep("chain:reverse > chain:shift_up")
    assert uses_skills(["sort"], negate=True)("reverse")


def test_summarise_known_answers() -> None:
    splits = {"unseen": ("unseen", None), "unseen, sort": ("unseen", uses_skills(["sort"])), "deep": ("deeper_9", None)}
    out = summarise(_results(), splits, [("a", "b")])
    assert list(out.summary["a"]) == ["unseen", "unseen, sort"]  # the design has no deeper_9
    assert out.per_seed["a"]["1"]["unseen"] == Accuracy(6, 4 / 6, math.sqrt((4 / 6) * (2 / 6) / 6))
    # programs 0 and 1 of every 3 use sort: examples 0, 1, 3, 4 of seed 0, right 1, 0, 0, 0
    assert out.per_seed["b"]["0"]["unseen, sort"] == Accuracy(4, 0.25, math.sqrt(0.25 * 0.75 / 4))
    assert out.summary["a"]["unseen"] == t_interval([5 / 6, 4 / 6, 1.0])
    contrast = out.contrasts["a - b"]["unseen"]
    # seed 0: d = (0, 1, 0, 0, 1, 0): mean 1/3, sd^2 = (4 (1/3)^2 + 2 (2/3)^2) / 5 = 4/15
    d0 = contrast.per_seed["0"]
    assert d0.n == 6 and d0.difference == pytest.approx(1 / 3, abs=1e-6)
    assert d0.se == pytest.approx(math.sqrt(4 / 15) / math.sqrt(6), abs=1e-6)
    diffs = [contrast.per_seed[s].difference for s in ("0", "1", "2")]
    assert diffs == pytest.approx([1 / 3, 1 / 3, 0.0], abs=1e-6)
    assert contrast.interval == t_interval(diffs)
    ses = [contrast.per_seed[s].se or 0.0 for s in ("0", "1", "2")]
    assert contrast.pooled.seeds == 3 and contrast.pooled.difference == pytest.approx(sum(diffs) / 3)
    assert contrast.pooled.se == pytest.approx(math.sqrt(sum(se**2 for se in ses)) / 3)
    assert out.runs == {"a": {"0": "a-0", "1": "a-1", "2": "a-2"}, "b": {"0": "b-0", "1": "b-1", "2": "b-2"}}
    assert out.settings is None and "settings" not in out.to_dict()


def test_a_difference_of_contrasts_is_paired_per_example() -> None:
    C = {0: [0, 0, 1, 0, 0, 1], 1: [1, 0, 1, 1, 1, 0], 2: [1, 1, 1, 1, 1, 1]}
    D = {0: [0, 0, 0, 0, 0, 0], 1: [1, 0, 1, 1, 1, 0], 2: [1, 1, 1, 1, 1, 0]}
    results = _results() | {
        arm: {s: _evaluation({"unseen": [bool(c) for c in cs]}) for s, cs in by.items()}
        for arm, by in (("c", C), ("d", D))
    }
    out = summarise(results, {"unseen": ("unseen", None)}, [(("a", "b"), ("c", "d"))])
    contrast = out.contrasts["(a - b) - (c - d)"]["unseen"]
    # seed 0: a - b = (0, 1, 0, 0, 1, 0), c - d = (0, 0, 1, 0, 0, 1): d = (0, 1, -1, 0, 1, -1), mean 0, sd^2 = 4/5
    d0 = contrast.per_seed["0"]
    assert d0.n == 6 and d0.difference == pytest.approx(0.0, abs=1e-6)
    assert d0.se == pytest.approx(math.sqrt(4 / 5) / math.sqrt(6), abs=1e-6)
    # seed 1: a - b = (1, 0, 0, 0, 1, 0), c - d = 0; seed 2: a - b = 0, c - d = (0, 0, 0, 0, 0, 1)
    diffs = [contrast.per_seed[s].difference for s in ("0", "1", "2")]
    assert diffs == pytest.approx([0.0, 1 / 3, -1 / 6], abs=1e-6)
    results["d"][1]["splits"]["unseen"]["examples"][0]["x0"] = "other"
    with pytest.raises(HLSMError, match="different examples"):
        summarise(results, {"unseen": ("unseen", None)}, [(("a", "b"), ("c", "d"))])


def test_contrasts_need_the_same_examples() -> None:
    results = _results()
    shuffled = _evaluation({"unseen": [True] * 6})
    shuffled["splits"]["unseen"]["examples"][0]["x0"] = "other"
    results["b"][0] = shuffled
    with pytest.raises(HLSMError, match="different examples"):
        summarise(results, {"unseen": ("unseen", None)}, [("a", "b")])


def test_saved_summary_round_trips() -> None:
    out = summarise(_results(), {"unseen": ("unseen", None)}, [("a", "b")])
    out = replace(out, settings={"scale": "tiny"}, published={"a": {"unseen": 0.5}}, extra={"held_out": ["sort"]})
    saved = json.loads(json.dumps(out.to_dict()))
    assert list(saved) == [
        "per_seed",
        "summary",
        "contrasts",
        "runs",
        "settings",
        "published",
        "calibration",
        "curves",
        "held_out",
    ]
    assert ExperimentSummary.from_dict(saved) == out
    assert ExperimentSummary.from_dict(saved).to_dict() == saved
    assert saved["contrasts"]["a - b"]["unseen"]["per_seed"]["2"] == PairedDifference(6, 0.0, 0.0).to_dict()
    with pytest.raises(ValueError, match="overwrite"):
        replace(out, extra={"runs": {}})


def test_saved_evaluation_round_trips() -> None:
    saved = _evaluation({"unseen": [True, False, True], "seen": [False]})
    record = EvaluationRecord.from_dict(saved)
    assert record.splits["unseen"].examples[1].correct is False and record.splits["seen"].accuracy.accuracy == 0.0
    assert record.to_dict() == saved
    assert EvaluationRecord.from_dict(saved | {"run": "somewhere"}) == record  # an experiment's run is not part
