"""Evaluation: per-step error attribution, conditional accuracy, strata, the checker split, saved results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hlsm.design import design_from_lists
from hlsm.errors import HLSMError
from hlsm.lm.attribution import StepReport, first_departure, pair_status, read_steps
from hlsm.lm.data import TaskFormat, encode_example, encode_prompt, make_tokenizer, parse_generation
from hlsm.lm.evaluate import checker_verdicts, design_splits, evaluate_design
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.records import compare_evaluations, format_evaluation
from hlsm.programs import Program, execute_one
from hlsm.spec import Spec
from hlsm.stats import binomial_se

SPEC = Spec(alphabet=4, length=3, skills=("reverse", "shift_up", "sort"), routings=("chain",))
FMT = TaskFormat(slots=3)
TOK = make_tokenizer(SPEC)
PROGRAM = Program.from_names(SPEC, "chain:reverse > chain:shift_up > chain:sort")
X0 = [0, 1, 3]


def _generation(states: list[list[int]], *, eos: bool = True, fmt: TaskFormat = FMT) -> list[int]:
    """The generated part of a trace with the given states (not necessarily the true ones)."""
    ids, _ = encode_example(SPEC, fmt, TOK, PROGRAM, X0, states)
    P = len(encode_prompt(SPEC, fmt, TOK, PROGRAM, X0))
    return ids[P:] if eos else ids[P:-1]


def _hand_made() -> tuple[list[list[int]], dict[str, list[int]]]:
    truth = execute_one(SPEC, PROGRAM, X0)[1:]
    wrong2 = [truth[0], [3, 3, 3], sorted([3, 3, 3])]
    gens = {
        "correct": _generation(truth),
        "wrong_at_2": _generation(wrong2),
        "cut_after_2": _generation(truth)[: 2 * (1 + SPEC.length)] + [TOK.eos],  # two steps, then EOS
        "no_eos": _generation(truth, eos=False),
    }
    return truth, gens


def test_first_departure_on_hand_made_generations() -> None:
    truth, gens = _hand_made()
    prompt = encode_prompt(SPEC, FMT, TOK, PROGRAM, X0)
    expected = {"correct": 0, "wrong_at_2": 2, "cut_after_2": 3, "no_eos": 4}
    for name, gen in gens.items():
        steps = read_steps(SPEC, FMT, TOK, gen)
        well_formed = parse_generation(SPEC, FMT, TOK, prompt, gen) is not None
        assert well_formed == (name in ("correct", "wrong_at_2")), name
        assert first_departure(truth, steps, well_formed) == expected[name], name
    assert read_steps(SPEC, FMT, TOK, gens["cut_after_2"]) == [tuple(truth[0]), tuple(truth[1])]
    assert read_steps(SPEC, FMT, TOK, [TOK.index["a"], TOK.eos]) == []  # does not start with '>'
    garbled = gens["correct"][:2] + [TOK.index["|"]] + gens["correct"][3:]
    assert read_steps(SPEC, FMT, TOK, garbled)[0] is None
    # echo: the skill symbol before each state is skipped
    echo = TaskFormat(slots=3, echo=True)
    assert first_departure(truth, read_steps(SPEC, echo, TOK, _generation(truth, fmt=echo)), True) == 0


def test_step_report_counts_departures_and_conditional_accuracy() -> None:
    truth, gens = _hand_made()
    prompt = encode_prompt(SPEC, FMT, TOK, PROGRAM, X0)
    reverse, shift_up, sort = range(3)
    seen = {(reverse, shift_up)}  # step 2's pair was seen in SFT, step 3's (shift_up, sort) was not
    assert [pair_status(PROGRAM, l, seen) for l in (1, 2, 3)] == ["first", "seen", "unseen"]
    report = StepReport()
    for gen in gens.values():
        ok = parse_generation(SPEC, FMT, TOK, prompt, gen) is not None
        report.add(SPEC, PROGRAM, first_departure(truth, read_steps(SPEC, FMT, TOK, gen), ok), seen)
    d = report.to_dict()
    assert d["n"] == 4
    fd = d["first_departure"]
    assert fd["step"] == {"2": 1, "3": 1} and fd["after_last_step"] == 1 and fd["none"] == 1
    assert fd["skill"] == {"shift_up": 1, "sort": 1} and fd["routing"] == {"chain": 2}
    assert fd["pair"] == {"reverse>shift_up": 1, "shift_up>sort": 1}
    cond = d["conditional"]["3"]
    assert [(cond[s]["reached"], cond[s]["right"]) for s in ("1", "2", "3")] == [(4, 4), (4, 3), (3, 2)]
    assert cond["3"]["accuracy"] == pytest.approx(2 / 3, abs=1e-6)  # reports are rounded to 6 digits
    assert cond["3"]["se"] == pytest.approx(math.sqrt((2 / 3) * (1 / 3) / 3), abs=1e-6)
    status = d["by_pair_status"]
    assert (status["first"]["reached"], status["first"]["right"]) == (4, 4)
    assert (status["seen"]["reached"], status["seen"]["right"]) == (4, 3)
    assert (status["unseen"]["reached"], status["unseen"]["right"]) == (3, 2)
    assert report.accuracy("unseen") == pytest.approx(2 / 3)
    # an atomic program departing at its only step; merged reports add up
    atomic = StepReport()
    atomic.add(SPEC, Program.atomic(sort), 1, seen)
    both = report.merge(atomic).to_dict()
    assert both["n"] == 5 and both["first_departure"]["routing"] == {"chain": 2, "-": 1}
    assert both["first_departure"]["pair"]["start>sort"] == 1 and both["conditional"]["1"]["1"]["right"] == 0


# ---------------------------------------------------------------------------------------------
# evaluate_design on a design with identified and unidentified candidates

TINY = Spec(alphabet=3, length=2, skills=("reverse", "sort", "shift_up"), routings=("chain",))


def _design():  # type: ignore[no-untyped-def]
    # shift_up never appears in SFT: every candidate using it is not identified (H-lib)
    return design_from_lists(
        TINY,
        {
            "sft": ["reverse", "sort", "chain:reverse > chain:sort"],
            "rl": ["chain:sort > chain:sort"],
            "unseen": ["chain:sort > chain:reverse", "chain:shift_up > chain:reverse"],
            "deeper": ["chain:reverse > chain:sort > chain:reverse", "chain:shift_up > chain:sort > chain:sort"],
        },
    )


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=len(make_tokenizer(TINY)), max_len=32, n_layer=1, n_head=2, d_model=16))


def test_design_splits_and_checker_verdicts() -> None:
    design = _design()
    splits = design_splits(design)
    assert list(splits) == ["seen", "unseen", "deeper_3", "atomic", "rl"]
    assert [p.names(TINY) for p in splits["seen"]] == ["chain:reverse > chain:sort"]
    candidates = [*splits["unseen"], *splits["deeper_3"]]
    verdicts = checker_verdicts(TINY, design.programs("sft"), candidates, inputs=64, seed=0)
    assert {p.names(TINY): v for p, v in verdicts.items()} == {
        "chain:sort > chain:reverse": True,
        "chain:shift_up > chain:reverse": False,
        "chain:reverse > chain:sort > chain:reverse": True,
        "chain:shift_up > chain:sort > chain:sort": False,
    }


def test_evaluate_design_strata_steps_and_saved_results(tmp_path: Path) -> None:
    design, model, fmt, tok = _design(), _model(), TaskFormat(slots=3), make_tokenizer(TINY)
    result = evaluate_design(model, TINY, fmt, tok, design, examples_per_split=40, seed=1, checker_inputs=64)
    assert set(result.splits) == {"seen", "unseen", "deeper_3", "atomic", "rl"}
    unseen = result.splits["unseen"]
    ident = unseen.strata["identified"]
    assert torch.equal(ident, torch.tensor([p.names(TINY) == "chain:sort > chain:reverse" for p in unseen.programs]))
    assert torch.equal(unseen.strata["not_identified"], ~ident)
    low = unseen.strata["without_low_entropy"]  # sort is a low-entropy skill by default
    assert torch.equal(low, torch.tensor([1 not in p.skills for p in unseen.programs]))
    assert "identified" not in result.splits["seen"].strata and result.checker is not None
    assert (result.checker["identified"], result.checker["not_identified"]) == (2, 2)
    path = tmp_path / "eval.json"
    result.save(path)
    saved = json.loads(path.read_text())
    row = saved["splits"]["unseen"]
    assert row["n"] == 40 and len(row["examples"]) == 40
    n_id = row["strata"]["identified"]["n"] + row["strata"]["not_identified"]["n"]
    assert n_id == 40 and row["strata"]["identified"]["n"] == int(ident.sum())
    assert row["se"] == pytest.approx(binomial_se(row["accuracy"], 40), abs=1e-6)
    assert sum(e["correct"] for e in row["examples"]) == round(row["accuracy"] * 40)
    assert all(0 <= e["departure"] <= 3 for e in row["examples"])
    assert saved["steps_held_out"]["n"] == 80  # unseen + deeper_3
    assert row["steps"]["by_pair_status"]["first"]["reached"] == 40
    text = format_evaluation(saved)
    assert all(name in text for name in ("seen", "unseen", "deeper_3", "atomic", "identified", "unseen  pair"))
    # the same seed pairs two evaluations example by example; another seed does not
    again = evaluate_design(model, TINY, fmt, tok, design, examples_per_split=40, seed=1, checker=False).to_dict()
    assert compare_evaluations(saved, again, "unseen") == {"n": 40, "difference": 0.0, "se": 0.0}
    assert "identified" not in again["splits"]["unseen"]["strata"] and again["checker"] is None
    other = evaluate_design(model, TINY, fmt, tok, design, examples_per_split=40, seed=2, checker=False).to_dict()
    with pytest.raises(HLSMError, match="used different examples"):
        compare_evaluations(saved, other, "unseen")
