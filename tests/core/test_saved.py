"""The generic layer between result dataclasses and their JSON records (hlsm.saved), and the schema
of every saved result built on it: each round-trips through JSON text, and keeps the key layout
the files had when each class wrote its own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from hlsm.app.fitmetrics import FitMetrics, Recovery, RestartRecord, SymbolView
from hlsm.lm.records import Calibration, CurvePoint, EvaluationRecord, ExampleRecord, SplitRecord
from hlsm.lm.summary import Contrast, ExperimentSummary
from hlsm.saved import FLAT, OPTIONAL, REST, Saved, SavedError
from hlsm.stats import Accuracy, Interval, PairedDifference, PooledDifference, seed_verdict


@dataclass(frozen=True)
class Inner(Saved):
    a: int
    b: float | None


@dataclass(frozen=True)
class Outer(Saved):
    inner: Inner = field(metadata=FLAT)
    items: tuple[Inner, ...] = ()
    table: dict[str, list[Inner]] = field(default_factory=dict)
    note: str | None = field(default=None, metadata=OPTIONAL)
    added_later: int = 7
    others: dict[str, Any] = field(default_factory=dict, metadata=REST)


def through_json(record: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(record))
    return loaded


def test_the_layer_writes_the_layout_and_reads_it_back() -> None:
    value = Outer(Inner(1, 0.5), (Inner(2, None),), {"x": [Inner(3, 1.0)]}, None, 8, {"extra": [1, 2]})
    record = value.to_dict()
    assert list(record) == ["a", "b", "items", "table", "added_later", "extra"]  # flat, no None note, rest last
    assert record["items"] == [{"a": 2, "b": None}] and record["table"] == {"x": [{"a": 3, "b": 1.0}]}
    back = Outer.from_dict(through_json(record))
    assert back == value and isinstance(back.items, tuple) and isinstance(back.items[0], Inner)
    with_note = Outer(Inner(1, 0.5), note="kept")
    assert Outer.from_dict(through_json(with_note.to_dict())) == with_note


def test_an_older_record_reads_with_defaults_and_a_broken_one_names_its_field() -> None:
    old = {"a": 1, "b": 2.0}  # written before items, table, note and added_later existed
    assert Outer.from_dict(old) == Outer(Inner(1, 2.0))
    with pytest.raises(SavedError, match=r"Outer.inner: the saved record has no 'b'"):
        Outer.from_dict({"a": 1})
    with pytest.raises(SavedError, match=r"Outer.items: expected a list, got int"):
        Outer.from_dict({"a": 1, "b": 2.0, "items": 3})
    with pytest.raises(SavedError, match=r"Outer.table\['x'\]\[0\]: expected a record for Inner"):
        Outer.from_dict({"a": 1, "b": 2.0, "table": {"x": [5]}})


def _accuracy(p: float) -> Accuracy:
    return Accuracy(100, p, 0.05)


def _split() -> SplitRecord:
    examples = (ExampleRecord("reverse", "abc", True, False, 0), ExampleRecord("sort", "cab", False, True, 2))
    return SplitRecord(_accuracy(0.5), 0.5, {"identified": _accuracy(1.0)}, {"pairs": {"R0": 1}}, examples)


def _contrast() -> Contrast:
    per_seed = {"0": PairedDifference(100, 0.1, 0.02), "1": PairedDifference(100, 0.2, 0.03)}
    verdict = seed_verdict(per_seed.values())
    return Contrast(per_seed, Interval(2, 0.15, -0.5, 0.8), PooledDifference(2, 0.15, 0.02), verdict)


def test_the_saved_results_round_trip_with_their_layout() -> None:
    split = _split()
    record = split.to_dict()
    assert list(record) == ["n", "accuracy", "se", "malformed", "strata", "steps", "examples"]
    assert record["examples"][1] == {
        "program": "sort",
        "x0": "cab",
        "correct": False,
        "malformed": True,
        "departure": 2,
    }
    evaluation = EvaluationRecord({"examples": 2}, None, {"unseen": split}, {"pairs": []})
    assert EvaluationRecord.from_dict(through_json(evaluation.to_dict())) == evaluation
    calibration = Calibration(True, 1800, 4000, 0.97, 1.0, 0.95, 0.98, 256)
    curve = CurvePoint(0.5, 1024, {"unseen": _accuracy(0.25)})
    summary = ExperimentSummary(
        per_seed={"sft": {"0": {"unseen": _accuracy(0.3)}}},
        summary={"sft": {"unseen": Interval(1, 0.3, 0.2, 0.4)}},
        contrasts={"rl - sft": {"unseen": _contrast()}},
        runs={"sft": {"0": "runs/cache/sft-1"}},
        settings=None,
        published={"sft": {"deeper_4": 0.048}},
        calibration={"sft": {"0": calibration, "1": None}},
        curves={"rl": {"0": [curve]}},
        extra={"held_out": ["swap_pairs"]},
    )
    record = summary.to_dict()
    assert list(record) == [
        "per_seed",
        "summary",
        "contrasts",
        "runs",
        "published",
        "calibration",
        "curves",
        "held_out",
    ]
    assert record["contrasts"]["rl - sft"]["unseen"]["verdict"]["outcome"] == _contrast().verdict.outcome
    assert ExperimentSummary.from_dict(through_json(record)) == summary


def test_a_contrast_saved_before_verdicts_gets_its_verdict_computed() -> None:
    contrast = _contrast()
    old = {k: v for k, v in contrast.to_dict().items() if k != "verdict"}
    assert Contrast.from_dict(through_json(old)) == contrast


def test_fit_metrics_round_trip_with_their_layout() -> None:
    recovery = Recovery(1.0, 0.5, [0.0, 0.1], 0.1, 0.05, [0, 1], {"ari": 0.9, "nmi": 0.8})
    metrics = FitMetrics(
        design="d.toml",
        data=None,
        traces=60,
        fit={"steps": 50},
        restarts=[
            RestartRecord(0, -1.0, -2.0, 50, True, 0.05),
            RestartRecord(1, float("nan"), None, 50, False, None, 3.0),
        ],
        best=0,
        spread=0.1,
        recovery=recovery,
        symbols={"S0": SymbolView("skill", "reverse", "reverse", 0.99, True, True, None)},
        candidates=[{"program": "S0", "checker": True}],
        confusion=None,
    )
    record = metrics.to_dict()
    assert "nuts" not in record and record["restarts"][1]["objective"] is None  # nan written as null
    assert list(record["recovery"])[-2:] == ["ari", "nmi"]  # the selections sit flat beside the others
    back = FitMetrics.from_dict(through_json(record))
    assert back.recovery == recovery and back.symbols == metrics.symbols and back.nuts is None
    assert back.restarts[0] == metrics.restarts[0] and back.restarts[1].interval_width == 3.0
    older = through_json(record)
    del older["restarts"][0]["interval_width"]  # files written before the scalable likelihood
    assert FitMetrics.from_dict(older).restarts[0].interval_width is None
    with_nuts = FitMetrics.from_dict({**through_json(record), "nuts": {"summary": {}}})
    assert with_nuts.to_dict()["nuts"] == {"summary": {}}


def test_a_nested_record_with_its_own_to_dict_keeps_it() -> None:
    """A Saved class that overrides to_dict (FitMetrics: json_safe) is written by its own method when nested."""

    @dataclass(frozen=True)
    class Holder(Saved):
        metrics: FitMetrics

    recovery = Recovery(1.0, 1.0, [0.0], 0.0, None, [0])
    metrics = FitMetrics(
        "d", None, 1, {}, [RestartRecord(0, float("nan"), None, 1, True, None)], 0, 0.0, recovery, {}, [], None
    )
    assert Holder(metrics).to_dict()["metrics"]["restarts"][0]["objective"] is None  # nan made null by its to_dict
