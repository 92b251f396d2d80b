"""The Bayesian view (hlsm.infer.bayes): verdicts on identifiable and non-identifiable designs, the confusion table."""

from __future__ import annotations

import pytest
import torch

from hlsm.infer.bayes import ProgramView, ViewError, add_confusions, bayesian_view, compare_with_checker, confusion
from hlsm.infer.fitting import FitConfig
from hlsm.programs import Program
from hlsm.simulate import concat, population_corpus
from hlsm.spec import Spec

# skills that differ on every state of X (|X| = 9), chain and restart differ at step 2
SPEC = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "shift_down"), routings=("chain", "restart"))
ATOMS = [Program.atomic(k) for k in range(3)]
CHAIN, RESTART = 0, 1
CANDIDATES = [
    Program(((CHAIN, 1), (RESTART, 2))),
    Program(((RESTART, 2), (RESTART, 0))),
    Program(((CHAIN, 0), (CHAIN, 2))),
]
CONFIG = FitConfig(steps=400, restarts=3, tables="library", concentration=1.5, data_weight=1000, lr=0.1, progress=False)


def _corpus(sft: list[Program]) -> object:
    return concat([population_corpus(SPEC, ATOMS, "full"), population_corpus(SPEC, sft, "full")])


def test_identifiable_design_every_view_identified() -> None:
    # golden traces with chain and restart at step 2 pin both routing symbols
    sft = [Program(((CHAIN, 0), (CHAIN, 1))), Program(((CHAIN, 1), (RESTART, 0)))]
    comparison = compare_with_checker(SPEC, _corpus(sft), ATOMS + sft, CANDIDATES, CONFIG)
    assert comparison.checker == (True, True, True)
    assert all(v.identified and v.accuracy == 1.0 and v.confidence > 0.99 for v in comparison.views)
    assert comparison.table == {"both": 3, "checker_only": 0, "vi_only": 0, "neither": 0, "total": 3, "agreement": 1.0}
    assert len(comparison.rows()) == 3 and comparison.rows()[0]["checker"] is True


def test_unidentified_routing_is_flagged_by_both_views() -> None:
    # the restart symbol only ever appears at step 1, where every routing reads x_0: it stays free
    sft = [Program(((RESTART, 0), (CHAIN, 1))), Program(((CHAIN, 1), (CHAIN, 2)))]
    comparison = compare_with_checker(SPEC, _corpus(sft), ATOMS + sft, CANDIDATES, CONFIG)
    # restart at step 2 changes the answer of candidates 0 and 1; candidate 2 uses chain only
    assert comparison.checker == (False, False, True)
    views = comparison.views
    assert [v.identified for v in views] == [False, False, True]
    # the prior pulls the free routing row to uniform: two competing answers, about half each
    assert views[0].confidence < 0.75 and views[1].confidence < 0.75
    best = comparison.result.params()
    assert abs(float(best.beta[RESTART, 0]) - 0.5) < 0.1


def test_confusion_counts_and_sums() -> None:
    def view(identified: bool) -> ProgramView:
        return ProgramView("p", 2, 1.0, 1.0, 1.0, identified)

    table = confusion([view(True), view(True), view(False), view(False)], [True, False, True, False])
    assert table == {"both": 1, "checker_only": 1, "vi_only": 1, "neither": 1, "total": 4, "agreement": 0.5}
    total = add_confusions([table, confusion([view(True)], [True])])
    assert total["both"] == 2 and total["total"] == 5 and total["agreement"] == pytest.approx(3 / 5)
    with pytest.raises(ViewError, match="one per candidate"):
        confusion([view(True)], [True, False])


def test_bad_thresholds() -> None:
    sft = [Program(((CHAIN, 0), (CHAIN, 1)))]
    result = compare_with_checker(SPEC, _corpus(sft), ATOMS + sft, CANDIDATES[:1], CONFIG).result
    with pytest.raises(ViewError, match="confident must be"):
        bayesian_view(SPEC, result, CANDIDATES, confident=0.0)
    with pytest.raises(ViewError, match="near must be"):
        bayesian_view(SPEC, result, CANDIDATES, near=-1.0)


# symbols 2 and 3 are held out of SFT; answer-only RL traces of programs with symbol 2 pin it, and
# symbol 3 is in no trace at all: its binding row is flat
FLAT_SPEC = Spec(alphabet=3, length=2, skills=("reverse", "shift_up", "shift_down", "complement"), routings=("chain",))
FLAT_CANDIDATES = [Program(((0, 1), (0, 2))), Program(((0, 0), (0, 3)))]


def _flat_design() -> tuple[object, list[Program]]:
    sft = [Program.atomic(0), Program.atomic(1), Program(((0, 0), (0, 1))), Program(((0, 1), (0, 0)))]
    rl = [Program(((0, 0), (0, 2))), Program(((0, 2), (0, 1)))]
    corpus = concat([population_corpus(FLAT_SPEC, sft, "full"), population_corpus(FLAT_SPEC, rl, "answer", "rl")])
    return corpus, sft + rl


def test_a_flat_row_is_left_open_whatever_the_optimiser_did_with_it() -> None:
    from dataclasses import replace

    from hlsm.infer.bayes import corpus_likelihood, open_rows
    from hlsm.infer.fitting import FitResult

    corpus, support = _flat_design()
    comparison = compare_with_checker(FLAT_SPEC, corpus, support, FLAT_CANDIDATES, CONFIG)
    assert comparison.checker == (True, False)  # RL identifies symbol 2; symbol 3 stays free
    assert [v.identified for v in comparison.views] == [True, False]
    flat = FLAT_SPEC.skill_symbols[3]
    assert comparison.views[0].open_symbols == () and comparison.views[1].open_symbols == (flat,)
    likelihood = corpus_likelihood(FLAT_SPEC, support, corpus, CONFIG)
    alpha_open, _ = open_rows(FLAT_SPEC, likelihood, comparison.result.params())
    assert alpha_open[3].all() and alpha_open[:3].sum(-1).tolist() == [1, 1, 1]
    # what a prior-free Adam fit can do to a flat row: put it wholly on a skill, in every restart alike;
    # here the true one, so the candidate's answers are all right and confident
    peaked = []
    for r in comparison.result.restarts:
        alpha = r.alpha.clone()
        alpha[3] = torch.nn.functional.one_hot(torch.tensor(3), 4).to(alpha.dtype)
        peaked.append(replace(r, alpha=alpha))
    pushed = FitResult(comparison.result.config, tuple(peaked), comparison.result.best)
    trusting = bayesian_view(FLAT_SPEC, pushed, FLAT_CANDIDATES)
    assert trusting[1].identified and trusting[1].accuracy == 1.0  # the failure: a free answer called identified
    opened = open_rows(FLAT_SPEC, likelihood, pushed.params())
    tested = bayesian_view(FLAT_SPEC, pushed, FLAT_CANDIDATES, opened=opened)
    assert [v.identified for v in tested] == [True, False] and tested[1].open_symbols == (flat,)
    with pytest.raises(ViewError, match="evidence"):
        open_rows(FLAT_SPEC, likelihood, pushed.params(), evidence=-1.0)


def test_one_trace_against_a_binding_closes_it_however_peaked_the_row() -> None:
    from hlsm.infer.bayes import corpus_likelihood, open_rows
    from hlsm.infer.model import HLSMParams

    # sort and running_max differ on one of the four binary pairs (1 0); reverse on two
    spec = Spec(alphabet=2, length=2, skills=("sort", "running_max", "reverse"), routings=("chain",))
    support = [Program.atomic(0), Program.atomic(1), Program.atomic(2)]
    corpus = population_corpus(spec, support, "full")
    likelihood = corpus_likelihood(spec, support, corpus, CONFIG)
    for mass in (1.0, 1 - 1e-4, 0.99):
        alpha = torch.eye(3, dtype=torch.float64)
        alpha[0] = torch.tensor([mass, (1 - mass) / 2, (1 - mass) / 2], dtype=torch.float64)
        params = HLSMParams(alpha, torch.ones(1, 1, dtype=torch.float64), 0.01)
        alpha_open, beta_open = open_rows(spec, likelihood, params)
        assert alpha_open[0].tolist() == [True, False, False], mass
        assert alpha_open.sum(-1).tolist() == [1, 1, 1] and beta_open.tolist() == [[True]]


def test_an_atomic_corpus_leaves_the_routing_rows_open_and_does_not_fail() -> None:
    corpus = population_corpus(SPEC, ATOMS, "full")  # no compound trace: no routing is ever read
    comparison = compare_with_checker(SPEC, corpus, ATOMS, CANDIDATES, CONFIG)
    assert comparison.checker == (False, False, False)  # atoms say nothing about routings
    assert [v.identified for v in comparison.views] == [False, False, False]
